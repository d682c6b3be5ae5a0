//! The billing pages' server functions (under `/api/portal/billing/…`).
//! Like every portal function, each authenticates on its own
//! (`require_user()`) and acts only on the signed-in user's customer; a
//! card id of another customer reads as not found.
//!
//! Errors (all): [`AppError::Unauthorized`] without a session,
//! [`AppError::Validation`] for what the customer can fix (no consent, a
//! declined card, already subscribed, billing paused, …),
//! [`AppError::NotFound`], [`AppError::Internal`] (cause logged; also when
//! Stripe is unreachable).

use crate::types::billing::{
    BillingHistoryView, BillingView, CardView, PaymentAuthenticationResult,
    PaymentAuthenticationSecret, PaymentAuthenticationView, SetupIntentView,
};
use crate::types::AppError;
use leptos::prelude::*;

/// The billing page: plan, subscription, cards, prices, kill switch.
#[server(endpoint = "portal/billing")]
pub async fn get_billing() -> Result<BillingView, AppError> {
    let (user, mut conn) = super::api::ssr::session().await?;
    ssr::billing_view(&mut conn, user.customer_id).await
}

/// Creates a SetupIntent for the card form; its client secret goes to
/// Stripe.js.
#[server(endpoint = "portal/billing/setup-intent")]
pub async fn create_setup_intent() -> Result<SetupIntentView, AppError> {
    use crate::server::billing::payment_methods::begin_card_setup;
    let (user, mut conn) = super::api::ssr::session().await?;
    let processor = ssr::processor()?;
    let intent = begin_card_setup(processor.as_ref(), &mut conn, user.customer_id)
        .await
        .map_err(super::api::ssr::fail)?;
    Ok(SetupIntentView {
        setup_intent_id: intent.id,
        client_secret: intent.client_secret.unwrap_or_default(),
    })
}

/// Records the card confirmed by Stripe.js for SetupIntent
/// `setup_intent_id`; `consent` must be `on` (the ticked checkbox). The
/// consent text, time and client IP are stored; a first card grants the
/// billing bonus once.
#[server(endpoint = "portal/billing/cards/add")]
pub async fn add_card(
    setup_intent_id: String,
    consent: Option<String>,
) -> Result<CardView, AppError> {
    use crate::server::billing::payment_methods::{add_card, Consent};
    let (user, mut conn) = super::api::ssr::session().await?;
    let state = super::api::ssr::state()?;
    let processor = ssr::processor()?;
    let user_agent = use_context::<axum::http::request::Parts>().and_then(|p| {
        p.headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(300).collect::<String>())
    });
    let consent = Consent {
        given: consent.as_deref() == Some("on") || consent.as_deref() == Some("true"),
        user_id: Some(user.user_id),
        ip: crate::server::auth::client_ip().map(|ip| ip.to_string()),
        user_agent,
    };
    let card = add_card(
        processor.as_ref(),
        &mut conn,
        &state.config.pricing,
        user.customer_id,
        setup_intent_id.trim(),
        &consent,
    )
    .await
    .map_err(super::api::ssr::fail)?;
    tracing::info!(customer_id = user.customer_id, "card added");
    Ok(ssr::card_view(card, true))
}

/// Makes one of the customer's cards the default.
#[server(endpoint = "portal/billing/cards/default")]
pub async fn set_default_card(payment_method_id: String) -> Result<(), AppError> {
    use crate::server::billing::payment_methods::set_default_card;
    let (user, mut conn) = super::api::ssr::session().await?;
    let processor = ssr::processor()?;
    set_default_card(
        processor.as_ref(),
        &mut conn,
        user.customer_id,
        &payment_method_id,
    )
    .await
    .map_err(super::api::ssr::fail)
}

/// Removes one of the customer's cards (not the last one while a
/// subscription needs it).
#[server(endpoint = "portal/billing/cards/remove")]
pub async fn remove_card(payment_method_id: String) -> Result<(), AppError> {
    use crate::server::billing::payment_methods::remove_card;
    let (user, mut conn) = super::api::ssr::session().await?;
    let state = super::api::ssr::state()?;
    let processor = ssr::processor()?;
    remove_card(
        processor.as_ref(),
        &mut conn,
        &state.config.pricing,
        user.customer_id,
        &payment_method_id,
    )
    .await
    .map_err(super::api::ssr::fail)
}

/// Subscribes to Pro with the default card; returns a message.
#[server(endpoint = "portal/billing/subscribe")]
pub async fn subscribe_pro() -> Result<String, AppError> {
    use crate::server::billing::subscriptions::subscribe_pro;
    let (user, mut conn) = super::api::ssr::session().await?;
    let state = super::api::ssr::state()?;
    let processor = ssr::processor()?;
    let sub = subscribe_pro(
        processor.as_ref(),
        &state.config.stripe.pro_price_id,
        &mut conn,
        &state.config.pricing,
        user.customer_id,
    )
    .await
    .map_err(super::api::ssr::fail)?;
    let message = if sub.status == crate::types::values::SubscriptionStatus::Active {
        "You are on Pro. This period's credits are on your balance.".to_owned()
    } else {
        format!(
            "Your subscription is {}.",
            sub.status.as_str().replace('_', " ")
        )
    };
    ssr::notice_for_plain_form(&message);
    Ok(message)
}

/// Cancels the subscription: `when` is `now` (the plan ends at once) or
/// `period_end` (it runs to the end of the period; resumable until then).
#[server(endpoint = "portal/billing/cancel")]
pub async fn cancel_subscription(when: String) -> Result<String, AppError> {
    use crate::server::billing::subscriptions::cancel;
    let (user, mut conn) = super::api::ssr::session().await?;
    let at_period_end = match when.as_str() {
        "now" => false,
        "period_end" => true,
        _ => {
            return Err(super::api::ssr::fail_app(AppError::Validation(
                "choose now or period_end".into(),
            )))
        }
    };
    let processor = ssr::processor()?;
    let pricing = super::api::ssr::state()?.config.pricing.clone();
    cancel(
        processor.as_ref(),
        &mut conn,
        &pricing,
        user.customer_id,
        at_period_end,
    )
    .await
    .map_err(super::api::ssr::fail)?;
    let message = if at_period_end {
        "Your subscription ends at the end of the period. You can resume it until then."
    } else {
        "Your subscription has ended."
    };
    ssr::notice_for_plain_form(message);
    Ok(message.to_owned())
}

/// Resumes a subscription set to end at the period end.
#[server(endpoint = "portal/billing/resume")]
pub async fn resume_subscription() -> Result<String, AppError> {
    use crate::server::billing::subscriptions::resume;
    let (user, mut conn) = super::api::ssr::session().await?;
    let processor = ssr::processor()?;
    let pricing = super::api::ssr::state()?.config.pricing.clone();
    resume(processor.as_ref(), &mut conn, &pricing, user.customer_id)
        .await
        .map_err(super::api::ssr::fail)?;
    let message = "Your subscription continues.";
    ssr::notice_for_plain_form(message);
    Ok(message.to_owned())
}

/// Billing history: Stripe invoices (with their links where Stripe gives
/// one) and our charges for fixes.
#[server(endpoint = "portal/billing/history")]
pub async fn get_billing_history() -> Result<BillingHistoryView, AppError> {
    let (user, mut conn) = super::api::ssr::session().await?;
    ssr::history_view(&mut conn, user.customer_id).await
}

/// The authentication page's data for the signed-in customer's charge
/// `charge` (no secret). Another customer's charge is not found, as a
/// missing one is.
#[server(endpoint = "portal/billing/authenticate")]
pub async fn get_payment_authentication(
    charge: i64,
) -> Result<PaymentAuthenticationView, AppError> {
    let (user, mut conn) = super::api::ssr::session().await?;
    ssr::authentication_view(&mut conn, user.customer_id, charge).await
}

/// The client secret (and card) Stripe.js needs to run the bank's check
/// for charge `charge`: only for the charge's owner (anyone else: not
/// found) and only while it waits for authentication (else a conflict that
/// says so; news from the processor is applied first).
#[server(endpoint = "portal/billing/authenticate/begin")]
pub async fn begin_payment_authentication(
    charge: i64,
) -> Result<PaymentAuthenticationSecret, AppError> {
    use crate::server::billing::authentication::{begin_authentication, AuthenticationStart};
    let (user, mut conn) = super::api::ssr::session().await?;
    let state = super::api::ssr::state()?;
    let processor = ssr::processor()?;
    let start = begin_authentication(
        &mut conn,
        processor.as_ref(),
        &state.config.pricing,
        &state.config.email.links,
        user.customer_id,
        charge,
    )
    .await
    .map_err(super::api::ssr::fail)?;
    match start {
        AuthenticationStart::Ready(auth) => Ok(PaymentAuthenticationSecret {
            client_secret: auth.client_secret,
            payment_method: auth.payment_method,
        }),
        AuthenticationStart::NoLongerNeeded(status) => {
            Err(super::api::ssr::fail_app(AppError::Conflict(format!(
                "this payment no longer needs your confirmation: {}",
                ssr::authentication_message(status)
            ))))
        }
    }
}

/// After Stripe.js answered: re-reads the charge's payment from Stripe and
/// settles it (paid: the fix is charged and a receipt mailed; failed: add
/// another card), idempotently with the webhook. Only the owner.
#[server(endpoint = "portal/billing/authenticate/complete")]
pub async fn complete_payment_authentication(
    charge: i64,
) -> Result<PaymentAuthenticationResult, AppError> {
    use crate::server::billing::authentication::complete_authentication;
    let (user, mut conn) = super::api::ssr::session().await?;
    let state = super::api::ssr::state()?;
    let processor = ssr::processor()?;
    let status = complete_authentication(
        &mut conn,
        processor.as_ref(),
        &state.config.pricing,
        &state.config.email.links,
        user.customer_id,
        charge,
    )
    .await
    .map_err(super::api::ssr::fail)?;
    tracing::info!(customer_id = user.customer_id, charge_id = charge, %status, "payment authentication completed");
    Ok(PaymentAuthenticationResult {
        status: status.as_str().to_owned(),
        message: ssr::authentication_message(status).to_owned(),
    })
}

/// Server-side helpers.
#[cfg(feature = "ssr")]
pub(crate) mod ssr {
    use super::super::api::ssr::{fail, fail_app, state};
    use crate::app::server_errors::iso_utc;
    use crate::server::billing::charges::{list_charges, ChargeKind};
    use crate::server::billing::customers::find_customer;
    use crate::server::billing::fixes::list_unpaid_fixes;
    use crate::server::billing::payment_methods::{list_cards, CardRow, CONSENT_TEXT};
    use crate::server::billing::pricing::format_money;
    use crate::server::billing::subscriptions::ends_at_period_end;
    use crate::types::billing::{
        BillingHistoryView, BillingNoticeView, BillingView, CardView, HistoryItemView,
        UnpaidFixView,
    };
    use crate::types::AppError;
    use diesel_async::AsyncPgConnection;

    /// The payment processor, after the kill-switch check.
    pub fn processor(
    ) -> Result<std::sync::Arc<dyn crate::server::billing::ports::PaymentProcessor>, AppError> {
        let state = state()?;
        if !state.config.stripe.can_call_stripe() {
            tracing::warn!("billing call while Stripe is off");
            return Err(fail_app(AppError::Validation(
                "billing is paused at the moment: fixes are recorded and billed later".into(),
            )));
        }
        Ok(state.processor.clone())
    }

    fn brand(raw: Option<&str>) -> String {
        let raw = raw.unwrap_or("card");
        let mut chars = raw.chars();
        match chars.next() {
            Some(first) => first.to_uppercase().chain(chars).collect(),
            None => "Card".into(),
        }
    }

    /// A card for the page.
    /// When a monthly subscription started on `today` renews: one month
    /// on, on the month's last day when it has no such day (as Stripe's
    /// anniversary billing does), written like `1 January 2027`.
    pub fn renews_on(today: chrono::NaiveDate) -> String {
        today
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(today)
            .format("%-d %B %Y")
            .to_string()
    }

    pub fn card_view(card: CardRow, is_default: bool) -> CardView {
        CardView {
            brand: brand(card.brand.as_deref()),
            last4: card.last4.unwrap_or_else(|| "????".into()),
            expiry: match (card.exp_month, card.exp_year) {
                (Some(m), Some(y)) => format!("{m:02}/{y}"),
                _ => String::new(),
            },
            is_default,
            id: card.id,
        }
    }

    /// For a plain form post (a browser without JavaScript: `Accept`
    /// names `text/html`), sends it to `/billing?notice=<message>`, so the
    /// page it lands on says what happened; the hydrated page's fetch gets
    /// the message as the answer instead (and reloads with it).
    pub fn notice_for_plain_form(message: &str) {
        use axum::http::header::ACCEPT;
        let plain_form =
            leptos::prelude::use_context::<axum::http::request::Parts>().is_some_and(|parts| {
                parts
                    .headers
                    .get(ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("text/html"))
            });
        if plain_form {
            leptos_axum::redirect(&format!(
                "/billing?notice={}",
                crate::app::auth::api::encode_query_value(message)
            ));
        }
    }

    /// What the customer is told about a charge after the bank's check.
    pub fn authentication_message(
        status: crate::server::billing::charges::ChargeStatus,
    ) -> &'static str {
        use crate::server::billing::charges::ChargeStatus as S;
        match status {
            S::Succeeded => "the payment is done. Thank you: the fix is paid and a receipt is on its way.",
            S::Failed => "the payment failed and the card was not charged. Please add another card on the Billing page: the fix is charged to it.",
            S::RequiresAction => "your bank still waits for your confirmation. Please try again.",
            S::Pending => "the payment is being processed.",
            S::Invoiced => "the amount is on your next invoice.",
            S::Refunded => "the payment was refunded.",
        }
    }

    /// The payments waiting for the customer's authentication, for notices.
    pub async fn authentication_needed(
        conn: &mut AsyncPgConnection,
        customer_id: i64,
    ) -> Result<Vec<crate::types::billing::PaymentToAuthenticate>, AppError> {
        Ok(
            crate::server::billing::charges::charges_awaiting_customer(conn, customer_id)
                .await
                .map_err(fail)?
                .into_iter()
                .map(|c| crate::types::billing::PaymentToAuthenticate {
                    charge_id: c.id,
                    amount: format_money(c.amount_cents, &c.currency),
                })
                .collect(),
        )
    }

    /// The authentication page's data (no secret).
    pub async fn authentication_view(
        conn: &mut AsyncPgConnection,
        customer_id: i64,
        charge_id: i64,
    ) -> Result<crate::types::billing::PaymentAuthenticationView, AppError> {
        use crate::server::billing::authentication::customer_charge;
        use crate::server::billing::charges::charge_description;
        let state = state()?;
        let stripe = &state.config.stripe;
        let (charge, fix) = customer_charge(conn, customer_id, charge_id)
            .await
            .map_err(fail)?;
        Ok(crate::types::billing::PaymentAuthenticationView {
            charge_id: charge.id,
            amount: format_money(charge.amount_cents, &charge.currency),
            description: format!("{} · {}", charge_description(&charge), fix_label(&fix)),
            status: charge.status.as_str().to_owned(),
            failure: charge.failure_message.clone(),
            billing_enabled: stripe.can_call_stripe(),
            stripe_js_url: stripe.js_url.clone(),
            publishable_key: stripe.publishable_key.clone().unwrap_or_default(),
        })
    }

    /// Customer `customer_id`'s billing page, as the portal shows it to
    /// the customer and the admin console shows it read-only.
    ///
    /// Errors: [`AppError::NotFound`] for an unknown customer;
    /// [`AppError::Internal`] (cause logged).
    pub async fn billing_view(
        conn: &mut AsyncPgConnection,
        customer_id: i64,
    ) -> Result<BillingView, AppError> {
        let state = state()?;
        let stripe = &state.config.stripe;
        let pricing = &state.config.pricing;
        let customer = find_customer(conn, customer_id).await.map_err(fail)?;
        let (cards, default) = list_cards(conn, customer_id).await.map_err(fail)?;
        let ending = ends_at_period_end(conn, customer_id).await.map_err(fail)?;
        Ok(BillingView {
            billing_enabled: stripe.can_call_stripe(),
            can_add_cards: stripe.can_call_stripe()
                && stripe.publishable_key.is_some()
                && customer.stripe_customer_id.is_some(),
            stripe_js_url: stripe.js_url.clone(),
            publishable_key: stripe.publishable_key.clone().unwrap_or_default(),
            consent_text: CONSENT_TEXT.to_owned(),
            plan: customer.plan.as_str().to_owned(),
            subscription_status: customer.subscription_status.map(|s| s.as_str().to_owned()),
            cancel_at_period_end: ending,
            current_period_end: customer.current_period_end.map(iso_utc),
            payment_failed: customer.payment_failed_at.is_some(),
            cards: cards
                .into_iter()
                .map(|c| {
                    let is_default = default.as_deref() == Some(c.id.as_str());
                    card_view(c, is_default)
                })
                .collect(),
            pro_price: format_money(pricing.pro_monthly_cents, &pricing.currency),
            pro_credits: pricing.pro_credits_per_period,
            pro_renews_on: renews_on(chrono::Utc::now().date_naive()),
            overage_price: format_money(pricing.pro_overage_cents, &pricing.currency),
            payg_price: format_money(pricing.payg_fix_cents, &pricing.currency),
            credit_balance: customer.credit_balance,
            credit_policy: pricing.credit_policy(),
            can_use_service: customer.can_use_service(),
            suspended: customer.status() == crate::types::values::CustomerStatus::Suspended,
            unpaid_fixes: crate::server::billing::fixes::count_fixes(conn, customer_id)
                .await
                .map_err(fail)?
                .1,
            support_email: state.config.email.support.clone(),
            authentication_needed: authentication_needed(conn, customer_id).await?,
        })
    }

    /// Customer `customer_id`'s billing history (invoices read from the
    /// payment processor, charges, unpaid fixes), for the portal and the
    /// admin console.
    ///
    /// Errors: [`AppError::NotFound`]; [`AppError::Internal`] (cause
    /// logged; an unreachable processor is a note instead).
    pub async fn history_view(
        conn: &mut AsyncPgConnection,
        customer_id: i64,
    ) -> Result<BillingHistoryView, AppError> {
        let state = state()?;
        let customer = find_customer(conn, customer_id).await.map_err(fail)?;
        let billing_enabled = state.config.stripe.can_call_stripe();
        let (invoices, invoices_note) = match (
            billing_enabled,
            customer.stripe_customer_id.as_deref(),
        ) {
            (false, _) => (
                Vec::new(),
                Some("Billing is paused: invoices cannot be shown right now.".to_owned()),
            ),
            (true, None) => (Vec::new(), None),
            (true, Some(cus)) => match state.processor.list_invoices(cus, 50).await {
                Ok(list) => (
                    list.into_iter()
                        .map(|i| HistoryItemView {
                            description: match &i.number {
                                Some(n) => format!("Invoice {n}"),
                                None => "Invoice".to_owned(),
                            },
                            amount: format_money(
                                if i.paid {
                                    i.amount_paid_cents
                                } else {
                                    i.amount_due_cents
                                },
                                &i.currency,
                            ),
                            status: i.status.clone().unwrap_or_else(|| "open".into()),
                            date: i.created.map(iso_utc).unwrap_or_default(),
                            url: i.hosted_url.clone(),
                            failure: None,
                        })
                        .collect(),
                    None,
                ),
                Err(error) => {
                    tracing::warn!(%error, customer_id, "invoices unavailable");
                    (
                        Vec::new(),
                        Some("Invoices cannot be read from Stripe right now; please try again later.".to_owned()),
                    )
                }
            },
        };
        let charges = list_charges(conn, customer_id, 100)
            .await
            .map_err(fail)?
            .into_iter()
            .map(|c| HistoryItemView {
                description: if c.kind == ChargeKind::Overage {
                    format!(
                        "Fix beyond the plan's credits (fix #{}), on the next invoice",
                        c.fix_id
                    )
                } else {
                    format!("Fix #{} charged to your card", c.fix_id)
                },
                amount: format_money(c.amount_cents, &c.currency),
                status: c.status.to_string(),
                date: iso_utc(c.created_at),
                url: None,
                failure: c.failure_message.clone(),
            })
            .collect();
        // Fixes whose card payment waits for the customer's bank check:
        // their page is the way to pay now.
        let awaiting: std::collections::HashMap<i64, i64> =
            crate::server::billing::charges::charges_awaiting_customer(conn, customer_id)
                .await
                .map_err(fail)?
                .into_iter()
                .map(|c| (c.fix_id, c.id))
                .collect();
        let unpaid_fixes = list_unpaid_fixes(conn, customer_id, 100)
            .await
            .map_err(fail)?
            .into_iter()
            .map(|(fix, charging)| UnpaidFixView {
                id: fix.id,
                label: fix_label(&fix),
                date: iso_utc(fix.created_at),
                next: match awaiting.get(&fix.id) {
                    Some(_) => "Your bank asks you to confirm the card payment; the fix is paid once you do.",
                    None => unpaid_next_step(&customer, charging, billing_enabled),
                }
                .to_owned(),
                authenticate_charge: awaiting.get(&fix.id).copied(),
            })
            .collect();
        Ok(BillingHistoryView {
            billing_enabled,
            invoices,
            invoices_note,
            charges,
            unpaid_fixes,
        })
    }

    /// `acme/api issue #17 (PR #42)`, `acme/api PR #42`.
    fn fix_label(fix: &crate::server::billing::fixes::Fix) -> String {
        match (fix.issue_number, fix.pr_number) {
            (Some(i), Some(p)) => format!("{} issue #{i} (PR #{p})", fix.repository),
            (Some(i), None) => format!("{} issue #{i}", fix.repository),
            (None, Some(p)) => format!("{} PR #{p}", fix.repository),
            (None, None) => fix.repository.clone(),
        }
    }

    /// What happens next to an unpaid fix, for the customer (the rules of
    /// [`crate::server::billing::fixes::settle_unpaid_fixes`]).
    fn unpaid_next_step(
        customer: &crate::server::billing::customers::Customer,
        charging: bool,
        billing_enabled: bool,
    ) -> &'static str {
        if charging && !billing_enabled {
            "A charge is recorded and made when billing resumes."
        } else if charging {
            "A card charge is being made."
        } else if customer.payment_failed_at.is_some() {
            "Your card was declined: billed when you add a working card, or with a credit when credits arrive."
        } else {
            "Billed with a credit when credits arrive, or charged when you add a card or subscribe to Pro."
        }
    }

    /// The dashboard notice's data.
    pub async fn notice_view(
        conn: &mut AsyncPgConnection,
        customer_id: i64,
    ) -> Result<BillingNoticeView, AppError> {
        let state = state()?;
        let customer = find_customer(conn, customer_id).await.map_err(fail)?;
        let charges_pending =
            crate::server::billing::charges::count_charges_in_progress(conn, customer_id)
                .await
                .map_err(fail)?;
        Ok(BillingNoticeView {
            billing_enabled: state.config.stripe.can_call_stripe(),
            past_due: customer.subscription_status
                == Some(crate::types::values::SubscriptionStatus::PastDue),
            payment_failed: customer.payment_failed_at.is_some(),
            charges_pending,
            authentication_needed: authentication_needed(conn, customer_id).await?,
        })
    }
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::ssr::renews_on;
    use chrono::NaiveDate;

    #[test]
    fn pro_renews_a_month_on_or_on_the_last_day_of_a_shorter_month() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(renews_on(day(2026, 12, 1)), "1 January 2027");
        assert_eq!(renews_on(day(2027, 1, 31)), "28 February 2027");
        assert_eq!(renews_on(day(2028, 1, 30)), "29 February 2028");
        assert_eq!(renews_on(day(2026, 5, 15)), "15 June 2026");
    }
}
