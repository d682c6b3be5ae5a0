//! Parsed domain values. Each type can only be built by `parse`, so holding
//! one proves the input was checked; the database CHECK constraints mirror
//! the enumerations here.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A value failed to parse; the message names the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn invalid(msg: impl Into<String>) -> ParseError {
    ParseError(msg.into())
}

/// A syntactically valid email address (RFC 5321 length limit of 254
/// characters, a dotted domain), trimmed. Uniqueness is case-insensitive and
/// enforced by the database (`lower(email)` index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email(String);

impl Email {
    /// Parses `input`; errors with a message naming the field.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(invalid("email is required"));
        }
        if trimmed.len() > 254 {
            return Err(invalid("email must be at most 254 characters"));
        }
        let domain_has_dot = trimmed
            .rsplit_once('@')
            .is_some_and(|(_, domain)| domain.contains('.') && !domain.ends_with('.'));
        if !email_address::EmailAddress::is_valid(trimmed) || !domain_has_dot {
            return Err(invalid("email is not a valid address"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The address as entered (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A customer's display name: 1 to 200 characters after trimming, no
/// control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerName(String);

impl CustomerName {
    /// Parses `input`; errors with a message naming the field.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(invalid("name is required"));
        }
        if trimmed.chars().count() > 200 {
            return Err(invalid("name must be at most 200 characters"));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(invalid("name must not contain control characters"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The trimmed name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Declares a closed set of string values with `parse`/`as_str`, serde in
/// snake_case and `Display`.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $field:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored/wire spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Parses the stored/wire spelling; errors name the field and
            /// the accepted values.
            pub fn parse(input: &str) -> Result<Self, ParseError> {
                match input {
                    $($text => Ok($name::$variant),)+
                    other => Err(invalid(format!(
                        concat!($field, " must be one of {}; got {:?}"),
                        [$($text),+].join(", "),
                        other
                    ))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// Where a customer signed up.
    Source, "source" {
        /// The website's signup form or the onboarding API.
        Direct => "direct",
        /// GitHub Marketplace purchase.
        GhMarketplace => "gh_marketplace",
        /// Hand-provisioned early-access customer.
        EarlyAccess => "early_access",
    }
);

/// Gives a [`string_enum!`] type diesel conversions to and from `Text`
/// (server only), so rows hold the enum, never a loose string. A stored
/// value outside the enum is a deserialization error (the columns' CHECK
/// constraints keep that from happening).
macro_rules! diesel_text_enum {
    ($name:ident) => {
        #[cfg(feature = "ssr")]
        impl diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
            ) -> diesel::serialize::Result {
                <str as diesel::serialize::ToSql<diesel::sql_types::Text, diesel::pg::Pg>>::to_sql(
                    self.as_str(),
                    out,
                )
            }
        }

        #[cfg(feature = "ssr")]
        impl diesel::deserialize::FromSql<diesel::sql_types::Text, diesel::pg::Pg> for $name {
            fn from_sql(bytes: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
                let text = <String as diesel::deserialize::FromSql<
                    diesel::sql_types::Text,
                    diesel::pg::Pg,
                >>::from_sql(bytes)?;
                Ok($name::parse(&text)?)
            }
        }
    };
}

string_enum!(
    /// The customer's plan (see the pricing catalog for what each costs).
    /// Written only by `server::billing::plan::change_plan`.
    #[cfg_attr(
        feature = "ssr",
        derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow),
        diesel(sql_type = diesel::sql_types::Text)
    )]
    Plan, "plan" {
        /// Free signup credits only.
        Trial => "trial",
        /// Card on file; each fix beyond credits is charged.
        Payg => "payg",
        /// Monthly subscription with included credits and overage.
        Pro => "pro",
    }
);

diesel_text_enum!(Plan);

string_enum!(
    /// A Stripe Subscription's `status` (Stripe's list, API 2025-03-31), as
    /// stored in `customers.subscription_status`. The rules that depend on
    /// it are the methods below, each written once.
    #[cfg_attr(
        feature = "ssr",
        derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow),
        diesel(sql_type = diesel::sql_types::Text)
    )]
    SubscriptionStatus, "subscription_status" {
        /// Created; the first payment has not succeeded yet (23 hours to pay).
        Incomplete => "incomplete",
        /// The first payment never succeeded; the subscription is over.
        IncompleteExpired => "incomplete_expired",
        /// In a free trial period.
        Trialing => "trialing",
        /// Paid and running.
        Active => "active",
        /// The latest invoice failed; Stripe is retrying (dunning).
        PastDue => "past_due",
        /// Ended.
        Canceled => "canceled",
        /// Dunning gave up without cancelling; invoices are no longer paid.
        Unpaid => "unpaid",
        /// A trial ended without a payment method; paused until one is added.
        Paused => "paused",
    }
);

diesel_text_enum!(SubscriptionStatus);

impl SubscriptionStatus {
    /// Whether a subscription in this status keeps the customer on Pro
    /// (credits per paid period, overage beyond them): `active`,
    /// `trialing`, and `past_due` while Stripe retries the payment
    /// (issue 9: the one list of "counts as Pro").
    pub fn counts_as_pro(self) -> bool {
        matches!(self, Self::Active | Self::Trialing | Self::PastDue)
    }

    /// Whether the subscription is still open: Pro, or `incomplete`
    /// (awaiting its first payment). While one is open a second
    /// subscription is refused, it can be cancelled, and its last card
    /// cannot be removed.
    pub fn is_open(self) -> bool {
        self.counts_as_pro() || self == Self::Incomplete
    }

    /// Whether Stripe reports the subscription's payments failing
    /// (`past_due`, `unpaid`): the admin console's "payment failed" filter.
    pub fn payment_failing(self) -> bool {
        matches!(self, Self::PastDue | Self::Unpaid)
    }

    /// The spellings of the statuses for which `rule` holds, for SQL
    /// filters that must agree with the methods above.
    pub fn spellings_where(rule: fn(Self) -> bool) -> Vec<&'static str> {
        Self::ALL
            .iter()
            .copied()
            .filter(|s| rule(*s))
            .map(Self::as_str)
            .collect()
    }

    /// A label for people, e.g. "Past due: payment failed".
    pub fn label(self) -> &'static str {
        match self {
            Self::Incomplete => "Incomplete",
            Self::IncompleteExpired => "Expired before the first payment",
            Self::Trialing => "Trialing",
            Self::Active => "Active",
            Self::PastDue => "Past due: payment failed",
            Self::Canceled => "Canceled",
            Self::Unpaid => "Ended: unpaid",
            Self::Paused => "Paused",
        }
    }
}

string_enum!(
    /// Whether the customer may use the service at all.
    CustomerStatus, "status" {
        /// Normal.
        Active => "active",
        /// Blocked by an admin: the Action gets 403.
        Suspended => "suspended",
    }
);

string_enum!(
    /// Why credits moved; the ledger's `kind` column.
    LedgerKind, "kind" {
        /// Trial credits granted at signup (+).
        SignupBonus => "signup_bonus",
        /// One-time bonus for adding a first payment method (+).
        BillingBonus => "billing_bonus",
        /// Credits included in a paid subscription period (+).
        SubscriptionGrant => "subscription_grant",
        /// One credit consumed by a fix (−).
        FixConsumed => "fix_consumed",
        /// Credits bought with money (+).
        Purchase => "purchase",
        /// Manual correction by an admin (±).
        AdminAdjustment => "admin_adjustment",
        /// Credits returned (+), or a bought credit taken back when its
        /// payment was refunded (−).
        Refund => "refund",
        /// Unused Pro period credits expired at the next period's grant (−).
        Expired => "expired",
    }
);

string_enum!(
    /// How a fix has been paid for (`fixes.billing_status`).
    #[cfg_attr(
        feature = "ssr",
        derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow),
        diesel(sql_type = diesel::sql_types::Text)
    )]
    FixBillingStatus, "billing_status" {
        /// Recorded, not yet billed: inside the recording transaction or,
        /// when fixes are billed on merge, until the Action's billing call.
        Pending => "pending",
        /// Paid with one credit from the ledger.
        Credit => "credit",
        /// Recorded but not paid: no credit and no charge possible at the time.
        Unpaid => "unpaid",
        /// Paid by a card charge or invoice item.
        Charged => "charged",
        /// Never to be billed: an admin wrote it off with a reason (issue 9).
        WrittenOff => "written_off",
        /// Its card charge was refunded in full: not paid for, no credit kept.
        Refunded => "refunded",
    }
);

diesel_text_enum!(FixBillingStatus);

string_enum!(
    /// How a charge collects its money (`charges.kind`; issue 9).
    #[cfg_attr(
        feature = "ssr",
        derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow),
        diesel(sql_type = diesel::sql_types::Text)
    )]
    ChargeKind, "charge kind" {
        /// An off-session card charge of `pricing.payg_fix_cents` (pay as
        /// you go): one PaymentIntent.
        Payg => "payg",
        /// Pro overage: an invoice item of `pricing.pro_overage_cents` on
        /// the subscription's next invoice, paid when that invoice is.
        Overage => "overage",
    }
);

diesel_text_enum!(ChargeKind);

string_enum!(
    /// A stage of the Action's scan → validate → mitigate pipeline
    /// (ACTION_API.md § 3).
    Phase, "phase" {
        /// Vulnerability scan of a commit.
        Scan => "scan",
        /// Validation of one issue.
        Validation => "validation",
        /// Fix of one issue.
        Mitigation => "mitigation",
    }
);

/// A GitHub repository `owner/name`: owner 1–39 characters of ASCII letters,
/// digits and `-`; name 1–100 characters of ASCII letters, digits, `.`, `_`
/// and `-` (GitHub's own rules), not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Repository(String);

impl Repository {
    /// Parses `owner/name`.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let (owner, name) = input
            .split_once('/')
            .ok_or_else(|| invalid("repository must look like owner/name"))?;
        Self::from_parts(owner, name)
    }

    /// Builds from separate owner and name (the fix-attempt body's
    /// `github_org` and `repo_name`).
    pub fn from_parts(owner: &str, name: &str) -> Result<Self, ParseError> {
        let owner_ok = (1..=39).contains(&owner.len())
            && owner.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        let name_ok = (1..=100).contains(&name.len())
            && name != "."
            && name != ".."
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !owner_ok || !name_ok {
            return Err(invalid(format!(
                "repository {owner}/{name} is not a valid GitHub owner/name"
            )));
        }
        Ok(Self(format!("{owner}/{name}")))
    }

    /// `owner/name`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The owner (organisation or user) part.
    pub fn owner(&self) -> &str {
        self.0.split_once('/').map_or("", |(o, _)| o)
    }

    /// The repository name part.
    pub fn name(&self) -> &str {
        self.0.split_once('/').map_or("", |(_, n)| n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_accepts_ordinary_addresses_and_trims() {
        assert_eq!(
            Email::parse("  Ada@Example.com ").unwrap().as_str(),
            "Ada@Example.com"
        );
    }

    #[test]
    fn email_rejects_malformed_addresses() {
        for bad in [
            "",
            "   ",
            "not-an-email",
            "a@b",
            "a@@b.com",
            "@example.com",
            "a b@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }

    #[test]
    fn name_rules() {
        assert_eq!(CustomerName::parse(" Ada ").unwrap().as_str(), "Ada");
        assert!(CustomerName::parse("").is_err());
        assert!(CustomerName::parse("a\u{0}b").is_err());
        assert!(CustomerName::parse(&"x".repeat(201)).is_err());
        assert!(CustomerName::parse(&"é".repeat(200)).is_ok());
    }

    #[test]
    fn enums_round_trip_and_reject_unknown_values() {
        for s in Source::ALL {
            assert_eq!(Source::parse(s.as_str()).unwrap(), *s);
        }
        for k in LedgerKind::ALL {
            assert_eq!(LedgerKind::parse(k.as_str()).unwrap(), *k);
        }
        let err = Phase::parse("deploy").unwrap_err();
        assert!(
            err.0
                .contains("phase must be one of scan, validation, mitigation"),
            "{err}"
        );
    }

    #[test]
    fn subscription_status_rules_are_written_once() {
        use SubscriptionStatus as S;
        for s in S::ALL {
            assert_eq!(S::parse(s.as_str()).unwrap(), *s);
        }
        assert_eq!(
            S::spellings_where(S::counts_as_pro),
            vec!["trialing", "active", "past_due"]
        );
        assert_eq!(
            S::spellings_where(S::is_open),
            vec!["incomplete", "trialing", "active", "past_due"]
        );
        assert!(!S::Canceled.counts_as_pro() && !S::Unpaid.counts_as_pro());
        assert!(!S::Incomplete.counts_as_pro() && S::Incomplete.is_open());
        assert!(S::Unpaid.payment_failing() && !S::Canceled.payment_failing());
    }

    #[test]
    fn repository_rules() {
        let repo = Repository::parse("acme/api.v2").unwrap();
        assert_eq!((repo.owner(), repo.name()), ("acme", "api.v2"));
        for bad in [
            "acme",
            "acme/",
            "/api",
            "ac me/api",
            "acme/a/b",
            "acme/..",
            "a_b/api",
        ] {
            assert!(Repository::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
