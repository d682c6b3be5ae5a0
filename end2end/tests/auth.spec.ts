/**
 * Accounts: sign up on /register → set the password through the mailed
 * invite link (which shows the first API key) → sign in → account page →
 * log out, in the browser; and a wrong password without JavaScript.
 *
 * UI contract (src/app/auth):
 * - `/register`: the home page's signup form (`data-testid="signup-form"`:
 *   "Email", "Name", button "Create account"), then
 *   `data-testid="signup-check-email"`.
 * - `/accept-invite?token=…`: "New password", "Confirm new password", button
 *   "Set my password" → `data-testid="fresh-api-key"`.
 * - `/login`: "Email", "Password", button "Sign in" → `/dashboard`.
 * - Header: `data-testid="nav-signed-in"` / `"nav-signed-out"`.
 * - `/account`: `data-testid="account-email"`, buttons "Log out",
 *   "Log out of all devices", the change-password form.
 * - Errors: role="alert".
 */
import * as path from "node:path";
import { type Page } from "@playwright/test";
import { acceptInvite, expect, PASSWORD, randomEmail, register, test } from "./support";

const SCREENSHOTS = path.join(__dirname, "..", "screenshots");

async function logIn(page: Page, email: string, password: string): Promise<void> {
  const form = page.getByTestId("login-form");
  await form.getByLabel("Email", { exact: true }).fill(email);
  await form.getByLabel("Password", { exact: true }).fill(password);
  await form.getByRole("button", { name: "Sign in" }).click();
}

test("sign up, set the password from the invite, sign in, see the account, log out", async ({ page, request }) => {
  const email = randomEmail("auth");
  await register(page, email, "E2E Account");
  await acceptInvite(page, request, email);

  await page.getByRole("link", { name: "Continue to sign in" }).click();
  await expect(page).toHaveURL(/\/login\?next=\/dashboard$/);
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
    await logIn(page, randomEmail("auth"), "not the password");
    await expect(page).toHaveURL(/\/login\?error=/);
    await expect(page.getByRole("alert")).toHaveText("incorrect email or password");
    await expect(page.getByTestId("nav-signed-out")).toBeVisible();
    await page.screenshot({ path: path.join(SCREENSHOTS, "login-error-no-js.png"), fullPage: true });
  });
});
