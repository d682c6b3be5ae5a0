/**
 * Playwright configuration for rsolv-platform's end-to-end specs.
 *
 * scripts/test.sh runs `npx playwright test` in this directory with:
 *   DATABASE_URL      a fresh, empty database made for this run (dropped afterwards)
 *   RSOLV_SERVER_BIN  the server binary built by `cargo leptos build`
 *   RSOLV_ROOT        the repository root (Leptos.toml and target/site resolve from there)
 *   E2E_PORT          optional port of the server (default 3000)
 *   TEST_SMTP_API_URL the SMTP sink's REST API (MailDev), where the specs read
 *                     the server's email (EMAIL_TRANSPORT=smtp, SMTP_* point at it)
 *
 * The browser is Debian's Chromium (/usr/bin/chromium): Playwright never
 * downloads a browser here, so never run `playwright install`.
 */
import { defineConfig, devices } from "@playwright/test";
import * as os from "node:os";
import * as path from "node:path";

/** Port of the end-to-end server: E2E_PORT, default 3000 (set it to run two suites at once). */
const PORT = process.env.E2E_PORT ?? "3000";
const BASE_URL = `http://127.0.0.1:${PORT}`;

const root = process.env.RSOLV_ROOT ?? path.resolve(__dirname, "..");
const targetDir =
  process.env.CARGO_TARGET_DIR ??
  path.join(os.homedir(), ".cache", "rsolv-platform", "target");
const serverBin =
  process.env.RSOLV_SERVER_BIN ?? path.join(targetDir, "debug", "rsolv-platform");

const databaseUrl = process.env.DATABASE_URL;
if (!databaseUrl) {
  throw new Error(
    "DATABASE_URL must name an empty PostgreSQL database for the end-to-end server " +
      "(scripts/test.sh creates one for each run).",
  );
}

/** Single-quote a value for the POSIX shell that Playwright runs `command` in. */
const shellQuote = (value: string): string => `'${value.replace(/'/g, `'\\''`)}'`;

export default defineConfig({
  testDir: "./tests",
  outputDir: "./test-results",
  fullyParallel: false,
  forbidOnly: !!process.env.CI,
  workers: 1,
  retries: 0,
  reporter: "list",
  timeout: 60_000,
  expect: { timeout: 10_000 },

  use: {
    baseURL: BASE_URL,
    screenshot: "only-on-failure",
    trace: "off",
  },

  projects: [
    {
      name: "chromium",
      use: {
        ...devices["Desktop Chrome"],
        launchOptions: {
          executablePath: "/usr/bin/chromium",
          args: [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
          ],
        },
      },
    },
  ],

  webServer: {
    // Only the credential configured below may reach the server: provider keys
    // from the caller's environment (e.g. a developer's .env) are removed, so
    // the specs can assert exactly which providers are vended.
    command:
      "exec env -u PROVIDER_OPENAI_API_KEY -u PROVIDER_OPENROUTER_API_KEY " +
      `${shellQuote(serverBin)} serve --migrate`,
    cwd: root,
    url: `${BASE_URL}/health`,
    reuseExistingServer: false,
    timeout: 120_000,
    stdout: "pipe",
    stderr: "pipe",
    env: {
      DATABASE_URL: databaseUrl,
      PROVIDER_ANTHROPIC_API_KEY: "e2e-anthropic-credential",
      LEPTOS_SITE_ADDR: `127.0.0.1:${PORT}`,
      RUST_LOG: process.env.RUST_LOG ?? "info",
      // Every spec signs up from 127.0.0.1: keep the per-IP signup limit
      // (tested in tests/it/rate_limit.rs) out of the specs' way.
      RATE_LIMIT_SIGNUPS_PER_MINUTE: "1000",
      // The admin spec signs events with `stripe-trigger` for the webhook log.
      STRIPE_WEBHOOK_SECRETS: "whsec_e2e_admin_console",
    },
  },
});
