//! The pricing catalog: prices and credit grants as data. The defaults are
//! the seeds' prices; operators override them through `PRICING_*`
//! environment variables (see `.env.example`).

use crate::types::values::LedgerKind;

/// Prices in integer minor units of [`PricingCatalog::currency`] (cents for
/// USD) and grants in whole credits. One credit pays for one fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricingCatalog {
    /// Credits granted once at signup (seed: 5).
    pub trial_credits: i64,
    /// Credits granted once when a first payment method is added (seed: 5).
    pub billing_bonus_credits: i64,
    /// Pay-as-you-go price of one fix when credits run out, in cents (seed: 2900 = $29.00).
    pub payg_fix_cents: i64,
    /// Pro subscription price per month, in cents (seed: 59900 = $599.00).
    pub pro_monthly_cents: i64,
    /// Credits granted per paid Pro period (seed: 60).
    pub pro_credits_per_period: i64,
    /// Price of each Pro fix beyond the period's credits, in cents (seed: 1500 = $15.00).
    pub pro_overage_cents: i64,
    /// ISO 4217 currency code, lower case as Stripe writes it (seed: `usd`).
    pub currency: String,
    /// Credit policy (issue 9): whether the credits of a paid Pro period
    /// (ledger kind `subscription_grant`) expire at the end of their period
    /// (seed: true). They expire when the next period's credits are
    /// granted: a ledger entry of kind `expired` takes back what is left of
    /// the previous grant. Trial, billing-bonus, purchased and
    /// admin-granted credits never expire.
    pub pro_period_credits_expire: bool,
}

impl PricingCatalog {
    /// Whether credits granted with ledger kind `kind` expire under this
    /// catalog (only Pro period grants can).
    pub fn credits_expire(&self, kind: LedgerKind) -> bool {
        kind == LedgerKind::SubscriptionGrant && self.pro_period_credits_expire
    }

    /// The credit policy in one sentence for people (the portal's billing
    /// page shows it; the README says the same).
    pub fn credit_policy(&self) -> String {
        if self.pro_period_credits_expire {
            "Pro credits are valid for the billing period they come with: what is left expires when the next period's credits are granted. Trial, bonus and purchased credits never expire.".to_owned()
        } else {
            "Credits never expire.".to_owned()
        }
    }
}

impl Default for PricingCatalog {
    fn default() -> Self {
        Self {
            trial_credits: 5,
            billing_bonus_credits: 5,
            payg_fix_cents: 2900,
            pro_monthly_cents: 59900,
            pro_credits_per_period: 60,
            pro_overage_cents: 1500,
            currency: "usd".to_owned(),
            pro_period_credits_expire: true,
        }
    }
}

/// Formats an amount of minor units for people, e.g. `2900, "usd"` →
/// `"$29.00"`, `1500, "eur"` → `"15.00 EUR"`. Integer arithmetic only.
pub fn format_money(cents: i64, currency: &str) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    let (major, minor) = (abs / 100, abs % 100);
    if currency.eq_ignore_ascii_case("usd") {
        format!("{sign}${major}.{minor:02}")
    } else {
        format!("{sign}{major}.{minor:02} {}", currency.to_ascii_uppercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_minor_units_exactly() {
        assert_eq!(format_money(2900, "usd"), "$29.00");
        assert_eq!(format_money(59900, "usd"), "$599.00");
        assert_eq!(format_money(5, "usd"), "$0.05");
        assert_eq!(format_money(-1500, "eur"), "-15.00 EUR");
    }
}
