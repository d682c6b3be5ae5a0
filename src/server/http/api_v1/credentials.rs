//! `POST /api/v1/credentials/exchange` (ACTION_API.md § 1): the Action's
//! start-up call, the hot path. Vends virtual keys for the AI gateway
//! (`server::ai`), or with `CREDENTIAL_VENDING=passthrough` the operator's
//! own provider keys; serves the Action's feature flags (§ 7).

use super::iso_utc;
use crate::server::ai::keys::{MintRequest, VendedKeys};
use crate::server::ai::Provider;
use crate::server::config::ai::CredentialVending;
use crate::server::config::ExposeSecret;
use crate::server::flags::Flag;
use crate::server::http::error::ApiError;
use crate::server::http::extract::{authenticate_key, presented_key, ApiJson};
use crate::server::state::AppState;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Lifetime requested when `ttl_minutes` is absent.
const DEFAULT_TTL_MINUTES: i64 = 60;

/// Request body; `api_key` is accepted when the header is absent. No
/// `Debug`: it holds a secret.
#[derive(Deserialize)]
pub struct ExchangeRequest {
    api_key: Option<String>,
    providers: Vec<String>,
    ttl_minutes: Option<i64>,
}

/// One vended credential. No `Debug`: it holds a secret.
#[derive(Serialize)]
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

/// Response body. `feature_flags` holds the flags the Action reads
/// (RFC-095, e.g. `use_legacy_claude_adapter`), from the feature-flag table.
/// No `Debug`: it holds secrets.
#[derive(Serialize)]
pub struct ExchangeResponse {
    credentials: BTreeMap<String, VendedCredential>,
    usage: UsageSummary,
    feature_flags: BTreeMap<&'static str, bool>,
}

/// The request's head, kept to read the key header and the GitHub run ids.
pub struct Head(Parts);

impl<S: Send + Sync> FromRequestParts<S> for Head {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Head(parts.clone()))
    }
}

/// Vends, for each requested provider the operator configured, a virtual
/// key for the AI gateway under `/ai` — or with
/// `CREDENTIAL_VENDING=passthrough` the operator's own key — expiring at
/// `now + min(ttl_minutes, CREDENTIAL_TTL_CAP_MINUTES)`. A virtual key is
/// minted now (stored as a hash), or, when this instance vended one for the
/// same API key, provider and GitHub job/run expiring at most
/// `min(60 s, lifetime / 10)` earlier, that one again with its own
/// `expires_at` ([`VendedKeys`]): one read of the key per call and, usually,
/// no write;
/// `usage.remaining_fixes` is the credit balance and `reset_at` the end of
/// the paid period (null without a subscription); `feature_flags` the
/// Action's flags ([`Flag::FOR_ACTION`]).
///
/// Errors: 401/403 (key), 422 (empty or oversized `providers`, `ttl_minutes`
/// outside 1..=10080), 402 when the customer has no credits and no way to
/// pay.
pub async fn exchange_credentials(
    State(state): State<AppState>,
    Extension(vended_keys): Extension<Arc<VendedKeys>>,
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
    let customer = &auth.customer;
    if !customer.can_use_service() {
        return Err(ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "no credits left: add a payment method or subscribe to Pro in your RSOLV dashboard to keep fixing",
        ));
    }

    let expires = Utc::now() + Duration::minutes(ttl.min(state.config.credential_ttl_cap_minutes));
    let expires_at = iso_utc(expires);
    let mut providers: Vec<Provider> = body
        .providers
        .iter()
        .filter_map(|name| Provider::parse(name))
        .filter(|p| state.config.provider_credentials.contains_key(p.as_str()))
        .collect();
    providers.sort();
    providers.dedup();
    let header = |name: &str| head.headers.get(name).and_then(|v| v.to_str().ok());
    let credentials = match state.config.ai.vending {
        CredentialVending::Passthrough => providers
            .iter()
            .filter_map(|provider| {
                let secret = state.config.provider_credentials.get(provider.as_str())?;
                Some((
                    provider.as_str().to_owned(),
                    VendedCredential {
                        api_key: secret.expose_secret().to_owned(),
                        expires_at: expires_at.clone(),
                    },
                ))
            })
            .collect::<BTreeMap<_, _>>(),
        CredentialVending::Virtual => {
            let request = MintRequest {
                customer_id: customer.id,
                api_key_id: auth.api_key_id,
                github_job: header("x-github-job"),
                github_run: header("x-github-run"),
            };
            vended_keys
                .vend(&state.pool, &request, &providers, expires)
                .await?
                .into_iter()
                .map(|(provider, (key, key_expires))| {
                    (
                        provider.as_str().to_owned(),
                        VendedCredential {
                            api_key: key.expose().to_owned(),
                            expires_at: iso_utc(key_expires),
                        },
                    )
                })
                .collect()
        }
    };
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
        feature_flags: Flag::FOR_ACTION
            .into_iter()
            .map(|flag| (flag.key(), state.flags().is_on(flag)))
            .collect(),
    }))
}
