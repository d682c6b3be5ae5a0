//! A card payment the customer's bank wants them to authenticate
//! (3-D Secure / SCA, issue 14): completing it on-session.
//!
//! An off-session charge the bank did not let through without the
//! customer is `requires_action` ([`settle_requires_action`], with its
//! email). The customer opens `/billing/authenticate?charge=<id>`; the
//! page asks [`begin_authentication`] for the PaymentIntent's client secret
//! (only the charge's owner, only while it waits), Stripe.js runs the
//! bank's check in the browser, and [`complete_authentication`] re-reads the
//! PaymentIntent from the processor and settles the charge through the
//! same domain paths as the charge job and the webhooks: paid →
//! [`settle_paid_intent`] (ledger, fix `charged`, receipt: once, whichever
//! of the page and `payment_intent.succeeded` comes first); failed →
//! [`settle_failed`] (a decline: the customer is told to add another card);
//! still waiting → unchanged.
//!
//! Another customer's charge reads exactly like a missing one
//! ([`BillingError::NotFound`]). The client secret is handed to the
//! owner's browser only; it is never stored, logged, emailed or put in a
//! URL.
//!
//! [`settle_requires_action`]: crate::server::billing::charges::settle_requires_action

use crate::server::billing::charges::{
    settle_failed, settle_paid_intent, Charge, ChargeKind, ChargeStatus, PaidIntent,
};
use crate::server::billing::error::processor_error;
use crate::server::billing::fixes::Fix;
use crate::server::billing::notifications::EmailLinks;
use crate::server::billing::ports::{
    ChargeAuthentication, PaymentProcessor, ProcessorCharge, ProcessorChargeStatus,
};
use crate::server::billing::pricing::PricingCatalog;
use crate::server::billing::BillingError;
use crate::server::db::schema::{charges, customers, fixes};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

/// Customer `customer_id`'s charge `charge_id` and the fix it pays for.
///
/// Errors: [`BillingError::NotFound`] for a missing charge and for another
/// customer's (the same answer); [`BillingError::Database`].
pub async fn customer_charge(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    charge_id: i64,
) -> Result<(Charge, Fix), BillingError> {
    charges::table
        .inner_join(fixes::table)
        .filter(charges::id.eq(charge_id))
        .filter(charges::customer_id.eq(customer_id))
        .select((Charge::as_select(), Fix::as_select()))
        .first(conn)
        .await
        .optional()?
        .ok_or(BillingError::NotFound("charge"))
}

/// What [`begin_authentication`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthenticationStart {
    /// The payment waits for the customer: what Stripe.js needs (the
    /// client secret, for the owner's browser only).
    Ready(Box<ChargeAuthentication>),
    /// Nothing to authenticate (any more): the charge's status now (paid,
    /// failed, …; the processor's news, if any, was just applied).
    NoLongerNeeded(ChargeStatus),
}

/// Gives the owner's browser what it needs to authenticate charge
/// `charge_id`, only while the charge is `requires_action`. When the
/// processor says the payment no longer waits (paid or failed meanwhile,
/// e.g. a webhook not applied yet), that is applied first
/// ([`apply_processor_charge`]) and [`AuthenticationStart::NoLongerNeeded`]
/// is answered. The processor is called outside any transaction.
///
/// Errors: [`BillingError::NotFound`] (missing or another customer's
/// charge); [`BillingError::Invalid`] with words for the customer when the
/// processor cannot be asked (see `error::processor_error`);
/// [`BillingError::Database`].
pub async fn begin_authentication(
    conn: &mut AsyncPgConnection,
    processor: &dyn PaymentProcessor,
    pricing: &PricingCatalog,
    links: &EmailLinks,
    customer_id: i64,
    charge_id: i64,
) -> Result<AuthenticationStart, BillingError> {
    let (charge, _) = customer_charge(conn, customer_id, charge_id).await?;
    let Some(payment_intent) = waiting_intent(&charge) else {
        return Ok(AuthenticationStart::NoLongerNeeded(charge.status));
    };
    let authentication = processor
        .charge_authentication(&payment_intent)
        .await
        .map_err(processor_error)?;
    if authentication.charge.status == ProcessorChargeStatus::RequiresAction {
        return Ok(AuthenticationStart::Ready(Box::new(authentication)));
    }
    let status =
        apply_processor_charge(conn, pricing, links, charge.id, &authentication.charge).await?;
    Ok(AuthenticationStart::NoLongerNeeded(status))
}

/// After Stripe.js answered in the owner's browser: re-reads the charge's
/// PaymentIntent from the processor (never trusting the browser's word)
/// and settles the charge ([`apply_processor_charge`]); returns its status
/// now. Idempotent, and with the webhook: a charge already settled is
/// answered as it is, without calling the processor.
///
/// Errors: as [`begin_authentication`].
pub async fn complete_authentication(
    conn: &mut AsyncPgConnection,
    processor: &dyn PaymentProcessor,
    pricing: &PricingCatalog,
    links: &EmailLinks,
    customer_id: i64,
    charge_id: i64,
) -> Result<ChargeStatus, BillingError> {
    let (charge, _) = customer_charge(conn, customer_id, charge_id).await?;
    let Some(payment_intent) = waiting_intent(&charge) else {
        return Ok(charge.status);
    };
    let now = processor
        .payment_intent(&payment_intent)
        .await
        .map_err(processor_error)?;
    apply_processor_charge(conn, pricing, links, charge.id, &now).await
}

/// The PaymentIntent of a pay-as-you-go charge waiting for the customer.
fn waiting_intent(charge: &Charge) -> Option<String> {
    if charge.kind != ChargeKind::Payg || !charge.status.awaits_customer() {
        return None;
    }
    charge.stripe_payment_intent_id.clone()
}

/// Applies what the processor reports now about the PaymentIntent of
/// charge `charge_id` (`reported`, read outside any transaction), in one
/// transaction of its own (a savepoint inside the caller's): paid →
/// [`settle_paid_intent`] (ledger, fix `charged`, receipt; an amount other
/// than the charge's is logged, not booked); declined (a failed or
/// abandoned authentication included) → [`settle_failed`] with our advice
/// for the code; canceled → [`settle_failed`]; still waiting or processing
/// → unchanged. A PaymentIntent other than the charge's changes nothing.
/// Returns the charge's status afterwards. For the authentication page and
/// for webhooks about a charge that waits for the customer.
///
/// Errors: [`BillingError::NotFound`] for an unknown charge;
/// [`BillingError::Database`].
pub async fn apply_processor_charge(
    conn: &mut AsyncPgConnection,
    pricing: &PricingCatalog,
    links: &EmailLinks,
    charge_id: i64,
    reported: &ProcessorCharge,
) -> Result<ChargeStatus, BillingError> {
    conn.transaction(async |conn| {
        let (charge, cus): (Charge, Option<String>) = charges::table
            .inner_join(customers::table)
            .filter(charges::id.eq(charge_id))
            .select((Charge::as_select(), customers::stripe_customer_id))
            .first(conn)
            .await
            .optional()?
            .ok_or(BillingError::NotFound("charge"))?;
        if charge.stripe_payment_intent_id.as_deref() != Some(reported.id.as_str())
            || !charge.status.awaits_card_payment()
        {
            return Ok(charge.status);
        }
        match &reported.status {
            ProcessorChargeStatus::Succeeded => {
                settle_paid_intent(
                    conn,
                    &PaidIntent {
                        payment_intent: &reported.id,
                        charge_id: Some(charge.id),
                        processor_customer: cus.as_deref(),
                        amount_received_cents: reported.amount_cents,
                    },
                )
                .await?;
            }
            ProcessorChargeStatus::Declined { code, decline_code } => {
                settle_failed(
                    conn,
                    pricing,
                    links,
                    charge.id,
                    Some(&reported.id),
                    code.as_deref(),
                    decline_code.as_deref(),
                )
                .await?;
            }
            ProcessorChargeStatus::Canceled => {
                settle_failed(
                    conn,
                    pricing,
                    links,
                    charge.id,
                    Some(&reported.id),
                    Some("payment_intent_authentication_failure"),
                    None,
                )
                .await?;
            }
            ProcessorChargeStatus::RequiresAction
            | ProcessorChargeStatus::Processing
            | ProcessorChargeStatus::Incomplete(_) => {}
        }
        let status: ChargeStatus = charges::table
            .find(charge.id)
            .select(charges::status)
            .first(conn)
            .await?;
        Ok(status)
    })
    .await
}
