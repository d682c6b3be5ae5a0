//! `/billing/authenticate?charge=<id>`: a card payment the customer's bank
//! asks them to confirm (3-D Secure / SCA). The page shows the amount and
//! what it pays for; its button runs the bank's check with Stripe.js
//! (`stripe.confirmCardPayment`) through `/billing-card.js`, the card
//! form's script ([`super::billing::load_card_script`]): the script asks
//! `portal/billing/authenticate/begin` for the client secret (owner only,
//! only while the payment waits), runs Stripe.js, then has
//! `portal/billing/authenticate/complete` re-read the payment from Stripe
//! and settle it, and reloads this page, which then says paid or failed
//! with the next step. The bank's check runs in the browser by nature: the
//! page says so without JavaScript and links to `/billing`.

use super::billing::load_card_script;
use super::billing_api::get_payment_authentication;
use super::{LoadError, Loading, PortalNav, BUTTON, CARD, LINK};
use crate::types::billing::PaymentAuthenticationView;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

/// The authentication page.
#[component]
pub fn PaymentAuthenticationPage() -> impl IntoView {
    let query = use_query_map();
    let charge = move || {
        query
            .read()
            .get("charge")
            .and_then(|c| c.trim().parse::<i64>().ok())
    };
    let data = Resource::new(charge, |charge| async move {
        match charge {
            Some(id) => get_payment_authentication(id).await.map(Some),
            None => Ok(None),
        }
    });
    view! {
        <Title text="Confirm a card payment · RSOLV" />
        <PortalNav current="/billing" />
        <div class="flex flex-wrap items-baseline justify-between gap-2">
            <h1 class="text-2xl font-bold tracking-tight">"Confirm a card payment"</h1>
            <a href="/billing" class=LINK>"Back to billing"</a>
        </div>
        <div class="mt-6">
            <Suspense fallback=|| view! { <Loading label="Loading the payment…" /> }>
                {move || Suspend::new(async move {
                    match data.await {
                        Ok(Some(view)) => view! { <Authentication view /> }.into_any(),
                        Ok(None) => view! {
                            <div class=CARD data-testid="authentication-missing">
                                <p>"This link does not name a payment. Open the link in our email again, or see your payments on the "
                                    <a href="/billing/history" class=LINK>"billing history"</a>"."</p>
                            </div>
                        }.into_any(),
                        Err(error) => view! { <LoadError error /> }.into_any(),
                    }
                })}
            </Suspense>
        </div>
    }
}

/// The payment and what can be done with it now.
#[component]
pub fn Authentication(view: PaymentAuthenticationView) -> impl IntoView {
    let summary = view! {
        <dl class="space-y-1 text-sm">
            <div class="flex gap-2"><dt class="text-slate-600 dark:text-slate-400">"Amount:"</dt>
                <dd class="font-semibold" data-testid="authentication-amount">{view.amount.clone()}</dd></div>
            <div class="flex flex-wrap gap-x-2"><dt class="text-slate-600 dark:text-slate-400">"For:"</dt>
                <dd data-testid="authentication-description">{view.description.clone()}</dd></div>
        </dl>
    };
    let body = match view.status.as_str() {
        "requires_action" if view.billing_enabled => {
            Effect::new(move |_| load_card_script());
            view! {
                <p class="mt-4">"Your bank asks you to confirm this payment (3-D Secure). The fix is recorded and nothing is lost; once you confirm, the card is charged and we email a receipt."</p>
                <noscript>
                    <p class="mt-3 rounded-md border border-amber-300 bg-amber-50 px-4 py-3 text-amber-950 dark:border-amber-700 dark:bg-amber-950 dark:text-amber-100" data-testid="authentication-needs-javascript">
                        "Your bank's check runs in this page through Stripe, so it needs JavaScript. Turn JavaScript on and reload this page, or add another card on the "
                        <a href="/billing" class=LINK>"Billing page"</a>"."
                    </p>
                </noscript>
                <div
                    class="mt-4"
                    data-authenticate-payment=""
                    data-testid="authentication-form"
                    data-charge=view.charge_id.to_string()
                    data-stripe-js=view.stripe_js_url.clone()
                    data-publishable-key=view.publishable_key.clone()
                >
                    <button type="button" class=BUTTON disabled=true data-testid="authenticate-payment">
                        {format!("Confirm the {} payment", view.amount)}
                    </button>
                    <p class="mt-2 min-h-5" aria-live="polite" data-authenticate-message="" data-testid="authentication-message"></p>
                </div>
            }
            .into_any()
        }
        "requires_action" => view! {
            <p role="status" class="mt-4" data-testid="authentication-paused">
                "Billing is paused at the moment, so the payment cannot be confirmed now. Please come back later: the link stays valid."
            </p>
        }
        .into_any(),
        "succeeded" => view! {
            <p role="status" class="mt-4 rounded-md border border-emerald-200 bg-emerald-50 px-4 py-3 text-emerald-900 dark:border-emerald-900 dark:bg-emerald-950 dark:text-emerald-100" data-testid="authentication-paid">
                "Paid. Thank you: the fix is paid and a receipt is on its way. "
                <a href="/billing/history" class=LINK>"See your billing history"</a>
            </p>
        }
        .into_any(),
        "failed" => view! {
            <div role="alert" class="mt-4 rounded-md border border-red-300 bg-red-50 px-4 py-3 text-red-900 dark:border-red-900 dark:bg-red-950 dark:text-red-100" data-testid="authentication-failed">
                <p class="font-semibold">"The payment failed: the card was not charged."</p>
                {view.failure.clone().map(|f| view! { <p class="mt-1" data-testid="authentication-failure">{capitalised(&f)}</p> })}
                <p class="mt-1">"Add another card on the Billing page: the fix is charged to it, and fixes beyond your credits resume."</p>
                <p class="mt-3"><a href="/billing" class=BUTTON data-testid="authentication-add-card">"Add another card"</a></p>
            </div>
        }
        .into_any(),
        "pending" => view! {
            <p role="status" class="mt-4" data-testid="authentication-processing">
                "This payment is being processed: nothing to confirm. "
                <a href="/billing/history" class=LINK>"See your billing history"</a>
            </p>
        }
        .into_any(),
        other => view! {
            <p role="status" class="mt-4" data-testid="authentication-done">
                {format!("Nothing to confirm: this payment is {}. ", other.replace('_', " "))}
                <a href="/billing/history" class=LINK>"See your billing history"</a>
            </p>
        }
        .into_any(),
    };
    view! {
        <section class=CARD aria-labelledby="authentication-heading" data-testid="authentication" data-status=view.status.clone()>
            <h2 id="authentication-heading" class="text-lg font-semibold">"Card payment"</h2>
            <div class="mt-3">{summary}</div>
            {body}
        </section>
    }
}

/// `text` with its first letter in upper case (our advice starts lower
/// case: it follows "Your card was declined: " in emails).
fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Each state of the page rendered on the server.
#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::*;

    fn view(status: &str) -> PaymentAuthenticationView {
        PaymentAuthenticationView {
            charge_id: 42,
            amount: "$29.00".into(),
            description: "RSOLV fix 7 (pay as you go) · acme/api issue #3 (PR #1003)".into(),
            status: status.into(),
            failure: (status == "failed").then(|| "the bank's check was not completed.".into()),
            billing_enabled: true,
            stripe_js_url: "https://js.stripe.com/v3/".into(),
            publishable_key: "pk_test_x".into(),
        }
    }

    fn render(view: PaymentAuthenticationView) -> String {
        Owner::new().with(|| view! { <Authentication view /> }.to_html())
    }

    #[test]
    fn a_waiting_payment_offers_the_banks_check_and_explains_without_javascript() {
        let html = render(view("requires_action"));
        assert!(
            html.contains("$29.00") && html.contains("RSOLV fix 7"),
            "{html}"
        );
        assert!(
            html.contains(r#"data-testid="authenticate-payment""#),
            "{html}"
        );
        assert!(html.contains(r#"data-charge="42""#), "{html}");
        assert!(html.contains("needs JavaScript"), "{html}");
        assert!(html.contains(r#"href="/billing""#), "{html}");
        assert!(!html.contains("secret"), "no secret in the page: {html}");
    }

    #[test]
    fn paid_and_failed_say_so_with_the_next_step() {
        let paid = render(view("succeeded"));
        assert!(
            paid.contains(r#"data-testid="authentication-paid""#),
            "{paid}"
        );
        assert!(!paid.contains("authenticate-payment"));
        let failed = render(view("failed"));
        assert!(
            failed.contains(r#"data-testid="authentication-failed""#),
            "{failed}"
        );
        assert!(failed.contains("Add another card"), "{failed}");
        assert!(!failed.contains("authenticate-payment"));
        let paused = render(PaymentAuthenticationView {
            billing_enabled: false,
            ..view("requires_action")
        });
        assert!(paused.contains("Billing is paused"), "{paused}");
        assert!(!paused.contains("authenticate-payment"));
    }
}
