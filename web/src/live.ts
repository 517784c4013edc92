// One StreamEntries for the coach: follows from the board's position, and on a dropped
// connection resumes from the last position it saw, so no change is missed.
import { Code, ConnectError } from "@connectrpc/connect";
import type { Api } from "./api";
import { describeError, isSignInProblem } from "./api";
import type { Board } from "./model";

export type Link = "connecting" | "live" | "reconnecting";

export type FollowHandlers = {
  /** The board changed: `data` when an entry or client did, not only the position. */
  onChange: (data: boolean) => void;
  onLink: (link: Link) => void;
  /** The token stopped working (revoked): following ends. */
  onSignedOut: (reason: string) => void;
  /** The server's feed is behind the page's position (a restored database): following
   *  ends, and the page must read everything again. */
  onBehind: () => void;
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
        let data = false;
        if (kind.case === "update") {
          data = kind.value.entry ? board.applyEntry(kind.value.entry) : false;
          board.advance(kind.value.position);
        } else if (kind.case === "client") {
          data = board.applyClientUpdate(kind.value);
          board.advance(kind.value.position);
        } else if (kind.case === "removed") {
          data = board.removeClient(kind.value.userId);
          board.advance(kind.value.position);
        } else if (kind.case === "heartbeat") {
          board.advance(kind.value.position);
        }
        handlers.onChange(data);
      }
    } catch (error) {
      if (signal.aborted) return;
      if (isSignInProblem(error)) {
        handlers.onSignedOut(describeError(error));
        return;
      }
      if (ConnectError.from(error).code === Code.OutOfRange) {
        handlers.onBehind();
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
    const stop = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", stop);
      resolve();
    }, ms);
    signal.addEventListener("abort", stop, { once: true });
  });
}
