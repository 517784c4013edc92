// One value of a day with where it came from, and what it overrode.
import { useEffect, useState } from "preact/hooks";
import type { Entry } from "../gen/coachfit/v1/common_pb";
import type { Explanations } from "../explanations";
import { fieldValue, formatValue, outrankedText, sourceName, type ShownField } from "../format";

export function Value(props: { entry: Entry | undefined; field: ShownField; explanations: Explanations }) {
  const { entry, field } = props;
  const value = fieldValue(entry, field);
  if (value === undefined || !entry) return <span class="empty">—</span>;
  const provenance = entry.provenance.find((p) => p.field === field);
  return (
    <span class="value" data-field={field}>
      <span class="number">{formatValue(field, value)}</span>
      {provenance && <SourceBadge source={provenance.source} />}
      {provenance?.overridden && <Overrode entry={entry} field={field} explanations={props.explanations} />}
    </span>
  );
}

export function SourceBadge(props: { source: number }) {
  const name = sourceName(props.source);
  return <span class={`badge source-${name.toLowerCase()}`}>{name}</span>;
}

/** "coach overrode HealthKit 8,432": the highest-ranked value the shown one beat. */
function Overrode(props: { entry: Entry; field: ShownField; explanations: Explanations }) {
  const [text, setText] = useState<string | null>(null);
  const { entry, field } = props;
  useEffect(() => {
    let current = true;
    setText(null);
    props.explanations.of(entry).then(
      (explained) => {
        const decision = explained.decisions.find((d) => d.field === field);
        const beaten = decision?.outranked[0];
        if (!current || !decision || !beaten) return;
        const shown = sourceName(decision.source).toLowerCase();
        setText(`${shown} overrode ${sourceName(beaten.source)} ${outrankedText(field, beaten)}`);
      },
      () => undefined,
    );
    return () => {
      current = false;
    };
  }, [entry, field]);
  return text ? <span class="overrode">{text}</span> : null;
}
