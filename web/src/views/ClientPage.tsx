// One client's last 30 days: plots and a table, live; the coach corrects a value inline.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import type { Api } from "../api";
import { describeError } from "../api";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Entry } from "../gen/coachfit/v1/common_pb";
import type { ManualValuesSchema } from "../gen/coachfit/v1/entry_pb";
import { Source } from "../gen/coachfit/v1/common_pb";
import type { Board } from "../model";
import type { Explanations } from "../explanations";
import { dateSeconds, lastDays } from "../dates";
import { SHOWN_FIELDS, fieldValue, workoutsText, type ShownField } from "../format";
import { clientName } from "./Roster";
import { Value } from "./Value";
import { Plot, type Series } from "./Plot";
import { ExplainDialog } from "./ExplainDialog";

export const DAYS_SHOWN = 30;

type Props = {
  api: Api;
  board: Board;
  explanations: Explanations;
  userId: string;
  /** The board changed here (a correction saved): show it without waiting for the stream. */
  onChange: () => void;
};

export function ClientPage(props: Props) {
  const { board, userId } = props;
  const client = board.clients.get(userId);
  const dates = lastDays(DAYS_SHOWN);
  const entries = dates.map((date) => board.day(userId, date));
  const [explaining, setExplaining] = useState<Entry | null>(null);
  if (!client) {
    return (
      <section>
        <a href="#/">← All clients</a>
        <p class="error">This client is not on your roster.</p>
      </section>
    );
  }
  return (
    <section class="client" aria-label={clientName(client)}>
      <a href="#/">← All clients</a>
      <h2>{clientName(client)}</h2>
      <Plots dates={dates} entries={entries} />
      <div class="table-scroll">
        <table class="days" aria-label="Last 30 days">
          <thead>
            <tr>
              <th scope="col">Date</th>
              {SHOWN_FIELDS.map((f) => (
                <th scope="col">{f.label}</th>
              ))}
              <th scope="col">Workouts</th>
              <th scope="col">
                <span class="visually-hidden">Explain</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {[...dates].reverse().map((date) => {
              const entry = board.day(userId, date);
              return (
                <tr data-date={date}>
                  <th scope="row">{date}</th>
                  {SHOWN_FIELDS.map((f) => (
                    <td data-label={f.label}>
                      <Correctable {...props} date={date} entry={entry} field={f.field} />
                    </td>
                  ))}
                  <td data-label="Workouts">{workoutsText(entry) ?? <span class="empty">—</span>}</td>
                  <td>
                    {entry && (
                      <button class="link" onClick={() => setExplaining(entry)} aria-label={`Why ${date}`}>
                        Why?
                      </button>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      {explaining && (
        <ExplainDialog entry={explaining} explanations={props.explanations} onClose={() => setExplaining(null)} />
      )}
    </section>
  );
}

function Plots(props: { dates: string[]; entries: (Entry | undefined)[] }) {
  // Rebuilt only when one of this client's days changes version (not on heartbeats).
  const versions = props.entries.map((e) => `${e?.date}@${e?.position ?? 0n}`).join();
  const { days, steps, sleep, weight } = useMemo(() => {
    const values = (pick: (e: Entry) => number | undefined) => props.entries.map((e) => (e ? (pick(e) ?? null) : null));
    const stage = (pick: (e: Entry) => number | undefined) => values((e) => (e.sleep ? pick(e) : undefined));
    return {
      days: props.dates.map(dateSeconds),
      steps: [{ label: "Steps", color: "#2563eb", values: values((e) => e.steps) }] as Series[],
      sleep: [
        { label: "Asleep", color: "#7c3aed", values: values((e) => e.sleepMinutes) },
        { label: "Core", color: "#60a5fa", values: stage((e) => e.sleep?.coreMinutes) },
        { label: "Deep", color: "#1e3a8a", values: stage((e) => e.sleep?.deepMinutes) },
        { label: "REM", color: "#db2777", values: stage((e) => e.sleep?.remMinutes) },
        { label: "Awake", color: "#f59e0b", values: stage((e) => e.sleep?.awakeMinutes) },
      ] as Series[],
      weight: [{ label: "Weight", color: "#059669", values: values((e) => e.weightKg) }] as Series[],
    };
  }, [props.dates.join(), versions]);
  return (
    <div class="plots">
      <Plot title="Steps" days={days} series={steps} unit="steps" />
      <Plot title="Sleep (minutes, by stage)" days={days} series={sleep} unit="min" />
      <Plot title="Weight" days={days} series={weight} unit="kg" />
    </div>
  );
}

/** The value and, for the coach, a correction made in place (or withdrawn). */
function Correctable(props: Props & { date: string; entry: Entry | undefined; field: ShownField }) {
  const { entry, field, date } = props;
  const [editing, setEditing] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  // Back to the Correct button when an edit ends, so a keyboard user keeps their place.
  const correctButton = useRef<HTMLButtonElement>(null);
  const wasEditing = useRef(false);
  useEffect(() => {
    if (wasEditing.current && !editing) correctButton.current?.focus();
    wasEditing.current = editing;
  }, [editing]);
  const shownSource = entry?.provenance.find((p) => p.field === field)?.source;
  const label = SHOWN_FIELDS.find((f) => f.field === field)?.label ?? field;

  const record = async (values: ManualValuesInit | null) => {
    setBusy(true);
    setError(null);
    try {
      const answer = await props.api.entries.recordManualEntry({
        userId: props.userId,
        date,
        values: values ?? {},
        clearFields: values ? [] : [field],
        idempotencyKey: crypto.randomUUID(),
      });
      if (answer.entry && props.board.applyEntry(answer.entry)) props.onChange();
      setEditing(false);
    } catch (e) {
      setError(describeError(e));
    } finally {
      setBusy(false);
    }
  };

  if (editing) {
    const current = fieldValue(entry, field);
    return (
      <form
        class="correct"
        onKeyDown={(event) => {
          if (event.key === "Escape") setEditing(false);
        }}
        onSubmit={(event) => {
          event.preventDefault();
          const input = (event.currentTarget as HTMLFormElement).elements.namedItem("value") as HTMLInputElement;
          const number = Number(input.value);
          if (input.value.trim() === "" || !Number.isFinite(number)) {
            setError("Enter a number.");
            return;
          }
          record(manualValues(field, number));
        }}
      >
        <input
          name="value"
          type="number"
          step={field === "weight_kg" ? "0.1" : "1"}
          min="0"
          defaultValue={current === undefined ? "" : String(current)}
          aria-label={`${label} on ${date}`}
          autoFocus
        />
        <button disabled={busy}>Save</button>
        <button type="button" class="link" onClick={() => setEditing(false)}>
          Cancel
        </button>
        {error && (
          <span class="error" role="alert">
            {error}
          </span>
        )}
      </form>
    );
  }
  return (
    <span class="correctable">
      <Value entry={entry} field={field} explanations={props.explanations} />
      <button
        class="link"
        ref={correctButton}
        onClick={() => setEditing(true)}
        aria-label={`Correct ${label.toLowerCase()} on ${date}`}
      >
        Correct
      </button>
      {shownSource === Source.COACH && (
        <button class="link" disabled={busy} onClick={() => record(null)} aria-label={`Clear correction of ${label.toLowerCase()} on ${date}`}>
          Clear
        </button>
      )}
      {error && (
        <span class="error" role="alert">
          {error}
        </span>
      )}
    </span>
  );
}

type ManualValuesInit = MessageInitShape<typeof ManualValuesSchema>;

/** A correction of one field; counts are whole numbers. */
function manualValues(field: ShownField, value: number): ManualValuesInit {
  switch (field) {
    case "steps":
      return { steps: Math.round(value) };
    case "sleep_minutes":
      return { sleepMinutes: Math.round(value) };
    case "weight_kg":
      return { weightKg: value };
  }
}
