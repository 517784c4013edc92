// The coach's dashboard: sign in with a coach token, then the live roster.
import "uplot/dist/uPlot.min.css";
import "./style.css";
import { render } from "preact";
import { useState } from "preact/hooks";
import { SignIn } from "./views/SignIn";
import { Dashboard } from "./views/Dashboard";

/** Kept for this tab only: closing it, or signing out, forgets the token. */
const TOKEN_KEY = "coachfit.coachToken";

function App() {
  const [token, setToken] = useState<string | null>(sessionStorage.getItem(TOKEN_KEY));
  const [notice, setNotice] = useState<string | null>(null);
  if (!token) {
    return (
      <SignIn
        notice={notice}
        onSignedIn={(signedIn) => {
          sessionStorage.setItem(TOKEN_KEY, signedIn);
          setNotice(null);
          setToken(signedIn);
        }}
      />
    );
  }
  return (
    <Dashboard
      token={token}
      onSignOut={(reason) => {
        sessionStorage.removeItem(TOKEN_KEY);
        setNotice(reason);
        setToken(null);
      }}
    />
  );
}

render(<App />, document.getElementById("app")!);
