/**
 * Customer journeys through the signed-in portal, each with its own random
 * customer:
 * - register → confirm (link from the SMTP sink) → sign in → dashboard with
 *   5 credits → create a key (shown once, copy works) → the key exchanges
 *   for credentials → revoke it (with the confirmation step) → 401;
 * - password reset through the mailed link: the new password signs in, the
 *   old one does not;
 * - rotation: the new key is shown once and both keys work during the grace
 *   period;
 * - screenshots of /dashboard, /credits and /keys with data, light and dark.
 *
 * Email is read from the SMTP sink (MailDev) over its REST API at
 * `$TEST_SMTP_API_URL/email`; scripts/test.sh starts it and points the
 * server's SMTP worker at it.
 *
 * UI contract (besides auth.spec.ts's): `main[data-app-hydrated="true"]`
 * once the client app runs; /keys: form `create-key-form` (input "Name",
 * button "Create key"), `new-key` with `new-api-key` and a button "Copy the
 * new API key", each `key-item` with links "Revoke <name> (<prefix>…)" /
 * "Rotate …" opening `confirm-revoke` / `confirm-rotate` with the buttons
 * "Yes, revoke it" / "Yes, rotate it"; /dashboard: `credit-balance`.
 */
import * as path from "node:path";
import { type APIRequestContext, type BrowserContext, type Page } from "@playwright/test";
import {
  expect,
  logIn,
  mailedLink,
  newSignedInCustomer,
  randomEmail,
  test,
  waitForHydration,
  ORIGIN,
  PASSWORD,
  SCREENSHOTS,
} from "./support";

const NEW_PASSWORD = "a brand new horse battery";
const API_KEY = /^rsolv_[A-Za-z0-9_-]{43,}$/;

/** Creates a key named `name` on /keys; returns the secret shown once. */
async function createKey(page: Page, name: string): Promise<string> {
  await page.goto("/keys");
  await waitForHydration(page);
  const form = page.getByTestId("create-key-form");
  await form.getByLabel("Name").fill(name);
  await form.getByRole("button", { name: "Create key" }).click();
  const shown = page.getByTestId("new-key");
  await expect(shown).toContainText(`Key “${name}” created`);
  const secret = ((await page.getByTestId("new-api-key").textContent()) ?? "").trim();
  expect(secret).toMatch(API_KEY);
  return secret;
}

async function exchangeStatus(request: APIRequestContext, key: string): Promise<number> {
  const response = await request.post("/api/v1/credentials/exchange", {
    headers: { "x-api-key": key },
    data: { providers: ["anthropic"] },
  });
  return response.status();
}

/** The `key-item` of the key named `name`. */
function keyItem(page: Page, name: string) {
  return page.getByTestId("key-item").filter({ hasText: name });
}

async function grantClipboard(context: BrowserContext): Promise<void> {
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: ORIGIN });
}

test("register, confirm, sign in, create a key, use it, revoke it", async ({ page, context, request }) => {
  await newSignedInCustomer(page, request, "journey");
  await expect(page.getByTestId("credit-balance")).toHaveText("5");

  const key = await createKey(page, "CI key");
  // Shown once: the list shows only its prefix, never the secret.
  await expect(keyItem(page, "CI key")).toBeVisible();
  await expect(keyItem(page, "CI key")).not.toContainText(key);

  await grantClipboard(context);
  const copy = page.getByRole("button", { name: "Copy the new API key" });
  await copy.click();
  await expect(copy).toHaveText("Copied");
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(key);

  expect(await exchangeStatus(request, key)).toBe(200);

  // Leaving the page drops the secret for good.
  await page.goto("/keys");
  await waitForHydration(page);
  await expect(page.getByTestId("new-api-key")).toHaveCount(0);
  await expect(page.locator("body")).not.toContainText(key);

  // Revoke, through the confirmation step (Cancel first changes nothing).
  const item = keyItem(page, "CI key");
  await item.getByRole("link", { name: /^Revoke CI key/ }).click();
  const confirmRevoke = page.getByTestId("confirm-revoke");
  await expect(confirmRevoke).toBeVisible();
  await confirmRevoke.getByRole("link", { name: "Cancel" }).click();
  await expect(page.getByTestId("confirm-revoke")).toHaveCount(0);
  expect(await exchangeStatus(request, key)).toBe(200);

  await waitForHydration(page);
  await keyItem(page, "CI key").getByRole("link", { name: /^Revoke CI key/ }).click();
  await page.getByTestId("confirm-revoke").getByRole("button", { name: "Yes, revoke it" }).click();
  await expect(keyItem(page, "CI key").getByTestId("key-status")).toHaveText(/revoked/i);
  expect(await exchangeStatus(request, key)).toBe(401);
});

test("password reset through the mailed link", async ({ page, request }) => {
  const email = await newSignedInCustomer(page, request, "reset");
  // Sign out (a reset signs out every session anyway).
  await page.goto("/account");
  await waitForHydration(page);
  await page.getByRole("main").getByRole("button", { name: "Log out", exact: true }).click();
  await expect(page).toHaveURL(/\/login\?notice=signed_out$/);

  await page.goto("/forgot-password");
  await waitForHydration(page);
  const forgot = page.getByTestId("forgot-password-form");
  await forgot.getByLabel("Email", { exact: true }).fill(email);
  await forgot.getByRole("button", { name: "Send the link" }).click();
  await expect(page.getByRole("status")).toContainText("we sent it a link");

  await page.goto(await mailedLink(request, email, "/reset-password"));
  await waitForHydration(page);
  const reset = page.getByTestId("reset-password-form");
  await reset.getByLabel("New password", { exact: true }).fill(NEW_PASSWORD);
  await reset.getByLabel("Confirm new password", { exact: true }).fill(NEW_PASSWORD);
  await reset.getByRole("button", { name: "Set the new password" }).click();
  await expect(page).toHaveURL(/\/login\?notice=password_reset$/);

  // The old password no longer works…
  await logIn(page, email, PASSWORD);
  await expect(page.getByRole("alert")).toHaveText("incorrect email or password");
  await expect(page.getByTestId("nav-signed-out")).toBeVisible();
  // …the new one does.
  await page.goto("/login");
  await logIn(page, email, NEW_PASSWORD);
  await expect(page).toHaveURL(/\/dashboard$/);
  await expect(page.getByTestId("nav-signed-in")).toBeVisible();
});

test("rotating a key: the new key is shown once, both work during the grace period", async ({
  page,
  request,
}) => {
  await newSignedInCustomer(page, request, "rotate");
  const oldKey = await createKey(page, "Deploy");
  expect(await exchangeStatus(request, oldKey)).toBe(200);

  await page.goto("/keys");
  await waitForHydration(page);
  await keyItem(page, "Deploy").getByRole("link", { name: /^Rotate Deploy/ }).click();
  await page.getByTestId("confirm-rotate").getByRole("button", { name: "Yes, rotate it" }).click();
  const shown = page.getByTestId("new-key");
  await expect(shown).toContainText("Key “Deploy” rotated");
  await expect(shown).toContainText("keeps working until");
  const newKey = ((await page.getByTestId("new-api-key").textContent()) ?? "").trim();
  expect(newKey).toMatch(API_KEY);
  expect(newKey).not.toBe(oldKey);

  expect(await exchangeStatus(request, oldKey)).toBe(200);
  expect(await exchangeStatus(request, newKey)).toBe(200);

  // Shown once: gone after leaving the page.
  await page.goto("/keys");
  await expect(page.locator("body")).not.toContainText(newKey);
});

test("screenshots of the portal with data, light and dark", async ({ page, request }) => {
  await newSignedInCustomer(page, request, "screens");
  const key = await createKey(page, "acme/api CI");
  for (const issue of [17, 18]) {
    const response = await request.post("/api/v1/fix-attempts", {
      headers: { "x-api-key": key },
      data: {
        github_org: "acme",
        repo_name: "api",
        issue_number: issue,
        pr_number: issue + 100,
        pr_title: `Fix SQL injection #${issue}`,
        pr_url: `https://github.com/acme/api/pull/${issue + 100}`,
      },
    });
    expect(response.status(), await response.text()).toBe(200);
  }

  for (const [pagePath, name, ready] of [
    ["/dashboard", "dashboard", "usage-chart"],
    ["/credits", "credits", "ledger-table"],
    ["/keys", "keys", "key-list"],
  ] as const) {
    for (const colorScheme of ["light", "dark"] as const) {
      await page.emulateMedia({ colorScheme });
      await page.goto(pagePath);
      await waitForHydration(page);
      await expect(page.getByTestId(ready)).toBeVisible();
      if (name === "dashboard") await expect(page.getByTestId("credit-balance")).toHaveText("3");
      if (name === "credits") await expect(page.getByTestId("ledger-row")).toHaveCount(3);
      await page.screenshot({
        path: path.join(SCREENSHOTS, `${name}-${colorScheme}.png`),
        fullPage: true,
      });
    }
  }
});
