//! The pricing catalog's data: prices and credit grants. The defaults are
//! the seeds' prices; operators override them through `PRICING_*`
//! environment variables (see `.env.example`). The domain re-exports it as
//! `billing::pricing::PricingCatalog`.

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
    /// Which event bills a fix (seed: [`BillableEvent::Deployed`]);
    /// `PRICING_BILLABLE_EVENT`.
    pub billable_event: BillableEvent,
    /// Credit policy (issue 9): whether the credits of a paid Pro period
    /// (ledger kind `subscription_grant`) expire at the end of their period
    /// (seed: true). They expire when the next period's credits are
    /// granted: a ledger entry of kind `expired` takes back what is left of
    /// the previous grant. Trial, billing-bonus, purchased and
    /// admin-granted credits never expire.
    pub pro_period_credits_expire: bool,
}

/// The event that makes a fix billable (issue 9 "Bill on merge";
/// ACTION_API.md §§ 3, 5, 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BillableEvent {
    /// The seeds' rule: a stored mitigation with `fixed: true` or a fix
    /// attempt bills the fix when it is reported.
    #[default]
    Deployed,
    /// Reports record the fix as `pending`; the Action's billing call
    /// (`POST /api/v1/fix-attempts/{id}/billing`, sent when the pull request
    /// is merged) bills it.
    Merged,
}

impl BillableEvent {
    /// Parses `deployed` or `merged` (the `PRICING_BILLABLE_EVENT` spelling).
    pub fn parse(input: &str) -> Result<Self, crate::types::values::ParseError> {
        match input.trim() {
            "deployed" => Ok(Self::Deployed),
            "merged" => Ok(Self::Merged),
            other => Err(crate::types::values::ParseError(format!(
                "PRICING_BILLABLE_EVENT must be deployed or merged; got {other:?}"
            ))),
        }
    }

    /// Whether a report of the fix bills it (otherwise the billing call does).
    pub fn bills_on_report(self) -> bool {
        self == Self::Deployed
    }
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
            billable_event: BillableEvent::Deployed,
            pro_period_credits_expire: true,
        }
    }
}
