// Every client with their last sync, a stale badge, and today's values.
import type { ClientStatus } from "../gen/coachfit/v1/roster_pb";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Board } from "../model";
import type { Explanations } from "../explanations";
import { ago, fullTime, SHOWN_FIELDS, workoutsText } from "../format";
import { today } from "../dates";
import { Value } from "./Value";

export function clientName(client: ClientStatus): string {
  return client.displayName || `Client ${client.userId.slice(0, 8)}`;
}

/** The newest report any of the client's devices delivered. */
function lastSync(client: ClientStatus) {
  const synced = client.devices.map((d) => d.lastSyncedAt).filter((at) => at !== undefined);
  synced.sort((a, b) => timestampDate(b).getTime() - timestampDate(a).getTime());
  return synced[0];
}

/** Stale as of now: `stale_at` says when a client turns stale without a new report. */
export function isStale(client: ClientStatus, now: Date): boolean {
  return client.staleAt ? timestampDate(client.staleAt).getTime() <= now.getTime() : client.stale;
}

export function Roster(props: { board: Board; explanations: Explanations; now: Date }) {
  const { board, now } = props;
  const clients = [...board.clients.values()].sort((a, b) => clientName(a).localeCompare(clientName(b)));
  const day = today();
  if (clients.length === 0) {
    return <p class="empty-roster">No clients yet. Create a pairing code for a client to see them here.</p>;
  }
  return (
    <table class="roster" aria-label="Clients">
      <thead>
        <tr>
          <th scope="col">Client</th>
          <th scope="col">Last sync</th>
          {SHOWN_FIELDS.map((f) => (
            <th scope="col">{f.label} today</th>
          ))}
          <th scope="col">Workouts today</th>
        </tr>
      </thead>
      <tbody>
        {clients.map((client) => {
          const entry = board.day(client.userId, day);
          const synced = lastSync(client);
          return (
            <tr data-client={client.userId}>
              <th scope="row" data-label="Client">
                <a href={`#/client/${encodeURIComponent(client.userId)}`}>{clientName(client)}</a>
                {isStale(client, now) && (
                  <span class="badge stale" title="No new data for a while">
                    stale
                  </span>
                )}
              </th>
              <td data-label="Last sync" title={fullTime(synced)}>
                {ago(synced, now)}
              </td>
              {SHOWN_FIELDS.map((f) => (
                <td data-label={f.label}>
                  <Value entry={entry} field={f.field} explanations={props.explanations} />
                </td>
              ))}
              <td data-label="Workouts" data-field="workouts">
                {workoutsText(entry) ?? <span class="empty">—</span>}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}
