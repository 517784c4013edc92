// The API as the page calls it: Connect-ES clients over gRPC-Web to the serving origin,
// with the coach's token on every call.
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { EntryService } from "./gen/coachfit/v1/entry_pb";
import { RosterService } from "./gen/coachfit/v1/roster_pb";

export type Api = {
  entries: Client<typeof EntryService>;
  roster: Client<typeof RosterService>;
};

export function connectApi(token: string): Api {
  const bearer: Interceptor = (next) => (request) => {
    request.header.set("authorization", `Bearer ${token}`);
    return next(request);
  };
  const transport = createGrpcWebTransport({ baseUrl: window.location.origin, interceptors: [bearer] });
  return { entries: createClient(EntryService, transport), roster: createClient(RosterService, transport) };
}

/** The token itself is the problem: signing in again (with another) is the only way on. */
export function isSignInProblem(error: unknown): boolean {
  const code = ConnectError.from(error).code;
  return code === Code.Unauthenticated || code === Code.PermissionDenied;
}

/** What a person should read for a failed call. */
export function describeError(error: unknown): string {
  const e = ConnectError.from(error);
  switch (e.code) {
    case Code.Unauthenticated:
      return "This token is not valid, or it has been revoked. Ask your admin for a new coach token.";
    case Code.PermissionDenied:
      return "This token cannot open the dashboard: it is a device token, or it does not belong to a coach. Sign in with your coach token.";
    case Code.Unavailable:
    case Code.DeadlineExceeded:
      return "The server cannot be reached right now. Try again in a moment.";
    case Code.InvalidArgument:
    case Code.OutOfRange:
      return e.rawMessage;
    default:
      return `The server answered: ${e.rawMessage || Code[e.code]}`;
  }
}
