// Local calendar dates as the API writes them (YYYY-MM-DD), in the browser's time zone.

export function isoDate(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

export function today(): string {
  return isoDate(new Date());
}

/** The `count` dates ending today, oldest first. */
export function lastDays(count: number): string[] {
  const now = new Date();
  return Array.from({ length: count }, (_, i) => {
    const d = new Date(now.getFullYear(), now.getMonth(), now.getDate() - (count - 1 - i));
    return isoDate(d);
  });
}

/** Seconds since the epoch at local midnight of `date`, for the plots' x axis. */
export function dateSeconds(date: string): number {
  const [y, m, d] = date.split("-").map(Number);
  return new Date(y, m - 1, d).getTime() / 1000;
}
