/**
 * Sign-up on the home page: a visitor is told to check their email (the
 * same answer for a new and a registered address, and no key in it); the
 * invite link sets a password and shows the first API key, once; the key
 * works against the Action's credential exchange.
 *
 * UI contract (src/app):
 * - `/` renders a form `data-testid="signup-form"` with inputs labelled
 *   "Email" (name="email") and "Name" (name="name") and a submit button named
 *   "Create account". It works before hydration (plain POST /signup) and after.
 * - Once hydrated, an element with `data-hydrated="true"` exists.
 * - After sign-up: `data-testid="signup-check-email"` names the address.
 * - `/accept-invite?token=…`: "New password", "Confirm new password", button
 *   "Set my password"; then `data-testid="fresh-api-key"` holds the key.
 * - Validation errors appear in an element with role="alert".
 *
 * Each spec signs up its own random customer, so specs never share state.
 */
import { randomUUID } from "node:crypto";
import * as path from "node:path";
import { type APIRequestContext, type Page } from "@playwright/test";
import { expect, mailedLink, test } from "./support";

const API_KEY = /^rsolv_[A-Za-z0-9_-]{43,}$/;
const PASSWORD = "e2e signup password";
const SCREENSHOTS = path.join(__dirname, "..", "screenshots");

function randomEmail(): string {
  return `e2e-${randomUUID()}@example.com`;
}

/** Waits until the home page has hydrated, so clicks reach Leptos handlers. */
async function waitForHydration(page: Page): Promise<void> {
  await expect(page.locator('[data-hydrated="true"]').first()).toBeAttached();
}

/** Waits until the client app runs on any other page. */
async function waitForAppHydration(page: Page): Promise<void> {
  await expect(page.locator('main[data-app-hydrated="true"]')).toBeAttached();
}

/** Fills and submits the sign-up form on the current page. */
async function signUp(page: Page, email: string, name: string): Promise<void> {
  const form = page.getByTestId("signup-form");
  await expect(form).toBeVisible();
  const emailInput = form.getByLabel("Email", { exact: true });
  const nameInput = form.getByLabel("Name", { exact: true });
  await expect(emailInput).toHaveAttribute("name", "email");
  await expect(nameInput).toHaveAttribute("name", "name");
  await emailInput.fill(email);
  await nameInput.fill(name);
  await form.getByRole("button", { name: "Create account" }).click();
}

test.describe("sign-up with JavaScript", () => {
  test("says check your email, the invite shows the first key once, and the key exchanges for credentials", async ({
    page,
    request,
  }) => {
    const email = randomEmail();
    await page.goto("/");
    await waitForHydration(page);
    await signUp(page, email, "E2E Hydrated");
    const panel = page.getByTestId("signup-check-email");
    await expect(panel).toContainText(email);
    await expect(page.getByText(/rsolv_/)).toHaveCount(0);
    await page.screenshot({ path: path.join(SCREENSHOTS, "signup.png"), fullPage: true });

    // A second sign-up with the same address gets the same answer.
    await page.goto("/");
    await waitForHydration(page);
    await signUp(page, email.toUpperCase(), "Someone Else");
    await expect(page.getByTestId("signup-check-email")).toContainText(email.toUpperCase());

    // The invite sets a password and shows the key, once.
    await page.goto(await mailedLink(request, email, "/accept-invite"));
    await waitForAppHydration(page);
    await page.getByLabel("New password", { exact: true }).fill(PASSWORD);
    await page.getByLabel("Confirm new password", { exact: true }).fill(PASSWORD);
    await page.getByRole("button", { name: "Set my password" }).click();
    const shown = page.getByTestId("fresh-api-key");
    await expect(shown).toHaveText(API_KEY);
    const key = ((await shown.textContent()) ?? "").trim();
    await expect(page.getByTestId("revoked-keys-note")).toHaveCount(0);
    await page.screenshot({ path: path.join(SCREENSHOTS, "first-key.png"), fullPage: true });

    // The key works against the Action's API.
    const response = await request.post("/api/v1/credentials/exchange", {
      headers: { "x-api-key": key },
      data: { api_key: key, providers: ["anthropic", "openai"], ttl_minutes: 30 },
    });
    expect(response.status(), await response.text()).toBe(200);
    const body = await response.json();
    // A virtual key for the /ai gateway, never the operator's own key.
    expect(body.credentials.anthropic.api_key).toMatch(/^rsolv_vk_/);
    expect(JSON.stringify(body)).not.toContain("e2e-anthropic-credential");
    expect(typeof body.credentials.anthropic.expires_at).toBe("string");
    expect(body.credentials.openai).toBeUndefined();
    expect(body.usage.remaining_fixes).toBe(5);
  });

  test("rejects an invalid email with an alert", async ({ page }) => {
    await page.goto("/");
    await waitForHydration(page);

    await signUp(page, "not-an-email", "E2E Invalid");
    await expect(page.getByRole("alert").filter({ hasText: /\S/ })).toBeVisible();
    await expect(page.getByTestId("signup-check-email")).toHaveCount(0);
    await page.screenshot({
      path: path.join(SCREENSHOTS, "signup-invalid-email.png"),
      fullPage: true,
    });
  });
});

test.describe("sign-up without JavaScript", () => {
  test.use({ javaScriptEnabled: false });

  test("the server-rendered form says check your email", async ({ page }) => {
    const email = randomEmail();
    await page.goto("/");
    await signUp(page, email, "E2E No Script");
    await expect(page.getByTestId("signup-check-email")).toContainText(email);
    await page.screenshot({ path: path.join(SCREENSHOTS, "signup-no-js.png"), fullPage: true });
  });
});
