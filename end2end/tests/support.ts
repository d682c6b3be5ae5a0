/**
 * What every spec shares.
 *
 * - `test`: Playwright's `test` with one automatic fixture: every page of
 *   the test (its own `page`, and pages of contexts it opens with
 *   `browser.newContext()` / `browser.newPage()`) is watched, and the test
 *   fails at its end if any page logged a console error or threw an
 *   uncaught error (`pageerror`: a hydration panic, a failed import).
 *   "Failed to load resource … status of 4xx" is not an error of the app:
 *   the browser logs it for every deliberate 4xx answer (a refused form, a
 *   signed-out server function). 5xx and network failures do count.
 * - The SMTP sink's mail, the hydration marker, sign-in.
 */
import AxeBuilder from "@axe-core/playwright";
import { execFileSync } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import * as path from "node:path";
import {
  test as base,
  expect,
  type APIRequestContext,
  type Browser,
  type BrowserContext,
  type Page,
} from "@playwright/test";

export { expect };

/** The end-to-end server's origin (E2E_PORT, default 3000). */
export const ORIGIN = `http://127.0.0.1:${process.env.E2E_PORT ?? "3000"}`;

/** Where specs save screenshots (kept locally, never committed). */
export const SCREENSHOTS = path.resolve(__dirname, "..", "screenshots");

/** The widths (px) and colour schemes every page is checked in. */
export const GATE_WIDTHS = [390, 1280] as const;
export const GATE_SCHEMES = ["light", "dark"] as const;

/** The serious and critical axe violations (WCAG 2.1 A/AA) of the page as it is now. */
export async function seriousViolations(page: Page): Promise<string[]> {
  const results = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
  return results.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.impact} ${v.id}: ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).slice(0, 5).join(", ")}`);
}

/** The page has a title of its own ("… · RSOLV") and links the favicon. */
export async function checkTitleAndIcon(page: Page): Promise<void> {
  const title = await page.title();
  expect(title, `${page.url()} has a title of its own`).toMatch(/^\S.* · RSOLV$|^RSOLV/);
  await expect(page.locator('link[rel="icon"]')).toHaveAttribute("href", "/favicon.svg");
}

/**
 * The quality gates (issue 14, item 7) on the page as it is now, at each
 * of `GATE_WIDTHS` in each of `GATE_SCHEMES`: the document does not scroll
 * sideways, axe finds no serious or critical violation, and a full-page
 * screenshot is saved as `screenshots/pages/<name>-<width>-<scheme>.png`.
 * Leaves the page at the last width and scheme.
 */
export async function checkGates(page: Page, name: string): Promise<void> {
  const url = page.url();
  for (const width of GATE_WIDTHS) {
    await page.setViewportSize({ width, height: 900 });
    for (const colorScheme of GATE_SCHEMES) {
      await page.emulateMedia({ colorScheme });
      const overflow = await page.evaluate(
        () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
      );
      // On failure, name the elements that reach past the viewport.
      const wide =
        overflow <= 0
          ? []
          : await page.evaluate(() =>
              Array.from(document.querySelectorAll("body *"))
                .filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
                .slice(-8)
                .map((e) => `${e.tagName.toLowerCase()}.${(e.getAttribute("class") ?? "").split(" ").slice(0, 4).join(".")} right=${Math.round(e.getBoundingClientRect().right)}`),
            );
      expect(overflow, `${url} at ${width} px (${colorScheme}) scrolls sideways by ${overflow} px: ${wide.join("; ")}`).toBeLessThanOrEqual(0);
      expect(await seriousViolations(page), `${url} at ${width} px (${colorScheme})`).toEqual([]);
      await page.screenshot({
        path: path.join(SCREENSHOTS, "pages", `${name}-${width}-${colorScheme}.png`),
        fullPage: true,
      });
    }
  }
}

/** The password the specs' customers register with. */
export const PASSWORD = "correct horse battery";

/** The browser's note for a deliberate 4xx answer (not an app error). */
const CLIENT_ERROR_RESOURCE = /^Failed to load resource: the server responded with a status of 4\d\d\b/;

function watch(page: Page, errors: string[]): void {
  page.on("pageerror", (error) => errors.push(`${page.url()}: uncaught ${error.name}: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error" && !CLIENT_ERROR_RESOURCE.test(message.text())) {
      errors.push(`${page.url()}: console error: ${message.text()}`);
    }
  });
}

function watchContext(context: BrowserContext, errors: string[]): void {
  for (const page of context.pages()) {
    watch(page, errors);
  }
  context.on("page", (page) => watch(page, errors));
}

export const test = base.extend<{ pageErrors: string[] }>({
  pageErrors: [
    async ({ context, browser }, use) => {
      const errors: string[] = [];
      watchContext(context, errors);
      const b = browser as Browser;
      const newContext = b.newContext.bind(b);
      const newPage = b.newPage.bind(b);
      b.newContext = async (options) => {
        const opened = await newContext(options);
        watchContext(opened, errors);
        return opened;
      };
      b.newPage = async (options) => {
        const page = await newPage(options);
        watch(page, errors);
        return page;
      };
      try {
        await use(errors);
      } finally {
        b.newContext = newContext;
        b.newPage = newPage;
      }
      expect(errors, "console errors and uncaught errors in the browser").toEqual([]);
    },
    { auto: true },
  ],
});

/** The SMTP sink's REST API (MailDev), `TEST_SMTP_API_URL`. */
export function smtpApi(): string {
  const url = process.env.TEST_SMTP_API_URL;
  if (!url) {
    throw new Error("TEST_SMTP_API_URL must name the SMTP sink's API (scripts/test.sh starts one)");
  }
  return url;
}

/** A fresh address at example.com, tagged for the log. */
export function randomEmail(tag: string): string {
  return `e2e-${tag}-${randomUUID()}@example.com`;
}

interface SinkEmail {
  to: { address: string }[];
  subject: string;
  text?: string;
  date: string;
}

/**
 * The path and query (`/confirm-email?token=…`) of the newest link to
 * `linkPath` mailed to `to`, polled from the SMTP sink until it arrives
 * (20 s at most).
 */
export async function mailedLink(request: APIRequestContext, to: string, linkPath: string): Promise<string> {
  const pattern = new RegExp(`https?://[^\\s"<>]*(${linkPath.replace(/[/-]/g, "\\$&")}\\?token=[A-Za-z0-9_-]+)`);
  let found: string | undefined;
  await expect
    .poll(
      async () => {
        const response = await request.get(`${smtpApi()}/email`);
        expect(response.ok()).toBe(true);
        const emails = ((await response.json()) as SinkEmail[])
          .filter((e) => e.to.some((r) => r.address.toLowerCase() === to.toLowerCase()))
          .sort((a, b) => Date.parse(b.date) - Date.parse(a.date));
        for (const email of emails) {
          const match = pattern.exec(email.text ?? "");
          if (match) {
            found = match[1];
            return true;
          }
        }
        return false;
      },
      { message: `an email to ${to} with a ${linkPath} link`, timeout: 20_000 },
    )
    .toBe(true);
  return found as string;
}

/** Waits until the client app runs (`main[data-app-hydrated="true"]`). */
export async function waitForHydration(page: Page): Promise<void> {
  await expect(page.locator('main[data-app-hydrated="true"]')).toBeAttached();
}

/** The password of the staff admins the specs create. */
export const ADMIN_PASSWORD = "a long staff admin password";

/** RFC 4648 base32 (no padding) to bytes. */
function base32Decode(text: string): Buffer {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  const out: number[] = [];
  for (const c of text.trim().replace(/=+$/, "").toUpperCase()) {
    const index = alphabet.indexOf(c);
    if (index < 0) {
      throw new Error(`not base32: ${c}`);
    }
    value = ((value << 5) | index) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/**
 * The RFC 6238 TOTP code (HMAC-SHA-1, 6 digits, 30 s steps) of a base32
 * secret for the step `steps` away from now, as an authenticator app
 * computes it.
 */
export function totpCode(secretBase32: string, steps = 0): string {
  const counter = Math.floor(Date.now() / 1000 / 30) + steps;
  const message = Buffer.alloc(8);
  message.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac("sha1", base32Decode(secretBase32)).update(message).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const code = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return code.toString().padStart(6, "0");
}

/**
 * A staff admin's first sign-in after the password: the enrolment page at
 * /admin/2fa shows the TOTP secret; the code computed from it confirms the
 * enrolment, the recovery codes are shown once, and "Continue" opens the
 * console. Returns the secret (for later sign-ins: use `totpCode(secret, 1)`,
 * the enrolment's own step is used up).
 */
export async function enrolTotp(page: Page): Promise<string> {
  await expect(page).toHaveURL(/\/admin\/2fa$/);
  await waitForHydration(page);
  const secret = ((await page.getByTestId("totp-secret").textContent()) ?? "").trim();
  expect(secret).toMatch(/^[A-Z2-7]{32}$/);
  const form = page.getByTestId("two-factor-form");
  await form.getByLabel("Code", { exact: true }).fill(totpCode(secret));
  await form.getByRole("button", { name: "Verify" }).click();
  const codes = page.getByTestId("recovery-codes");
  await expect(codes).toBeVisible();
  await expect(codes.locator("li")).toHaveCount(10);
  await page.getByTestId("two-factor-continue").click();
  return secret;
}

/** Creates a staff admin through the CLI subcommand, as an operator would. */
export function createAdmin(email: string): void {
  const bin = process.env.RSOLV_SERVER_BIN;
  if (!bin) {
    throw new Error("RSOLV_SERVER_BIN must name the server binary");
  }
  execFileSync(bin, ["create-admin", "--email", email], {
    input: `${ADMIN_PASSWORD}\n`,
    env: { ...process.env, DATABASE_URL: process.env.DATABASE_URL },
    stdio: ["pipe", "pipe", "pipe"],
  });
}


/**
 * Signs `email` up on /register (the same form as the home page: email and
 * name) and waits for "Check your email".
 */
export async function register(page: Page, email: string, name: string): Promise<void> {
  await page.goto("/register");
  await waitForHydration(page);
  const form = page.getByTestId("signup-form");
  await form.getByLabel("Email", { exact: true }).fill(email);
  await form.getByLabel("Name", { exact: true }).fill(name);
  await form.getByRole("button", { name: "Create account" }).click();
  await expect(page.getByTestId("signup-check-email")).toContainText(email);
}

/**
 * Follows the mailed set-password link of `email`, sets [`PASSWORD`] and
 * returns the first API key the page shows once.
 */
export async function acceptInvite(page: Page, request: APIRequestContext, email: string): Promise<string> {
  await page.goto(await mailedLink(request, email, "/accept-invite"));
  await waitForHydration(page);
  const form = page.getByTestId("accept-invite-form");
  await form.getByLabel("New password", { exact: true }).fill(PASSWORD);
  await form.getByLabel("Confirm new password", { exact: true }).fill(PASSWORD);
  await form.getByRole("button", { name: "Set my password" }).click();
  const shown = page.getByTestId("fresh-api-key");
  await expect(shown).toHaveText(/^rsolv_\S+$/);
  return ((await shown.textContent()) ?? "").trim();
}

export async function logIn(page: Page, email: string, password: string): Promise<void> {
  await waitForHydration(page);
  const form = page.getByTestId("login-form");
  await form.getByLabel("Email", { exact: true }).fill(email);
  await form.getByLabel("Password", { exact: true }).fill(password);
  await form.getByRole("button", { name: "Sign in" }).click();
}

/**
 * Signs up a new customer (/register, then the mailed set-password link,
 * which shows the first API key) and signs them in; ends on /dashboard.
 */
export async function newSignedInCustomer(page: Page, request: APIRequestContext, tag: string): Promise<string> {
  const email = randomEmail(tag);
  await register(page, email, `E2E ${tag}`);
  await acceptInvite(page, request, email);
  await page.goto("/login");
  await logIn(page, email, PASSWORD);
  await expect(page).toHaveURL(/\/dashboard$/);
  return email;
}

