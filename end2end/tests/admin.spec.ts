/**
 * The admin console: a staff admin, created with the `create-admin`
 * subcommand (password on stdin), signs in, finds a customer by email,
 * adjusts their credits with a reason, and the customer's own dashboard
 * shows the new balance. Screenshots of the customer list, the customer
 * page and the webhook log in light and dark colour schemes go to
 * end2end/screenshots/admin-*-{light,dark}.png.
 *
 * UI contract (src/app/admin, src/app/auth/two_factor.rs):
 * - /admin/2fa (after the password): at the first sign-in `totp-secret`
 *   (base32), the `two-factor-form` with "Code" and "Verify"; then
 *   `recovery-codes` (10 `li`) and the `two-factor-continue` link;
 * - /admin: a search form (`customer-search`, field "Email, name, Stripe id
 *   or API-key prefix", button "Search"), rows `customer-row` linking the
 *   email to /admin/customers/<id>;
 * - /admin/customers/<id>: `admin-balance`, the `adjust-form` with
 *   "Amount (credits; negative removes)", "Reason …" and "Adjust credits";
 *   success shows the status "Credits adjusted.";
 * - the customer's /dashboard shows `credit-balance`.
 */
import { execFileSync } from "node:child_process";
import * as path from "node:path";
import { type Page } from "@playwright/test";
import {
  acceptInvite,
  createAdmin,
  enrolTotp,
  expect,
  PASSWORD,
  randomEmail,
  register,
  test,
  totpCode,
  waitForHydration,
  ADMIN_PASSWORD,
} from "./support";

const ORIGIN = `http://127.0.0.1:${process.env.E2E_PORT ?? "3000"}`;
const SCREENSHOTS = path.resolve(__dirname, "..", "screenshots");

async function logIn(page: Page, email: string, password: string): Promise<void> {
  await page.goto(`${ORIGIN}/login`);
  await waitForHydration(page);
  const form = page.getByTestId("login-form");
  await form.getByLabel("Email", { exact: true }).fill(email);
  await form.getByLabel("Password", { exact: true }).fill(password);
  await form.getByRole("button", { name: "Sign in" }).click();
}

/** Sends a signed Stripe event fixture with the `stripe-trigger` subcommand. */
function triggerStripeEvent(fixture: string): void {
  const bin = process.env.RSOLV_SERVER_BIN as string;
  const root = process.env.RSOLV_ROOT ?? path.resolve(__dirname, "..", "..");
  execFileSync(
    bin,
    [
      "stripe-trigger",
      path.join(root, "tests", "fixtures", "stripe", `${fixture}.json`),
      "--url",
      `${ORIGIN}/webhooks/stripe`,
      "--secret",
      "whsec_e2e_admin_console",
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
}

async function shoot(page: Page, name: string): Promise<void> {
  for (const colorScheme of ["light", "dark"] as const) {
    await page.emulateMedia({ colorScheme });
    await page.screenshot({ path: path.join(SCREENSHOTS, `${name}-${colorScheme}.png`), fullPage: true });
  }
  await page.emulateMedia({ colorScheme: "light" });
}

test("an admin finds a customer, adjusts credits, and the customer sees the new balance", async ({
  browser,
  request,
}) => {
  // The customer signs up, sets the password from the invite and signs in.
  const customerEmail = randomEmail("admin-target");
  const customer = await (await browser.newContext()).newPage();
  await register(customer, customerEmail, "Ada Admin-Target");
  await acceptInvite(customer, request, customerEmail);
  await logIn(customer, customerEmail, PASSWORD);
  await expect(customer).toHaveURL(/\/dashboard$/);
  const before = Number((await customer.getByTestId("credit-balance").textContent())?.trim());
  expect(before).toBeGreaterThan(0);

  // A customer session gets no admin page: it is sent to its dashboard.
  await customer.goto(`${ORIGIN}/admin`);
  await expect(customer).toHaveURL(/\/dashboard$/);

  // The admin, created through the CLI, signs in, enrols the TOTP second
  // factor at /admin/2fa, and lands on /admin.
  const adminEmail = randomEmail("staff");
  createAdmin(adminEmail);
  const admin = await (await browser.newContext()).newPage();
  await logIn(admin, adminEmail, ADMIN_PASSWORD);
  await enrolTotp(admin);
  await expect(admin).toHaveURL(/\/admin$/);
  await expect(admin.getByRole("heading", { name: "Customers" })).toBeVisible();
  await expect(admin.getByTestId("nav-admin")).toBeVisible();

  // Find the customer by email (a GET form: the URL carries the search).
  await waitForHydration(admin);
  await admin.getByLabel("Email, name, Stripe id or API-key prefix").fill(customerEmail);
  await admin.getByRole("button", { name: "Search" }).click();
  await expect(admin).toHaveURL(/\/admin\?q=/);
  const rows = admin.getByTestId("customer-row");
  await expect(rows).toHaveCount(1);
  await admin.goto(`${ORIGIN}/admin`);
  await expect(admin.getByTestId("customers-table")).toBeVisible();
  await shoot(admin, "admin-customers");
  await admin.goBack();
  await expect(admin.getByTestId("customer-row")).toHaveCount(1);
  await admin.getByRole("link", { name: customerEmail }).click();
  await expect(admin.getByTestId("customer-name")).toHaveText("Ada Admin-Target");
  await expect(admin.getByTestId("admin-balance")).toHaveText(String(before));

  // Adjust credits with a reason.
  await waitForHydration(admin);
  const adjust = admin.getByTestId("adjust-form");
  await adjust.getByLabel("Amount (credits; negative removes)").fill("7");
  await adjust.getByLabel(/^Reason/).fill("Goodwill after the outage");
  await adjust.getByRole("button", { name: "Adjust credits" }).click();
  await expect(admin.getByText("Credits adjusted.")).toBeVisible();
  await expect(admin.getByTestId("admin-balance")).toHaveText(String(before + 7));
  await expect(admin.getByTestId("ledger-table")).toContainText("Goodwill after the outage");
  await expect(admin.getByTestId("audit-table")).toContainText("credits.adjust");
  await shoot(admin, "admin-customer-detail");

  // Below zero is refused with a clear message.
  await adjust.getByLabel("Amount (credits; negative removes)").fill(String(-(before + 100)));
  await adjust.getByLabel(/^Reason/).fill("too much");
  await adjust.getByRole("button", { name: "Adjust credits" }).click();
  await expect(admin.getByRole("alert")).toContainText("below zero");
  await expect(admin.getByTestId("admin-balance")).toHaveText(String(before + 7));

  // The webhook log, with a few events signed and sent like Stripe would.
  for (const fixture of ["invoice.payment_failed", "customer.subscription.updated", "payment_method.attached"]) {
    triggerStripeEvent(fixture);
  }
  await admin.goto(`${ORIGIN}/admin/webhooks`);
  await expect(admin.getByRole("heading", { name: "Stripe webhook events" })).toBeVisible();
  await expect(admin.getByTestId("event-row")).toHaveCount(3);
  await shoot(admin, "admin-webhooks");

  // The customer's dashboard shows the new balance.
  await customer.goto(`${ORIGIN}/dashboard`);
  await expect(customer.getByTestId("credit-balance")).toHaveText(String(before + 7));
});
