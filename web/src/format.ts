// How values, sources and times read on the page.
import type { Entry } from "./gen/coachfit/v1/common_pb";
import type { OutrankedValue } from "./gen/coachfit/v1/entry_pb";
import { Source } from "./gen/coachfit/v1/common_pb";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";

/** The fields the dashboard shows per day, by the API's field names. */
export type ShownField = "steps" | "sleep_minutes" | "weight_kg";

export const SHOWN_FIELDS: { field: ShownField; label: string }[] = [
  { field: "steps", label: "Steps" },
  { field: "sleep_minutes", label: "Sleep" },
  { field: "weight_kg", label: "Weight" },
];

export function isShownField(field: string): field is ShownField {
  return SHOWN_FIELDS.some((shown) => shown.field === field);
}

export function sourceName(source: Source): string {
  switch (source) {
    case Source.HEALTHKIT:
      return "HealthKit";
    case Source.MANUAL:
      return "Manual";
    case Source.COACH:
      return "Coach";
    case Source.STRAVA:
      return "Strava";
    default:
      return "Unknown";
  }
}

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

export function formatValue(field: ShownField, value: number): string {
  switch (field) {
    case "steps":
      return integer.format(value);
    case "sleep_minutes":
      return formatMinutes(value);
    case "weight_kg":
      return `${decimal.format(value)} kg`;
  }
}

export function formatMinutes(minutes: number): string {
  const h = Math.floor(minutes / 60);
  const m = Math.round(minutes % 60);
  return h > 0 ? `${h} h ${m} min` : `${m} min`;
}

export function fieldValue(entry: Entry | undefined, field: ShownField): number | undefined {
  switch (field) {
    case "steps":
      return entry?.steps;
    case "sleep_minutes":
      return entry?.sleepMinutes;
    case "weight_kg":
      return entry?.weightKg;
  }
}

export function workoutsText(entry: Entry | undefined): string | undefined {
  const w = entry?.workouts;
  if (!w || w.count === 0) return undefined;
  return `${w.count} · ${integer.format(w.totalMinutes)} min`;
}

export function ago(at: Timestamp | undefined, now: Date): string {
  if (!at) return "never";
  const seconds = Math.max(0, (now.getTime() - timestampDate(at).getTime()) / 1000);
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

export function fullTime(at: Timestamp | undefined): string {
  return at ? timestampDate(at).toLocaleString() : "";
}

/** A value a lower-ranked source gave, as the field shows values (notes quoted). */
export function outrankedText(field: string, outranked: OutrankedValue): string {
  const value = outranked.value;
  if (value.case === "number") return isShownField(field) ? formatValue(field, value.value) : String(value.value);
  return value.case === "text" ? `“${value.value}”` : "";
}
