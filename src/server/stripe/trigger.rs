//! `rsolv-platform stripe-trigger`: the Stripe CLI's `trigger`, offline.
//! Takes an event fixture (`tests/fixtures/stripe/*.json`), optionally gives
//! it a fresh id and timestamp and points it at one of our Stripe Customers,
//! signs it exactly as Stripe does ([`super::signature::sign`]) and POSTs it
//! to a webhook endpoint. The tests prepare and sign fixtures the same way.

use crate::server::stripe::signature::sign;
use serde_json::Value;

/// How to prepare a fixture.
#[derive(Debug, Clone, Default)]
pub struct FixtureOptions<'a> {
    /// Replace the event id with a new random `evt_…` and `created` with now.
    pub fresh: bool,
    /// Replace the Stripe Customer the object refers to (`data.object.customer`
    /// and `data.previous_attributes.customer`) with this `cus_…`.
    pub customer: Option<&'a str>,
    /// Replace `created` with this time (unix seconds); wins over `fresh`.
    pub created: Option<i64>,
    /// Replace the event id with this one; wins over `fresh`.
    pub id: Option<&'a str>,
}

/// Applies `options` to a fixture's JSON text; returns the event body.
///
/// Errors: a message when the text is not a JSON object.
pub fn prepare_fixture(text: &str, options: &FixtureOptions<'_>) -> Result<Value, String> {
    let mut event: Value =
        serde_json::from_str(text).map_err(|e| format!("fixture is not JSON: {e}"))?;
    let Some(object) = event.as_object_mut() else {
        return Err("fixture is not a JSON object".into());
    };
    if options.fresh {
        object.insert("id".into(), Value::String(random_event_id()));
        object.insert("created".into(), chrono::Utc::now().timestamp().into());
    }
    if let Some(id) = options.id {
        object.insert("id".into(), Value::String(id.to_owned()));
    }
    if let Some(created) = options.created {
        object.insert("created".into(), created.into());
    }
    if let Some(customer) = options.customer {
        for pointer in ["/data/object", "/data/previous_attributes"] {
            if let Some(target) = event.pointer_mut(pointer).and_then(Value::as_object_mut) {
                if target.get("customer").is_some_and(|c| !c.is_null()) {
                    target.insert("customer".into(), Value::String(customer.to_owned()));
                }
            }
        }
    }
    Ok(event)
}

/// A random event id, `evt_` + 24 hex digits.
pub fn random_event_id() -> String {
    let mut bytes = [0u8; 12];
    // The OS generator only fails on broken systems; fall back to the clock.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        bytes[..8].copy_from_slice(&nanos.to_le_bytes());
    }
    format!("evt_{}", hex::encode(bytes))
}

/// Signs `body` with `secret` at the current time and POSTs it to `url`
/// (http only) as Stripe would; returns the answer's status and body.
///
/// Errors: a message when the request cannot be sent.
pub async fn post_signed(url: &str, secret: &str, body: Vec<u8>) -> Result<(u16, String), String> {
    let header = sign(secret, chrono::Utc::now().timestamp(), &body);
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("stripe-signature", header)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("cannot POST to {url}: {e}"))?;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    Ok((status, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_id_time_and_customer() {
        let text = r#"{"id":"evt_1","created":1,"type":"payment_method.detached",
            "data":{"object":{"id":"pm_1","customer":null},"previous_attributes":{"customer":"cus_old"}}}"#;
        let event = prepare_fixture(
            text,
            &FixtureOptions {
                customer: Some("cus_new"),
                created: Some(42),
                id: Some("evt_x"),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(event["id"], "evt_x");
        assert_eq!(event["created"], 42);
        assert!(event["data"]["object"]["customer"].is_null());
        assert_eq!(event["data"]["previous_attributes"]["customer"], "cus_new");
        let fresh = prepare_fixture(
            text,
            &FixtureOptions {
                fresh: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_ne!(fresh["id"], "evt_1");
        assert!(fresh["created"].as_i64().unwrap() > 1_700_000_000);
        assert!(prepare_fixture("[]", &FixtureOptions::default()).is_err());
    }
}
