// Sign-in with a coach token, checked by reading the roster before it is kept.
import { useState } from "preact/hooks";
import { connectApi, describeError } from "../api";

export function SignIn(props: { notice: string | null; onSignedIn: (token: string) => void }) {
  const [error, setError] = useState<string | null>(props.notice);
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    const input = (event.currentTarget as HTMLFormElement).elements.namedItem("token") as HTMLInputElement;
    const token = input.value.trim();
    if (!token) {
      setError("Paste your coach token.");
      return;
    }
    setBusy(true);
    try {
      await connectApi(token).roster.listClients({});
      props.onSignedIn(token);
    } catch (e) {
      setError(describeError(e));
      setBusy(false);
    }
  };
  return (
    <main class="sign-in">
      <h1>CoachFit</h1>
      <form onSubmit={submit}>
        <label for="token">Coach token</label>
        <input id="token" name="token" type="password" autocomplete="off" required autoFocus />
        <button disabled={busy}>{busy ? "Signing in…" : "Sign in"}</button>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <p class="hint">The token stays in this tab only and is forgotten when you sign out or close it.</p>
      </form>
    </main>
  );
}
