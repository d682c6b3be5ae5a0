/**
 * Navigation around the customer portal (issue 14, item 4), with and
 * without JavaScript, each spec with its own random customer:
 * - a signed-out visit to a portal page or /account goes to
 *   `/login?next=<the page, query included>` (no page frame first);
 * - signing in there lands on the page asked for;
 * - once signed in, `/login` goes to the dashboard and the home page and
 *   /register offer the dashboard instead of a signup form.
 * The signed-in flows (keys, ledger, chart) are journeys.spec.ts's; their
 * domain is covered by tests/it/portal.rs, the redirects by
 * tests/it/navigation.rs.
 *
 * UI contract (src/app):
 * - `/login`: `data-testid="login-form"` ("Email", "Password", button
 *   "Sign in").
 * - `/` and `/register` for a signed-in visitor: `data-testid="signed-in-panel"`
 *   with a link "Go to your dashboard" (`data-testid="signed-in-home"`).
 * - /credits: `ledger-row` per ledger entry.
 */
import { randomUUID } from "node:crypto";
import { type APIRequestContext, type Page } from "@playwright/test";
import { expect, mailedLink, test, ORIGIN } from "./support";

const PASSWORD = "portal navigation password";

function randomEmail(): string {
  return `e2e-nav-${randomUUID()}@example.com`;
}

/**
 * Signs a new customer up on /register and sets their password through the
 * mailed invite link (both forms work with and without JavaScript; the
 * second shows the first API key); ends signed out.
 */
async function newConfirmedCustomer(page: Page, request: APIRequestContext): Promise<string> {
  const email = randomEmail();
  await page.goto(`${ORIGIN}/register`);
  const form = page.getByTestId("signup-form");
  await form.getByLabel("Email", { exact: true }).fill(email);
  await form.getByLabel("Name", { exact: true }).fill("E2E Navigation");
  await form.getByRole("button", { name: "Create account" }).click();
  await expect(page.getByTestId("signup-check-email")).toContainText(email);
  await page.goto(`${ORIGIN}${await mailedLink(request, email, "/accept-invite")}`);
  const invite = page.getByTestId("accept-invite-form");
  await invite.getByLabel("New password", { exact: true }).fill(PASSWORD);
  await invite.getByLabel("Confirm new password", { exact: true }).fill(PASSWORD);
  await invite.getByRole("button", { name: "Set my password" }).click();
  await expect(page.getByTestId("fresh-api-key")).toHaveText(/^rsolv_\S+$/);
  return email;
}

async function signIn(page: Page, email: string): Promise<void> {
  const form = page.getByTestId("login-form");
  await form.getByLabel("Email", { exact: true }).fill(email);
  await form.getByLabel("Password", { exact: true }).fill(PASSWORD);
  await form.getByRole("button", { name: "Sign in" }).click();
}

/** Signs in from a signed-out visit to `/credits?kind=signup_bonus` and checks the return. */
async function returnAfterSignIn(page: Page, email: string): Promise<void> {
  await page.goto(`${ORIGIN}/credits?kind=signup_bonus`);
  await expect(page).toHaveURL(`${ORIGIN}/login?next=/credits%3Fkind%3Dsignup_bonus`);
  await signIn(page, email);
  await expect(page).toHaveURL(`${ORIGIN}/credits?kind=signup_bonus`);
  await expect(page.getByTestId("ledger-row")).toHaveCount(1);

  // Signed in: no sign-in or sign-up offered again.
  await page.goto(`${ORIGIN}/login`);
  await expect(page).toHaveURL(`${ORIGIN}/dashboard`);
  for (const path of ["/", "/register"]) {
    await page.goto(`${ORIGIN}${path}`);
    const panel = page.getByTestId("signed-in-panel");
    await expect(panel).toContainText(email);
    await expect(panel.getByRole("link", { name: "Go to your dashboard" })).toHaveAttribute(
      "href",
      "/dashboard",
    );
    await expect(page.getByTestId("signup-form")).toHaveCount(0);
  }
}

for (const [path, next] of [
  ["/dashboard", "/dashboard"],
  ["/credits?kind=fix_consumed", "/credits%3Fkind%3Dfix_consumed"],
  ["/keys", "/keys"],
  ["/billing", "/billing"],
  ["/ai-usage", "/ai-usage"],
  ["/account", "/account"],
] as const) {
  test(`a signed-out visit to ${path} goes to sign in`, async ({ page }) => {
    await page.goto(`${ORIGIN}${path}`);
    await expect(page).toHaveURL(`${ORIGIN}/login?next=${next}`);
    await expect(page.getByTestId("login-form")).toBeVisible();
    await expect(page.getByTestId("sign-in-required")).toHaveCount(0);
    await page.waitForLoadState("networkidle");
  });
}

test("signing in returns to the page asked for (JavaScript)", async ({ page, request }) => {
  const email = await newConfirmedCustomer(page, request);
  await returnAfterSignIn(page, email);
});

test.describe("without JavaScript", () => {
  test.use({ javaScriptEnabled: false });

  test("signing in returns to the page asked for", async ({ page, request }) => {
    const email = await newConfirmedCustomer(page, request);
    await returnAfterSignIn(page, email);
  });
});
