// The coach's dashboard in Chromium against a real `coachfit serve`: sign-in, the live
// roster, a restart mid-session, an inline correction, and a phone-width screen.
import { expect, test, type Page } from "@playwright/test";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Source } from "../src/gen/coachfit/v1/common_pb";
import { BodyMetricType, Unit } from "../src/gen/coachfit/v1/ingest_pb";
import { ADMIN_TOKEN, Server, type Clients } from "./server";

// One server and its data for the file, in order: each test builds on the last one's data.
test.describe.configure({ mode: "serial" });

let server: Server;
let as: Clients;
let coachToken: string;
const devices: Record<"ada" | "grace", string> = { ada: "", grace: "" };
let adaId: string;
let graceId: string;
/** Today in the page's time zone (the config sets UTC). */
const today = new Date().toISOString().slice(0, 10);

/** Errors the page logged; a test that expects none asserts this is empty. */
let consoleErrors: string[] = [];

test.beforeAll(async () => {
  server = await Server.start();
  as = server.clients();
  const coach = await as(ADMIN_TOKEN).admin.createCoach({ name: "Coach Carla" });
  coachToken = coach.coachToken;
  for (const [who, name] of [
    ["ada", "Ada Lovelace"],
    ["grace", "Grace Hopper"],
  ] as const) {
    const code = await as(coachToken).pairing.createPairingCode({ displayName: name });
    const paired = await as("").pairing.redeemPairingCode({ code: code.code, deviceName: `${name}'s iPhone` });
    devices[who] = paired.deviceToken;
    if (who === "ada") adaId = paired.userId;
    else graceId = paired.userId;
  }
  await history("ada", 0);
  await history("grace", 1);
  await steps("ada", 8_432, 60);
  await as(devices.grace).ingest.ingestBodyMetrics({
    timeZone: "UTC",
    metrics: [{ type: BodyMetricType.WEIGHT, value: 61.5, unit: Unit.KG, measuredAt: minutesAgo(30), idempotencyKey: "grace-weight" }],
  });
});

test.afterAll(async () => {
  await server.stopElsewhere();
  await server.stop();
});

test.beforeEach(async ({ page }) => {
  consoleErrors = [];
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => consoleErrors.push(error.message));
});

function minutesAgo(minutes: number) {
  return timestampFromDate(new Date(Date.now() - minutes * 60_000));
}

/** Three weeks before today of steps, nights with stages and weigh-ins, as a phone sends them. */
async function history(who: keyof typeof devices, seed: number) {
  const client = as(devices[who]).ingest;
  const days = Array.from({ length: 21 }, (_, i) => 21 - i);
  const date = (daysAgo: number) => new Date(Date.now() - daysAgo * 86_400_000).toISOString().slice(0, 10);
  const at = (daysAgo: number, hour: number) => timestampFromDate(new Date(`${date(daysAgo)}T${String(hour).padStart(2, "0")}:00:00Z`));
  const wave = (i: number, period: number) => Math.sin((i + seed * 3) / period);
  await client.ingestSteps({
    timeZone: "UTC",
    samples: days.map((d, i) => ({ date: date(d), totalSteps: Math.round(7_500 + 2_500 * wave(i, 2.3)), observedAt: at(d, 23), idempotencyKey: `${who}-steps-${d}` })),
  });
  await client.ingestSleep({
    timeZone: "UTC",
    sessions: days.map((d, i) => {
      const [core, deep, rem, awake] = [240 + Math.round(30 * wave(i, 1.7)), 70 + Math.round(15 * wave(i, 3.1)), 95 + Math.round(20 * wave(i, 2.2)), 20];
      return { date: date(d), totalSleepMinutes: core + deep + rem, inBedMinutes: core + deep + rem + awake, awakeMinutes: awake, coreMinutes: core, deepMinutes: deep, remMinutes: rem, sleepStart: at(d + 1, 22), sleepEnd: at(d, 6), observedAt: at(d, 7), idempotencyKey: `${who}-sleep-${d}` };
    }),
  });
  await client.ingestBodyMetrics({
    timeZone: "UTC",
    metrics: days.filter((d) => d % 2 === 0).map((d, i) => ({ type: BodyMetricType.WEIGHT, value: 70 + seed * 4 - i * 0.15, unit: Unit.KG, measuredAt: at(d, 7), idempotencyKey: `${who}-weight-${d}` })),
  });
}

/** A HealthKit step total for today from a client's phone, observed `minutesBefore` ago. */
async function steps(who: keyof typeof devices, total: number, minutesBefore: number, via = as) {
  const answer = await via(devices[who]).ingest.ingestSteps({
    timeZone: "UTC",
    samples: [{ date: today, totalSteps: total, observedAt: minutesAgo(minutesBefore), idempotencyKey: `${who}-${total}` }],
  });
  expect(answer.accepted).toBe(1);
}

async function signIn(page: Page, token = coachToken) {
  await page.goto(server.origin + "/");
  await page.getByLabel("Coach token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
}

const row = (page: Page, name: string) => page.getByRole("row").filter({ has: page.getByRole("link", { name }) });

test("a device token and a wrong token are refused with a clear message", async ({ page }) => {
  await signIn(page, devices.ada);
  await expect(page.getByRole("alert")).toContainText("device token");
  await signIn(page, "not-a-token");
  await expect(page.getByRole("alert")).toContainText("not valid, or it has been revoked");
  expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
});

test("the roster shows both clients and a native IngestSteps appears without a reload", async ({ page }) => {
  await signIn(page);
  await expect(page.getByRole("status")).toHaveText("Live");
  await expect(page.getByRole("link", { name: /^(Ada Lovelace|Grace Hopper)$/ })).toHaveCount(2);
  await expect(row(page, "Ada Lovelace").locator('[data-field="steps"]')).toContainText("8,432");
  await expect(row(page, "Ada Lovelace").locator('[data-field="steps"] .badge')).toHaveText("HealthKit");
  await expect(row(page, "Grace Hopper").locator('[data-field="weight_kg"]')).toContainText("61.5 kg");

  let reloaded = false;
  page.on("load", () => (reloaded = true));
  await steps("ada", 9_120, 5);
  await expect(row(page, "Ada Lovelace").locator('[data-field="steps"]')).toContainText("9,120", { timeout: 5_000 });
  expect(reloaded).toBe(false);
  expect(consoleErrors).toEqual([]);
});

test("after a restart the page resumes and shows what changed while it was away", async ({ page }) => {
  await signIn(page);
  await expect(page.getByRole("status")).toHaveText("Live");
  const position = () => page.getByTestId("position").textContent().then((text) => BigInt(text ?? "0"));
  const before = await position();

  await server.stop();
  await expect(page.getByRole("status")).toHaveText("Reconnecting…");
  // Written through another instance on the same database while this page's server is down.
  const elsewhere = await server.startElsewhere();
  await steps("ada", 10_250, 2, elsewhere);
  await server.stopElsewhere();
  await server.restart();

  await expect(page.getByRole("status")).toHaveText("Live", { timeout: 20_000 });
  await expect(row(page, "Ada Lovelace").locator('[data-field="steps"]')).toContainText("10,250");
  expect(await position()).toBeGreaterThan(before);
  // While the server was down the browser logged the refused connections; nothing else.
  expect(consoleErrors.filter((e) => !/ERR_CONNECTION_REFUSED|Failed to load resource|ERR_EMPTY_RESPONSE/.test(e))).toEqual([]);
});

test("a correction made in the page shows the coach badge, and GetEntry agrees", async ({ page }) => {
  await signIn(page);
  await page.getByRole("link", { name: "Ada Lovelace" }).click();
  const day = page.locator(`tr[data-date="${today}"]`);
  await expect(day.locator('[data-field="steps"]')).toContainText("10,250");

  await page.getByRole("button", { name: `Correct steps on ${today}` }).click();
  await page.getByLabel(`Steps on ${today}`).fill("11000");
  await page.getByRole("button", { name: "Save" }).click();
  await expect(day.locator('[data-field="steps"] .number')).toHaveText("11,000");
  await expect(day.locator('[data-field="steps"] .badge')).toHaveText("Coach");
  await expect(day.locator('[data-field="steps"] .overrode')).toHaveText("coach overrode HealthKit 10,250");

  const stored = await as(coachToken).entries.getEntry({ userId: adaId, date: today });
  expect(stored.entry?.steps).toBe(11_000);
  expect(stored.entry?.provenance.find((p) => p.field === "steps")?.source).toBe(Source.COACH);

  // The README's picture: DASHBOARD_SCREENSHOT=../docs/dashboard.png npm test refreshes it.
  await page.screenshot({ path: process.env.DASHBOARD_SCREENSHOT ?? "test-results/dashboard.png" });

  await page.getByRole("button", { name: `Why ${today}` }).click();
  const explanation = page.getByRole("dialog");
  await expect(explanation.locator('li[data-field="steps"]')).toContainText("latest manual entry by coach:");
  await expect(explanation.locator('li[data-field="steps"]')).toContainText("HealthKit said 10,250");
  await explanation.getByRole("button", { name: "Close" }).click();

  await page.getByRole("button", { name: `Clear correction of steps on ${today}` }).click();
  await expect(day.locator('[data-field="steps"] .badge')).toHaveText("HealthKit");
  await expect(day.locator('[data-field="steps"] .number')).toHaveText("10,250");
  const cleared = await as(coachToken).entries.getEntry({ userId: adaId, date: today });
  expect(cleared.entry?.steps).toBe(10_250);
  expect(consoleErrors).toEqual([]);
});

test("a phone-width screen shows the roster", async ({ page }) => {
  await page.setViewportSize({ width: 390, height: 844 });
  await signIn(page);
  for (const name of ["Ada Lovelace", "Grace Hopper"]) {
    await expect(page.getByRole("link", { name })).toBeVisible();
  }
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  expect(width).toBeLessThanOrEqual(390);
  await page.getByRole("link", { name: "Ada Lovelace" }).focus();
  await page.keyboard.press("Enter");
  await expect(page.getByRole("heading", { name: "Ada Lovelace" })).toBeVisible();
  expect(consoleErrors).toEqual([]);
});

test("signing out forgets the token", async ({ page }) => {
  await signIn(page);
  await expect(page.getByRole("status")).toHaveText("Live");
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page.getByLabel("Coach token")).toBeVisible();
  expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
  await page.reload();
  await expect(page.getByLabel("Coach token")).toBeVisible();
});

test("a revoked coach token signs the page out with the reason", async ({ page }) => {
  const other = await as(ADMIN_TOKEN).admin.createCoach({ name: "Coach Dana" });
  await signIn(page, other.coachToken);
  await expect(page.getByText("No clients yet")).toBeVisible();
  await as(ADMIN_TOKEN).admin.revokeCoach({ coachId: other.coachId });
  // The open stream was authorized when it opened; the next one (after a restart) is refused.
  await server.stop();
  await server.restart();
  await expect(page.getByRole("alert")).toContainText("not valid, or it has been revoked");
  await expect(page.getByLabel("Coach token")).toBeVisible();
  expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
});

test("an erased client leaves the roster live", async ({ page }) => {
  await signIn(page);
  await expect(page.getByRole("status")).toHaveText("Live");
  await expect(page.getByRole("link", { name: "Grace Hopper" })).toBeVisible();
  await as(ADMIN_TOKEN).privacy.eraseUser({ userId: graceId });
  await expect(page.getByRole("link", { name: "Grace Hopper" })).toHaveCount(0);
  await expect(page.getByRole("link", { name: "Ada Lovelace" })).toBeVisible();
  expect(consoleErrors).toEqual([]);
});
