/**
 * Accounts: register → confirm the email through the mailed link → sign in →
 * account page → log out, in the browser; and a wrong password without
 * JavaScript.
 *
 * UI contract (src/app/auth):
 * - `/register`: inputs labelled "Email", "Name", "Password", "Confirm password";
 *   button "Create account"; then a role="status" message "Check your inbox…".
 * - `/confirm-email?token=…`: "Password" (the one registered) and button "Confirm my email" →
 *   `/login?notice=confirmed`.
 * - `/login`: "Email", "Password", button "Sign in" → `/dashboard`.
 * - Header: `data-testid="nav-signed-in"` / `"nav-signed-out"`.
 * - `/account`: `data-testid="account-email"`, buttons "Log out",
 *   "Log out of all devices", the change-password form.
 * - Errors: role="alert".
 *
 * The confirmation link is read from the email outbox with psql (DATABASE_URL).
 */
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import * as path from "node:path";
import { type Page } from "@playwright/test";
import { expect, test } from "./support";

const SCREENSHOTS = path.join(__dirname, "..", "screenshots");
const PASSWORD = "correct horse battery";

function randomEmail(): string {
  return `e2e-auth-${randomUUID()}@example.com`;
}

/** The token of the newest email of `kind` to `to`, from the outbox. */
function mailedToken(to: string, kind: string): string {
  const text = execFileSync(
    "psql",
    [
      process.env.DATABASE_URL ?? "",
      "-At",
      "-v",
      `to=${to}`,
      "-v",
      `kind=${kind}`,
    ],
    {
      encoding: "utf8",
      // psql interpolates :'var' only in scripts it reads, not in -c.
      input:
        // The typed notification carries the link at once; the rendered
        // text exists only after the email worker has sent it.
        "SELECT coalesce(text_body, notification->>'link') FROM email_outbox WHERE to_address = :'to' AND kind = :'kind' ORDER BY id DESC LIMIT 1;\n",
    },
  );
  const match = /token=([A-Za-z0-9_-]+)/.exec(text);
  if (!match) throw new Error(`no ${kind} email to ${to}`);
  return match[1];
}

async function register(page: Page, email: string): Promise<void> {
  await page.goto("/register");
  const form = page.getByTestId("register-form");
  await form.getByLabel("Email", { exact: true }).fill(email);
  await form.getByLabel("Name", { exact: true }).fill("E2E Account");
  await form.getByLabel("Password", { exact: true }).fill(PASSWORD);
  await form.getByLabel("Confirm password", { exact: true }).fill(PASSWORD);
  await form.getByRole("button", { name: "Create account" }).click();
  await expect(page.getByRole("status")).toContainText("Check your inbox");
}

async function logIn(page: Page, email: string, password: string): Promise<void> {
  const form = page.getByTestId("login-form");
  await form.getByLabel("Email", { exact: true }).fill(email);
  await form.getByLabel("Password", { exact: true }).fill(password);
  await form.getByRole("button", { name: "Sign in" }).click();
}

test("register, confirm, sign in, see the account, log out", async ({ page }) => {
  const email = randomEmail();
  await register(page, email);

  await page.goto(`/confirm-email?token=${mailedToken(email, "email_confirmation")}`);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Confirm my email" }).click();
  await expect(page).toHaveURL(/\/login\?notice=confirmed$/);
  await expect(page.getByRole("status")).toContainText("Your email is confirmed");
  await page.screenshot({ path: path.join(SCREENSHOTS, "login.png"), fullPage: true });

  await logIn(page, email, PASSWORD);
  await expect(page).toHaveURL(/\/dashboard$/);
  await expect(page.getByTestId("nav-signed-in")).toBeVisible();

  await page.goto("/account");
  await expect(page.getByTestId("account-email")).toHaveText(email);
  await page.emulateMedia({ colorScheme: "dark" });
  await page.screenshot({ path: path.join(SCREENSHOTS, "account-dark.png"), fullPage: true });
  await page.emulateMedia({ colorScheme: "light" });

  await page.getByRole("main").getByRole("button", { name: "Log out", exact: true }).click();
  await expect(page).toHaveURL(/\/login\?notice=signed_out$/);
  await expect(page.getByTestId("nav-signed-out")).toBeVisible();
  // Signed out, the account page sends to sign in (and back afterwards).
  await page.goto("/account");
  await expect(page).toHaveURL(/\/login\?next=\/account$/);
  await expect(page.getByTestId("login-form")).toBeVisible();
});

test.describe("without JavaScript", () => {
  test.use({ javaScriptEnabled: false });

  test("a wrong password shows an alert and signs nobody in", async ({ page }) => {
    await page.goto("/login");
    await logIn(page, randomEmail(), "not the password");
    await expect(page).toHaveURL(/\/login\?error=/);
    await expect(page.getByRole("alert")).toHaveText("incorrect email or password");
    await expect(page.getByTestId("nav-signed-out")).toBeVisible();
    await page.screenshot({ path: path.join(SCREENSHOTS, "login-error-no-js.png"), fullPage: true });
  });
});
