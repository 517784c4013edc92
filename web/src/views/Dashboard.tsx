// The signed-in dashboard: loads the roster and 30 days per client, then follows the
// entry stream; routes between the roster and a client's page.
import { useEffect, useMemo, useState } from "preact/hooks";
import { connectApi, describeError, isSignInProblem } from "../api";
import { Board } from "../model";
import { Explanations } from "../explanations";
import { follow, type Link } from "../live";
import { lastDays } from "../dates";
import { DAYS_SHOWN, ClientPage } from "./ClientPage";
import { Roster } from "./Roster";

export function Dashboard(props: { token: string; onSignOut: (reason: string | null) => void }) {
  const api = useMemo(() => connectApi(props.token), [props.token]);
  const explanations = useMemo(() => new Explanations(api), [api]);
  // A new attempt (Try again, or a server behind the page) reads everything afresh.
  const [attempt, setAttempt] = useState(0);
  const board = useMemo(() => new Board(), [api, attempt]);
  // Bumped when an entry or a client changes (the board is mutable: this re-renders it);
  // the position shown moves on heartbeats too.
  const [, setVersion] = useState(0);
  const [position, setPosition] = useState("0");
  const [loaded, setLoaded] = useState(false);
  const [link, setLink] = useState<Link>("connecting");
  const [loadError, setLoadError] = useState<string | null>(null);
  const [route, setRoute] = useState(window.location.hash);
  const [now, setNow] = useState(new Date());

  useEffect(() => {
    const onHash = () => setRoute(window.location.hash);
    window.addEventListener("hashchange", onHash);
    // Last-sync times and stale badges move with the clock.
    const tick = setInterval(() => setNow(new Date()), 30_000);
    return () => {
      window.removeEventListener("hashchange", onHash);
      clearInterval(tick);
    };
  }, []);

  useEffect(() => {
    const stop = new AbortController();
    const changed = (data: boolean) => {
      if (data) setVersion((v) => v + 1);
      setPosition(board.position.toString());
    };
    setLoaded(false);
    (async () => {
      try {
        const roster = await api.roster.listClients({}, { signal: stop.signal });
        roster.clients.forEach((client) => board.applyClient(client));
        board.advance(roster.position);
        const days = lastDays(DAYS_SHOWN);
        await Promise.all(
          roster.clients.map(async (client) => {
            const page = await api.entries.listEntries(
              { userId: client.userId, startDate: days[0], endDate: days[days.length - 1], pageSize: DAYS_SHOWN + 1 },
              { signal: stop.signal },
            );
            page.entries.forEach((entry) => board.applyEntry(entry));
          }),
        );
        setLoadError(null);
        setLoaded(true);
        changed(true);
      } catch (e) {
        if (stop.signal.aborted) return;
        if (isSignInProblem(e)) props.onSignOut(describeError(e));
        else setLoadError(describeError(e));
        return;
      }
      const onBehind = () => setAttempt((a) => a + 1);
      const handlers = { onChange: changed, onLink: setLink, onSignedOut: props.onSignOut, onBehind };
      await follow(api, board, handlers, stop.signal);
    })();
    return () => stop.abort();
  }, [board]);

  const clientId = route.startsWith("#/client/") ? decodeURIComponent(route.slice("#/client/".length)) : null;
  return (
    <div class="dashboard">
      <header>
        <h1>
          <a href="#/">CoachFit</a>
        </h1>
        <span class={`link-state ${link}`} role="status" aria-live="polite">
          {link === "live" ? "Live" : link === "reconnecting" ? "Reconnecting…" : "Connecting…"}
        </span>
        <span class="position" title="The newest change this page has seen">
          position <span data-testid="position">{position}</span>
        </span>
        <button class="sign-out" onClick={() => props.onSignOut(null)}>
          Sign out
        </button>
      </header>
      <main>
        {loadError ? (
          <div class="error" role="alert">
            {loadError} <button onClick={() => setAttempt((a) => a + 1)}>Try again</button>
          </div>
        ) : !loaded ? (
          <p>Loading your clients…</p>
        ) : clientId ? (
          <ClientPage
            api={api}
            board={board}
            explanations={explanations}
            userId={clientId}
            onChange={() => setVersion((v) => v + 1)}
          />
        ) : (
          <Roster board={board} explanations={explanations} now={now} />
        )}
      </main>
    </div>
  );
}
