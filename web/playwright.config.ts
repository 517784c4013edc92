// The dashboard's end-to-end tests: Debian's Chromium (never a downloaded browser) against
// a real `coachfit serve` each test file starts (tests/server.ts).
import { defineConfig } from "@playwright/test";

export default defineConfig({
  testDir: "tests",
  workers: 1,
  timeout: 90_000,
  expect: { timeout: 15_000 },
  reporter: [["list"]],
  use: {
    browserName: "chromium",
    headless: true,
    timezoneId: "UTC",
    launchOptions: { executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium" },
  },
});
