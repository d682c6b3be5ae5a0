//! The pricing catalog's data: prices and credit grants. The defaults are
//! the seeds' prices; operators override them through `PRICING_*`
//! environment variables (see `.env.example`). The domain re-exports it as
//! `billing::pricing::PricingCatalog`.

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
        }
    }
}
