// Why each value of a day is what it is (ExplainEntry), in a dialog.
import { useEffect, useRef, useState } from "preact/hooks";
import type { Entry } from "../gen/coachfit/v1/common_pb";
import type { ExplainEntryResponse } from "../gen/coachfit/v1/entry_pb";
import type { Explanations } from "../explanations";
import { describeError } from "../api";
import { outrankedText, sourceName } from "../format";
import { SourceBadge } from "./Value";

export function ExplainDialog(props: { entry: Entry; explanations: Explanations; onClose: () => void }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [answer, setAnswer] = useState<ExplainEntryResponse | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    dialog.current?.showModal();
    props.explanations.of(props.entry).then(setAnswer, (e) => setError(describeError(e)));
  }, [props.entry]);
  return (
    <dialog ref={dialog} class="explain" onClose={props.onClose} aria-label={`Why ${props.entry.date} shows these values`}>
      <h2>Why {props.entry.date} shows these values</h2>
      {error && <p class="error">{error}</p>}
      {!answer && !error && <p>Loading…</p>}
      {answer && (
        <ul>
          {answer.decisions.map((d) => (
            <li data-field={d.field}>
              <strong>{d.field.replace(/_/g, " ")}</strong> <SourceBadge source={d.source} /> {d.reason}
              {d.outranked.map((o) => (
                <div class="outranked">
                  {sourceName(o.source)} said {outrankedText(d.field, o)}
                </div>
              ))}
            </li>
          ))}
        </ul>
      )}
      <form method="dialog">
        <button>Close</button>
      </form>
    </dialog>
  );
}
