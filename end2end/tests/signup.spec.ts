/**
 * Sign-up on the home page: a visitor gets an API key and 5 trial credits,
 * copies the key, and the key works against the Action's credential exchange.
 *
 * UI contract (src/app):
 * - `/` renders a form `data-testid="signup-form"` with inputs labelled
 *   "Email" (name="email") and "Name" (name="name") and a submit button named
 *   "Create account". It works before hydration (server action) and after.
 * - Once hydrated, an element with `data-hydrated="true"` exists.
 * - After sign-up: `data-testid="api-key"` shows the key, `data-testid="credit-balance"`
 *   shows the balance, and `data-testid="copy-api-key"` (accessible name
 *   "Copy API key") copies the key and then says "Copied".
 * - Validation errors appear in an element with role="alert".
 *
 * Each spec signs up its own random customer, so specs never share state.
 */
import { randomUUID } from "node:crypto";
import * as path from "node:path";
import { expect, test, type Page } from "@playwright/test";

const ORIGIN = `http://127.0.0.1:${process.env.E2E_PORT ?? "3000"}`;
const API_KEY = /^rsolv_[A-Za-z0-9_-]{43,}$/;
const TRIAL_CREDITS = "5";
const SCREENSHOTS = path.join(__dirname, "..", "screenshots");

function randomEmail(): string {
  return `e2e-${randomUUID()}@example.com`;
}

/** Waits until the client-side app has hydrated, so clicks reach Leptos handlers. */
async function waitForHydration(page: Page): Promise<void> {
  await expect(page.locator('[data-hydrated="true"]').first()).toBeAttached();
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

/** Waits for the issued key and returns it. */
async function shownApiKey(page: Page): Promise<string> {
  const apiKey = page.getByTestId("api-key");
  await expect(apiKey).toHaveText(API_KEY);
  const key = ((await apiKey.textContent()) ?? "").trim();
  expect(key).toMatch(API_KEY);
  return key;
}

test.describe("sign-up with JavaScript", () => {
  test("issues a key with 5 trial credits, copies it, and the key exchanges for credentials", async ({
    page,
    context,
    request,
  }) => {
    await page.goto("/");
    await waitForHydration(page);

    await signUp(page, randomEmail(), "E2E Hydrated");
    const key = await shownApiKey(page);
    await expect(page.getByTestId("credit-balance")).toHaveText(TRIAL_CREDITS);
    await page.screenshot({ path: path.join(SCREENSHOTS, "signup.png"), fullPage: true });

    // Copy to the clipboard.
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: ORIGIN });
    const copy = page.getByTestId("copy-api-key");
    await expect(copy).toHaveAccessibleName("Copy API key");
    await copy.click();
    await expect(copy).toContainText("Copied");
    const clipboard = await page.evaluate(() => navigator.clipboard.readText());
    expect(clipboard).toBe(key);

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

  test("rejects an invalid email with an alert and issues no key", async ({ page }) => {
    await page.goto("/");
    await waitForHydration(page);

    await signUp(page, "not-an-email", "E2E Invalid");
    await expect(page.getByRole("alert").filter({ hasText: /\S/ })).toBeVisible();
    await expect(page.getByTestId("api-key")).toHaveCount(0);
    await page.screenshot({
      path: path.join(SCREENSHOTS, "signup-invalid-email.png"),
      fullPage: true,
    });
  });
});

test.describe("sign-up without JavaScript", () => {
  test.use({ javaScriptEnabled: false });

  test("the server-rendered form issues a key with 5 trial credits", async ({ page }) => {
    await page.goto("/");
    await signUp(page, randomEmail(), "E2E No Script");
    await shownApiKey(page);
    await expect(page.getByTestId("credit-balance")).toHaveText(TRIAL_CREDITS);
    await page.screenshot({ path: path.join(SCREENSHOTS, "signup-no-js.png"), fullPage: true });
  });
});
