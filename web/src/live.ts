// One StreamEntries for the coach: follows from the board's position, and on a dropped
// connection resumes from the last position it saw, so no change is missed.
import type { Api } from "./api";
import { describeError, isSignInProblem } from "./api";
import type { Board } from "./model";

export type Link = "connecting" | "live" | "reconnecting";

export type FollowHandlers = {
  onChange: () => void;
  onLink: (link: Link) => void;
  /** The token stopped working (revoked): following ends. */
  onSignedOut: (reason: string) => void;
};

const FIRST_RETRY_MS = 500;
const LAST_RETRY_MS = 5_000;

export async function follow(api: Api, board: Board, handlers: FollowHandlers, signal: AbortSignal): Promise<void> {
  let retryMs = FIRST_RETRY_MS;
  handlers.onLink("connecting");
  while (!signal.aborted) {
    try {
      const stream = api.entries.streamEntries(
        { afterPosition: board.position, includeClients: true },
        { signal, onHeader: () => handlers.onLink("live") },
      );
      for await (const message of stream) {
        retryMs = FIRST_RETRY_MS;
        const kind = message.kind;
        if (kind.case === "update") {
          if (kind.value.entry) board.applyEntry(kind.value.entry);
          board.advance(kind.value.position);
        } else if (kind.case === "client") {
          board.applyClientUpdate(kind.value);
          board.advance(kind.value.position);
        } else if (kind.case === "heartbeat") {
          board.advance(kind.value.position);
        }
        handlers.onChange();
      }
    } catch (error) {
      if (signal.aborted) return;
      if (isSignInProblem(error)) {
        handlers.onSignedOut(describeError(error));
        return;
      }
    }
    // The stream ended (the server is shutting down) or broke: resume after a pause.
    handlers.onLink("reconnecting");
    await pause(retryMs, signal);
    retryMs = Math.min(retryMs * 2, LAST_RETRY_MS);
  }
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
