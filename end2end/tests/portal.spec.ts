/**
 * The customer portal without a session: /dashboard, /credits and /keys
 * render their "please sign in" state (a heading and a link to /login),
 * with the portal's section links, in light and dark colour schemes, with
 * and without JavaScript. The signed-in flows (keys, ledger, chart) need
 * the login that the auth work brings; their domain is covered by
 * tests/it/portal.rs.
 *
 * UI contract (src/app/portal):
 * - `data-testid="sign-in-required"` holds a heading "Please sign in" and a
 *   link "Sign in" to /login.
 * - A navigation landmark "Account" links Dashboard, Credits and API keys;
 *   the current one has aria-current="page".
 */
import { expect, test } from "./support";

const ORIGIN = `http://127.0.0.1:${process.env.E2E_PORT ?? "3000"}`;

for (const [path, current] of [
  ["/dashboard", "Dashboard"],
  ["/credits", "Credits"],
  ["/keys", "API keys"],
] as const) {
  for (const colorScheme of ["light", "dark"] as const) {
    test(`${path} asks to sign in (${colorScheme})`, async ({ page }) => {
      await page.emulateMedia({ colorScheme });
      await page.goto(`${ORIGIN}${path}`);
      const prompt = page.getByTestId("sign-in-required");
      await expect(prompt).toBeVisible();
      await expect(prompt.getByRole("heading", { name: "Please sign in" })).toBeVisible();
      await expect(prompt.getByRole("link", { name: "Sign in" })).toHaveAttribute("href", "/login");
      const nav = page.getByRole("navigation", { name: "Account" });
      await expect(nav.getByRole("link", { name: current })).toHaveAttribute("aria-current", "page");
      // Hydration ran without errors: the client-rendered navigation works.
      await page.waitForLoadState("networkidle");
    });
  }
}

test.describe("without JavaScript", () => {
  test.use({ javaScriptEnabled: false });

  test("the credits filter is a plain GET form", async ({ page }) => {
    await page.goto(`${ORIGIN}/credits`);
    await page.getByLabel("Show").selectOption("fix_consumed");
    await page.getByRole("button", { name: "Apply" }).click();
    await expect(page).toHaveURL(`${ORIGIN}/credits?kind=fix_consumed`);
    await expect(page.getByTestId("sign-in-required")).toBeVisible();
  });

  test("the create-key form answers with the sign-in state, not a key", async ({ page }) => {
    await page.goto(`${ORIGIN}/keys`);
    await page.getByLabel("Name").fill("CI");
    await page.getByRole("button", { name: "Create key" }).click();
    await expect(page.getByTestId("sign-in-required")).toBeVisible();
    await expect(page.getByRole("alert")).toContainText("please sign in");
    await expect(page.getByTestId("new-api-key")).toHaveCount(0);
  });
});
