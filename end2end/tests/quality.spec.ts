/**
 * Quality gates on every page (issue 14, item 7), each page at 390 px and
 * 1280 px wide, in light and dark colour schemes:
 * - axe-core (WCAG 2 A/AA rules): no serious or critical violation;
 * - the document never scrolls sideways (its scroll width fits the
 *   viewport);
 * - a title of its own ("… · RSOLV") and the favicon;
 * - no console error or uncaught error (the `support.ts` fixture);
 * - a full-page screenshot, `end2end/screenshots/pages/<page>-<width>-<scheme>.png`.
 *
 * Public pages are visited signed out, portal pages as a new customer,
 * console pages as a new staff admin (password + TOTP), each signed in
 * once (`beforeAll`) and reused through its storage state. The gates
 * themselves are `support.ts` `checkGates`. Two pages exist only in a
 * state: `/admin/2fa` is gated during the admin's enrolment below, and
 * `/billing/authenticate` (a payment waiting for the bank) in `sca.spec.ts`.
 */
import { randomUUID } from "node:crypto";
import * as os from "node:os";
import * as path from "node:path";
import { type Browser, type Page } from "@playwright/test";
import {
  checkGates,
  checkTitleAndIcon,
  createAdmin,
  enrolTotp,
  seriousViolations,
  expect,
  logIn,
  newSignedInCustomer,
  randomEmail,
  test,
  waitForHydration,
  ADMIN_PASSWORD,
  ORIGIN,
  SCREENSHOTS,
  GATE_SCHEMES,
  GATE_WIDTHS,
} from "./support";

/** Visits `url`, checks its title and favicon, then every gate (`checkGates`). */
async function checkPage(page: Page, name: string, url: string): Promise<void> {
  const response = await page.goto(url);
  expect(response?.status(), `${url} answers`).toBeLessThan(400);
  await waitForHydration(page);
  await checkTitleAndIcon(page);
  await checkGates(page, name);
}

test("the favicon is served", async ({ request }) => {
  const response = await request.get(`${ORIGIN}/favicon.svg`);
  expect(response.status()).toBe(200);
  expect(response.headers()["content-type"]).toContain("image/svg+xml");
});

const PUBLIC_PAGES: [string, string][] = [
  ["home", "/"],
  ["login", "/login"],
  ["register", "/register"],
  ["forgot-password", "/forgot-password"],
  // The mailed-link pages, as a link opens them (the token is checked when
  // the form is sent).
  ["accept-invite", "/accept-invite?token=quality"],
  ["reset-password", "/reset-password?token=quality"],
  ["confirm-email", "/confirm-email?token=quality"],
  ["not-found", "/no-such-page"],
];

test.describe("public pages", () => {
  for (const [name, url] of PUBLIC_PAGES) {
    test(`${name}: accessible, fits, titled`, async ({ page }) => {
      if (name === "not-found") {
        const response = await page.goto(url);
        expect(response?.status()).toBe(404);
        await waitForHydration(page);
        expect(await page.title()).toMatch(/ · RSOLV$/);
        for (const width of GATE_WIDTHS) {
          await page.setViewportSize({ width, height: 900 });
          for (const colorScheme of GATE_SCHEMES) {
            await page.emulateMedia({ colorScheme });
            expect(await seriousViolations(page)).toEqual([]);
            await page.screenshot({ path: path.join(SCREENSHOTS, "pages", `${name}-${width}-${colorScheme}.png`), fullPage: true });
          }
        }
        return;
      }
      await checkPage(page, name, url);
    });
  }
});

/** Signs in once and keeps the session's storage state for the describe. */
async function storageState(browser: Browser, signIn: (page: Page) => Promise<void>): Promise<string> {
  const context = await browser.newContext({ baseURL: ORIGIN });
  const page = await context.newPage();
  await signIn(page);
  const file = path.join(os.tmpdir(), `rsolv-e2e-state-${randomUUID()}.json`);
  await context.storageState({ path: file });
  await context.close();
  return file;
}

test.describe("customer portal pages", () => {
  let state = "";
  test.beforeAll(async ({ browser }) => {
    state = await storageState(browser, async (page) => {
      await newSignedInCustomer(page, page.context().request, "quality");
    });
  });
  // The dashboard once ended about one load in ten in a hydration panic
  // (a nested resource raced its parent's); 20 loads in a row must be
  // clean (the fixture fails the test on any console or page error).
  test("dashboard: hydrates cleanly 20 times in a row", async ({ browser }) => {
    const context = await browser.newContext({ baseURL: ORIGIN, storageState: state });
    const page = await context.newPage();
    for (let i = 0; i < 20; i++) {
      await page.goto("/dashboard");
      await waitForHydration(page);
      await expect(page.getByTestId("credit-balance")).toBeVisible();
    }
    await context.close();
  });
  for (const [name, url] of [
    ["dashboard", "/dashboard"],
    ["credits", "/credits"],
    ["keys", "/keys"],
    ["billing", "/billing"],
    ["billing-history", "/billing/history"],
    ["ai-usage", "/ai-usage"],
    ["account", "/account"],
  ] as const) {
    test(`${name}: accessible, fits, titled`, async ({ browser }) => {
      const context = await browser.newContext({ baseURL: ORIGIN, storageState: state });
      const page = await context.newPage();
      await checkPage(page, name, url);
      await context.close();
    });
  }
});

test.describe("admin console pages", () => {
  let state = "";
  let customerId = "";
  test.beforeAll(async ({ browser }) => {
    const adminEmail = randomEmail("quality-admin");
    createAdmin(adminEmail);
    state = await storageState(browser, async (page) => {
      await page.goto("/login");
      await logIn(page, adminEmail, ADMIN_PASSWORD);
      // The enrolment page is only reachable in this state: gate it here.
      await expect(page).toHaveURL(/\/admin\/2fa$/);
      await waitForHydration(page);
      await checkTitleAndIcon(page);
      await checkGates(page, "admin-2fa");
      await page.setViewportSize({ width: 1280, height: 720 });
      await page.emulateMedia({ colorScheme: "light" });
      await enrolTotp(page);
      await expect(page).toHaveURL(/\/admin$/);
      // A customer for the customer page.
      const customer = await browser.newContext({ baseURL: ORIGIN });
      const email = await newSignedInCustomer(await customer.newPage(), customer.request, "quality-subject");
      await customer.close();
      await page.goto(`/admin?q=${encodeURIComponent(email)}`);
      const link = page.getByTestId("customer-row").getByRole("link", { name: email });
      customerId = ((await link.getAttribute("href")) ?? "").split("/").pop() ?? "";
    });
    expect(customerId).toMatch(/^\d+$/);
  });
  for (const [name, url] of [
    ["admin-customers", "/admin"],
    ["admin-customer", "/admin/customers/:id"],
    ["admin-portal", "/admin/customers/:id/portal"],
    ["admin-portal-billing", "/admin/customers/:id/portal/billing"],
    ["admin-portal-keys", "/admin/customers/:id/portal/keys"],
    ["admin-portal-credits", "/admin/customers/:id/portal/credits"],
    ["admin-signups", "/admin/signups"],
    ["admin-webhooks", "/admin/webhooks"],
    ["admin-jobs", "/admin/jobs"],
    ["admin-reconciliation", "/admin/reconciliation"],
    ["admin-emails", "/admin/emails"],
    ["admin-flags", "/admin/flags"],
    ["admin-audit", "/admin/audit"],
    ["admin-admins", "/admin/admins"],
  ] as const) {
    test(`${name}: accessible, fits, titled`, async ({ browser }) => {
      const context = await browser.newContext({ baseURL: ORIGIN, storageState: state });
      const page = await context.newPage();
      await checkPage(page, name, url.replace(":id", customerId));
      await context.close();
    });
  }
});
