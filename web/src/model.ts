// What the dashboard knows: the roster and each client's days, merged from the initial
// reads and the live stream so that nothing on screen ever moves back to an older version.
import type { Entry } from "./gen/coachfit/v1/common_pb";
import type { ClientUpdate } from "./gen/coachfit/v1/entry_pb";
import type { ClientStatus } from "./gen/coachfit/v1/roster_pb";

export class Board {
  readonly clients = new Map<string, ClientStatus>();
  /** The feed position of each client's shown status (0n: from ListClients). */
  private readonly clientPositions = new Map<string, bigint>();
  /** user id → date → entry */
  readonly days = new Map<string, Map<string, Entry>>();
  /** The newest stream position seen: a resumed stream starts after it. */
  position = 0n;

  /** Shows `entry` unless a newer version of its day is shown already. */
  applyEntry(entry: Entry): boolean {
    let days = this.days.get(entry.userId);
    if (!days) {
      days = new Map();
      this.days.set(entry.userId, days);
    }
    const shown = days.get(entry.date);
    if (shown && shown.position >= entry.position) return false;
    days.set(entry.date, entry);
    return true;
  }

  /** Shows a client's status from a roster read (position 0n) or a stream update. */
  applyClient(client: ClientStatus, position = 0n): boolean {
    const shown = this.clientPositions.get(client.userId);
    if (shown !== undefined && shown > position) return false;
    this.clients.set(client.userId, client);
    this.clientPositions.set(client.userId, position);
    return true;
  }

  applyClientUpdate(update: ClientUpdate): boolean {
    return update.client ? this.applyClient(update.client, update.position) : false;
  }

  /** Forgets an erased client and their days. */
  removeClient(userId: string): boolean {
    const known = this.clients.delete(userId);
    this.clientPositions.delete(userId);
    return this.days.delete(userId) || known;
  }

  /** Records that the stream has delivered everything up to `position`. */
  advance(position: bigint): void {
    if (position > this.position) this.position = position;
  }

  day(userId: string, date: string): Entry | undefined {
    return this.days.get(userId)?.get(date);
  }
}
