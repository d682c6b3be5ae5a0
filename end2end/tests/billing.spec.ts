/**
 * Billing in the portal against localstripe: a new customer adds a card
 * through the fake Stripe.js (card element + SetupIntent, consent box),
 * subscribes to Pro, cancels at the period end and sees the billing
 * history; screenshots of /billing and of its payment methods, light and
 * dark.
 *
 * Needs the server started with Stripe pointing at a running localstripe:
 * STRIPE_API_BASE, STRIPE_SECRET_KEY (any sk_test_…),
 * STRIPE_PUBLISHABLE_KEY (any pk_test_…) and
 * STRIPE_JS_URL=<localstripe>/js.stripe.com/v3/ in the environment of
 * `npx playwright test` (the webServer inherits it); email as in
 * journeys.spec.ts (TEST_SMTP_API_URL).
 *
 * UI contract (src/app/portal/billing.rs): `card-form` (consent checkbox
 * labelled with the consent text, button "Save card"; localstripe's card
 * element renders inputs with placeholders number, exp_month, exp_year,
 * cvc, postal_code), `card-list` / `card-item` / `default-card`,
 * `billing-plan`, `subscription-status`, `subscribe-pro` (a link to the
 * `confirm-subscribe` panel: `confirm-subscribe-today`, `-card`, `-renews`,
 * button "Yes, subscribe and pay <price>"), links
 * "Cancel at period end" / "Cancel now" opening `confirm-cancel`,
 * `ends-at-period-end`, `billing-messages`.
 */
import * as path from "node:path";
import { expect, newSignedInCustomer, test, waitForHydration, SCREENSHOTS } from "./support";

test.skip(!process.env.STRIPE_API_BASE, "needs STRIPE_API_BASE pointing at localstripe");

test("add a card, subscribe to Pro, cancel at period end", async ({ page, request }) => {
  await newSignedInCustomer(page, request, "billing");

  // The Stripe Customer is made by a job right after signup: the card
  // form appears once it exists.
  await expect
    .poll(
      async () => {
        await page.goto("/billing");
        await waitForHydration(page);
        return page.getByTestId("card-form").count();
      },
      { timeout: 20_000 },
    )
    .toBe(1);
  await expect(page.getByTestId("cards-empty")).toBeVisible();
  await expect(page.getByTestId("subscribe-pro")).toBeDisabled();

  const form = page.getByTestId("card-form");
  const save = form.getByRole("button", { name: "Save card" });
  await expect(save).toBeEnabled(); // Stripe.js loaded and the card element mounted
  await form.getByPlaceholder("number").fill("4242424242424242");
  await form.getByPlaceholder("exp_month").fill("12");
  await form.getByPlaceholder("exp_year").fill("34");
  await form.getByPlaceholder("cvc").fill("123");
  await form.getByPlaceholder("postal_code").fill("42424");
  // Without consent: refused in place.
  await save.click();
  await expect(form.locator("[data-card-message]")).toContainText("tick the box");
  await form.getByLabel(/I authorise RSOLV/).check();
  await save.click();
  await expect(page).toHaveURL(/\/billing\?card_added=1$/);
  await waitForHydration(page);
  await expect(page.getByTestId("billing-messages")).toContainText("Card saved.");
  const card = page.getByTestId("card-item");
  await expect(card).toHaveCount(1);
  await expect(card).toContainText("4242");
  await expect(card.getByTestId("default-card")).toBeVisible();
  await expect(page.getByTestId("billing-plan")).toHaveText("Pay as you go");
  await expect(page.getByTestId("plan-section")).toContainText("10 credits left");

  for (const colorScheme of ["light", "dark"] as const) {
    await page.emulateMedia({ colorScheme });
    await page.getByTestId("payment-methods").screenshot({
      path: path.join(SCREENSHOTS, `payment-methods-${colorScheme}.png`),
    });
  }
  await page.emulateMedia({ colorScheme: "light" });

  // Nothing is charged on the first click: the confirmation names the
  // price, today's charge, the card and the renewal date.
  await page.getByTestId("subscribe-pro").click();
  const confirmSubscribe = page.getByTestId("confirm-subscribe");
  await expect(confirmSubscribe).toContainText("Subscribe to Pro for $599.00 a month?");
  await expect(page.getByTestId("confirm-subscribe-today")).toHaveText("$599.00");
  await expect(page.getByTestId("confirm-subscribe-card")).toContainText("4242");
  await expect(page.getByTestId("confirm-subscribe-renews")).toContainText(/on \d{1,2} [A-Z][a-z]+ \d{4}/);
  await expect(page.getByTestId("billing-plan")).not.toHaveText("Pro");
  await confirmSubscribe.getByRole("button", { name: "Yes, subscribe and pay $599.00" }).click();
  await expect(page.getByTestId("billing-messages")).toContainText("You are on Pro");
  await expect(page.getByTestId("billing-plan")).toHaveText("Pro");
  await expect(page.getByTestId("subscription-status")).toHaveText("Active");
  await expect(page.getByTestId("plan-section")).toContainText("70 credits left");

  await page.getByRole("link", { name: "Cancel at period end" }).click();
  const confirm = page.getByTestId("confirm-cancel");
  await expect(confirm).toContainText("Cancel Pro at the end of the period?");
  await confirm.getByRole("button", { name: "Yes, cancel at period end" }).click();
  await expect(page.getByTestId("billing-messages")).toContainText("ends at the end of the period");
  await expect(page.getByTestId("ends-at-period-end")).toBeVisible();
  await expect(page.getByRole("button", { name: "Resume subscription" })).toBeVisible();
  await expect(page.getByTestId("billing-plan")).toHaveText("Pro");

  for (const colorScheme of ["light", "dark"] as const) {
    await page.emulateMedia({ colorScheme });
    await page.goto("/billing");
    await waitForHydration(page);
    await expect(page.getByTestId("ends-at-period-end")).toBeVisible();
    await page.screenshot({ path: path.join(SCREENSHOTS, `billing-${colorScheme}.png`), fullPage: true });
  }

  await page.goto("/billing/history");
  await waitForHydration(page);
  await expect(page.getByTestId("invoices-row")).toHaveCount(1);
  await expect(page.getByTestId("invoices")).toContainText("$599.00");
});
