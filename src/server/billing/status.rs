//! The billing status contract: `{stripe_customer_id, subscription_status,
//! can_use_service, current_usage}`, the same for every adapter.

use crate::server::billing::customers::find_customer;
use crate::server::billing::fixes::count_fixes;
use crate::server::billing::BillingError;
use crate::types::views::{BillingStatusView, CurrentUsage};
use diesel_async::AsyncPgConnection;

/// Reads the customer's billing status.
///
/// Errors: [`BillingError::NotFound`] for an unknown customer.
pub async fn billing_status(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<BillingStatusView, BillingError> {
    let customer = find_customer(conn, customer_id).await?;
    let (fixes_total, fixes_unpaid) = count_fixes(conn, customer_id).await?;
    Ok(BillingStatusView {
        can_use_service: customer.can_use_service(),
        current_usage: CurrentUsage {
            credit_balance: customer.credit_balance,
            fixes_total,
            fixes_unpaid,
            plan: customer.plan.as_str().to_owned(),
        },
        stripe_customer_id: customer.stripe_customer_id,
        subscription_status: customer.subscription_status.map(|s| s.as_str().to_owned()),
    })
}
