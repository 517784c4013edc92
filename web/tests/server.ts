// A real `coachfit serve` (the binary cargo built) on a fixed free port, so it can be
// stopped and started again on the same origin; and native gRPC clients of it.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { createServer, connect as connectTcp } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AdminService } from "../src/gen/coachfit/v1/admin_pb";
import { EntryService } from "../src/gen/coachfit/v1/entry_pb";
import { IngestService } from "../src/gen/coachfit/v1/ingest_pb";
import { PairingService } from "../src/gen/coachfit/v1/pairing_pb";
import { PrivacyService } from "../src/gen/coachfit/v1/privacy_pb";
import { RosterService } from "../src/gen/coachfit/v1/roster_pb";

const BINARY = process.env.COACHFIT_BIN ?? resolve(import.meta.dirname, "../../target/debug/coachfit");
export const ADMIN_TOKEN = "dashboard-test-admin-token";

export class Server {
  private child: ChildProcess | null = null;
  private constructor(
    readonly port: number,
    readonly databaseUrl: string,
  ) {}

  static async start(): Promise<Server> {
    const directory = mkdtempSync(join(tmpdir(), "coachfit-dashboard-"));
    const server = new Server(await freePort(), `sqlite://${join(directory, "coachfit.db")}`);
    await server.restart();
    return server;
  }

  get origin(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Starts `serve` (again) on this server's port and database. */
  async restart(port = this.port): Promise<void> {
    const child = spawn(
      BINARY,
      ["serve", "--listen", `127.0.0.1:${port}`, "--admin-token", ADMIN_TOKEN, "--heartbeat-secs", "1"],
      { env: { ...process.env, COACHFIT_DATABASE_URL: this.databaseUrl }, stdio: ["ignore", "inherit", "pipe"] },
    );
    let log = "";
    child.stderr!.on("data", (chunk: Buffer) => {
      log += chunk.toString();
      if (process.env.TEST_LOG) process.stderr.write(chunk);
    });
    const exited = new Promise<never>((_, reject) =>
      child.once("exit", (code) => reject(new Error(`coachfit serve exited (${code}):\n${log}`))),
    );
    exited.catch(() => undefined);
    await Promise.race([listening(port), exited]);
    if (port === this.port) this.child = child;
    else this.others.push(child);
  }

  private readonly others: ChildProcess[] = [];

  /** A second instance on the same database (and another port), for changes the page cannot see. */
  async startElsewhere(): Promise<Clients> {
    const port = await freePort();
    await this.restart(port);
    return clients(`http://127.0.0.1:${port}`);
  }

  async stopElsewhere(): Promise<void> {
    await Promise.all(this.others.splice(0).map(stopChild));
  }

  async stop(): Promise<void> {
    if (this.child) await stopChild(this.child);
    this.child = null;
  }

  clients(): Clients {
    return clients(this.origin);
  }
}

export type Clients = ReturnType<typeof clients>;

/** Native gRPC (HTTP/2) clients, one set per bearer token. */
export function clients(origin: string) {
  const transport = (token: string) => {
    const bearer: Interceptor = (next) => (request) => {
      request.header.set("authorization", `Bearer ${token}`);
      return next(request);
    };
    return createGrpcTransport({ baseUrl: origin, interceptors: [bearer] });
  };
  return (token: string) => {
    const t = transport(token);
    return {
      admin: createClient(AdminService, t) as Client<typeof AdminService>,
      entries: createClient(EntryService, t) as Client<typeof EntryService>,
      ingest: createClient(IngestService, t) as Client<typeof IngestService>,
      pairing: createClient(PairingService, t) as Client<typeof PairingService>,
      privacy: createClient(PrivacyService, t) as Client<typeof PrivacyService>,
      roster: createClient(RosterService, t) as Client<typeof RosterService>,
    };
  };
}

function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((done) => {
    if (child.exitCode !== null) return done();
    child.once("exit", () => done());
    child.kill("SIGTERM");
  });
}

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const probe = createServer();
    probe.once("error", fail);
    probe.listen(0, "127.0.0.1", () => {
      const port = (probe.address() as { port: number }).port;
      probe.close(() => done(port));
    });
  });
}

async function listening(port: number): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const open = await new Promise<boolean>((done) => {
      const socket = connectTcp(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        done(true);
      });
      socket.once("error", () => done(false));
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on ${port}`);
}
