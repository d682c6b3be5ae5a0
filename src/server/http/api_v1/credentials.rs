//! `POST /api/v1/credentials/exchange` (ACTION_API.md § 1): the Action's
//! start-up call, the hot path.

use super::iso_utc;
use crate::server::http::error::ApiError;
use crate::server::http::extract::{authenticate_key, presented_key, ApiJson};
use crate::server::state::AppState;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Lifetime requested when `ttl_minutes` is absent.
const DEFAULT_TTL_MINUTES: i64 = 60;

/// Request body; `api_key` is accepted when the header is absent.
#[derive(Debug, Deserialize)]
pub struct ExchangeRequest {
    api_key: Option<String>,
    providers: Vec<String>,
    ttl_minutes: Option<i64>,
}

/// One vended credential.
#[derive(Debug, Serialize)]
pub struct VendedCredential {
    api_key: String,
    expires_at: String,
}

/// What the customer can still get.
#[derive(Debug, Serialize)]
pub struct UsageSummary {
    remaining_fixes: i64,
    reset_at: Option<String>,
}

/// Response body.
#[derive(Debug, Serialize)]
pub struct ExchangeResponse {
    credentials: BTreeMap<String, VendedCredential>,
    usage: UsageSummary,
}

/// The request's head, kept to read the key header and the GitHub run ids.
pub struct Head(Parts);

impl<S: Send + Sync> FromRequestParts<S> for Head {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Head(parts.clone()))
    }
}

/// Vends the operator's credential for each requested provider that has
/// one, expiring at `now + min(ttl_minutes, CREDENTIAL_TTL_CAP_MINUTES)`;
/// `usage.remaining_fixes` is the credit balance and `reset_at` the end of
/// the paid period (null without a subscription).
///
/// Errors: 401/403 (key), 422 (empty or oversized `providers`, `ttl_minutes`
/// outside 1..=10080), 402 when the customer has no credits and no way to
/// pay.
pub async fn exchange_credentials(
    State(state): State<AppState>,
    Head(head): Head,
    ApiJson(body): ApiJson<ExchangeRequest>,
) -> Result<Json<ExchangeResponse>, ApiError> {
    let header_key = presented_key(&head);
    let key = match (header_key, body.api_key.as_deref()) {
        (Some(h), Some(b)) if !b.is_empty() && h.trim() != b.trim() => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the x-api-key header and the body's api_key differ",
            ))
        }
        (Some(h), _) => Some(h),
        (None, b) => b,
    };
    let auth = authenticate_key(&state, &head, key).await?;

    if body.providers.is_empty() || body.providers.len() > 16 {
        return Err(ApiError::unprocessable(
            "providers must list 1 to 16 provider names",
        ));
    }
    let ttl = body.ttl_minutes.unwrap_or(DEFAULT_TTL_MINUTES);
    if !(1..=10_080).contains(&ttl) {
        return Err(ApiError::unprocessable(
            "ttl_minutes must be between 1 and 10080",
        ));
    }
    let customer = auth.customer;
    if !customer.can_use_service() {
        return Err(ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "no credits left: add a payment method or subscribe to Pro in your RSOLV dashboard to keep fixing",
        ));
    }

    let expires_at =
        iso_utc(Utc::now() + Duration::minutes(ttl.min(state.config.credential_ttl_cap_minutes)));
    let credentials = body
        .providers
        .iter()
        .filter_map(|provider| {
            let name = provider.trim().to_ascii_lowercase();
            let secret = state.config.provider_credentials.get(&name)?;
            Some((
                name,
                VendedCredential {
                    api_key: secret.clone(),
                    expires_at: expires_at.clone(),
                },
            ))
        })
        .collect::<BTreeMap<_, _>>();
    tracing::info!(
        customer_id = customer.id,
        github_job = head
            .headers
            .get("x-github-job")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
        github_run = head
            .headers
            .get("x-github-run")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
        vended = credentials.len(),
        "credentials exchanged"
    );
    Ok(Json(ExchangeResponse {
        credentials,
        usage: UsageSummary {
            remaining_fixes: customer.credit_balance,
            reset_at: customer.current_period_end.map(iso_utc),
        },
    }))
}
