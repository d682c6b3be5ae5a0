//! The pricing catalog: prices and credit grants as data (the type is
//! parsed with the configuration, [`crate::server::config::pricing`], and
//! re-exported here). The defaults are
//! the seeds' prices; operators override them through `PRICING_*`
//! environment variables (see `.env.example`).

pub use crate::server::config::pricing::{BillableEvent, PricingCatalog};

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

    #[test]
    fn billable_event_spellings() {
        assert_eq!(
            BillableEvent::parse("merged").unwrap(),
            BillableEvent::Merged
        );
        assert_eq!(
            BillableEvent::parse("deployed").unwrap(),
            BillableEvent::Deployed
        );
        assert!(BillableEvent::parse("Merged").is_err());
        assert!(BillableEvent::Deployed.bills_on_report());
        assert!(!BillableEvent::Merged.bills_on_report());
    }
}
