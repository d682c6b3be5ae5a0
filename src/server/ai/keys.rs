//! Virtual keys: what the credential exchange vends instead of the
//! operator's provider keys.
//!
//! A key is `rsolv_vk_` followed by 32 random bytes from the OS RNG in
//! URL-safe base64 (43 characters). Only its SHA-256 and a display prefix
//! are stored (`ai_virtual_keys`), like the customers' own API keys
//! (`billing::api_keys`). A key works for the one provider it was minted
//! for, until its `expires_at`, while the API key that obtained it is
//! neither revoked nor past its rotation grace and while its customer is
//! active: every call reads all three, so revoking or suspending applies
//! to the next call.

use super::Provider;
use crate::server::billing::customers::Customer;
use crate::server::billing::BillingError;
use crate::server::db::schema::{ai_virtual_keys, api_keys, customers};
use crate::server::db::DbPool;
use crate::types::values::CustomerStatus;
use base64::Engine;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use sha2::{Digest, Sha256};

/// Every virtual key starts with this.
pub const VIRTUAL_KEY_PREFIX: &str = "rsolv_vk_";

/// Characters kept for display (`rsolv_vk_` plus 6).
const DISPLAY_PREFIX_LEN: usize = 15;

/// Longest string ever looked up as a virtual key.
const MAX_KEY_LEN: usize = 128;

/// A virtual key's secret, held only until the exchange's response.
/// `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainVirtualKey(String);

impl PlainVirtualKey {
    /// The secret, for the one response that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PlainVirtualKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlainVirtualKey(<redacted>)")
    }
}

fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Who asked for the keys: the customer, the API key it authenticated with
/// and the GitHub run ids the Action sent (`X-GitHub-Job`, `X-GitHub-Run`,
/// kept at most 200 characters each).
#[derive(Debug, Clone)]
pub struct MintRequest<'a> {
    /// The customer.
    pub customer_id: i64,
    /// The API key used for the exchange (its revocation kills the keys).
    pub api_key_id: i64,
    /// `X-GitHub-Job`, if sent.
    pub github_job: Option<&'a str>,
    /// `X-GitHub-Run`, if sent.
    pub github_run: Option<&'a str>,
}

/// Mints one virtual key per provider in `providers` (duplicates minted
/// once), all expiring at `expires_at`, in one statement.
///
/// Errors: [`BillingError::Pool`] when the OS RNG fails;
/// [`BillingError::Database`].
pub async fn mint_virtual_keys(
    conn: &mut AsyncPgConnection,
    request: &MintRequest<'_>,
    providers: &[Provider],
    expires_at: DateTime<Utc>,
) -> Result<Vec<(Provider, PlainVirtualKey)>, BillingError> {
    let mut providers = providers.to_vec();
    providers.sort();
    providers.dedup();
    let (job, run) = (clip(request.github_job), clip(request.github_run));
    let mut minted = Vec::with_capacity(providers.len());
    let mut rows = Vec::with_capacity(providers.len());
    for provider in providers {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| BillingError::Pool(format!("OS RNG unavailable: {e}")))?;
        let secret = format!(
            "{VIRTUAL_KEY_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        rows.push((
            ai_virtual_keys::customer_id.eq(request.customer_id),
            ai_virtual_keys::api_key_id.eq(request.api_key_id),
            ai_virtual_keys::provider.eq(provider.as_str()),
            ai_virtual_keys::token_hash.eq(hash(&secret).to_vec()),
            ai_virtual_keys::prefix.eq(secret[..DISPLAY_PREFIX_LEN].to_owned()),
            ai_virtual_keys::github_job.eq(job.clone()),
            ai_virtual_keys::github_run.eq(run.clone()),
            ai_virtual_keys::expires_at.eq(expires_at),
        ));
        minted.push((provider, PlainVirtualKey(secret)));
    }
    if !rows.is_empty() {
        diesel::insert_into(ai_virtual_keys::table)
            .values(rows)
            .execute(conn)
            .await?;
    }
    Ok(minted)
}

/// The longest a reused key may fall short of the expiry a caller asks
/// for; see [`VendedKeys`].
pub const MAX_REUSE_SHORTFALL: chrono::Duration = chrono::Duration::seconds(60);

/// Keys this instance keeps for reuse; past this, expired ones are dropped,
/// and if that is not enough, all.
const MAX_KEPT: usize = 10_000;

/// What a vended key was vended for: the API key, the provider and the
/// GitHub run ids, as [`mint_virtual_keys`] stores them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct VendedFor {
    api_key_id: i64,
    provider: Provider,
    github_job: Option<String>,
    github_run: Option<String>,
}

/// The virtual keys this instance vended, kept in memory (never stored in
/// plain anywhere) so that a repeated exchange for the same API key,
/// provider and GitHub job/run gets the same key instead of a new row:
/// the exchange then costs no write (issue 13).
///
/// A key is vended again only while its expiry is at most
/// `min(`[`MAX_REUSE_SHORTFALL`]`, lifetime / 10)` before, and never
/// after, the expiry asked for (`now + min(ttl, cap)`); otherwise a new one
/// is minted. Reuse changes nothing a key is checked against: it was
/// minted for the same API key, so revoking or rotating that key, or
/// suspending its customer, ends it at once like any other
/// ([`authenticate_virtual_key`] reads all three on every call), and the
/// exchange itself reads the API key on every call. Stored keys are never
/// changed or deleted before they expire; code that starts doing so must
/// also stop reusing them. Per instance (an instance that has not seen a
/// key mints its own); at most 10,000 kept. `Debug` shows only the count.
#[derive(Default)]
pub struct VendedKeys {
    kept: std::sync::Mutex<std::collections::HashMap<VendedFor, (PlainVirtualKey, DateTime<Utc>)>>,
}

impl std::fmt::Debug for VendedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = self.kept.lock().map(|k| k.len()).unwrap_or_default();
        f.debug_struct("VendedKeys").field("kept", &kept).finish()
    }
}

/// Trimmed, non-empty, at most 200 characters: how GitHub ids are stored.
fn clip(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| v.chars().take(200).collect())
}

/// A vended key and its expiry.
pub type Vended = (PlainVirtualKey, DateTime<Utc>);

impl VendedKeys {
    /// For each provider in `providers` (duplicates once): a key this
    /// instance vended for the same request that expires within the
    /// allowed shortfall before `expires_at` (see [`VendedKeys`]), or else
    /// a new one minted by [`mint_virtual_keys`] (all new ones in one
    /// statement, on a connection taken from `pool` only then) and kept.
    /// Sorted by provider.
    ///
    /// Errors: as [`mint_virtual_keys`]; [`BillingError::Pool`] when no
    /// connection can be had.
    pub async fn vend(
        &self,
        pool: &DbPool,
        request: &MintRequest<'_>,
        providers: &[Provider],
        expires_at: DateTime<Utc>,
    ) -> Result<Vec<(Provider, Vended)>, BillingError> {
        let now = Utc::now();
        let shortfall = MAX_REUSE_SHORTFALL.min((expires_at - now) / 10);
        let mut providers = providers.to_vec();
        providers.sort();
        providers.dedup();
        let vended_for = |provider: Provider| VendedFor {
            api_key_id: request.api_key_id,
            provider,
            github_job: clip(request.github_job),
            github_run: clip(request.github_run),
        };
        let mut vended = Vec::with_capacity(providers.len());
        let mut missing = Vec::new();
        {
            let kept = self
                .kept
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for provider in providers {
                match kept.get(&vended_for(provider)) {
                    Some((key, at)) if *at <= expires_at && *at >= expires_at - shortfall => {
                        vended.push((provider, (key.clone(), *at)));
                    }
                    _ => missing.push(provider),
                }
            }
        }
        if missing.is_empty() {
            return Ok(vended);
        }
        let mut conn = pool
            .get()
            .await
            .map_err(|e| BillingError::Pool(e.to_string()))?;
        let minted = mint_virtual_keys(&mut conn, request, &missing, expires_at).await?;
        let mut kept = self
            .kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.len() + minted.len() > MAX_KEPT {
            kept.retain(|_, (_, at)| *at > now);
            if kept.len() + minted.len() > MAX_KEPT {
                kept.clear();
            }
        }
        for (provider, key) in minted {
            kept.insert(vended_for(provider), (key.clone(), expires_at));
            vended.push((provider, (key, expires_at)));
        }
        vended.sort_by_key(|(provider, _)| *provider);
        Ok(vended)
    }
}

/// Why a presented virtual key was refused. The gateway answers 401 for all
/// but [`VirtualKeyRejection::Suspended`] (403), in the provider's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VirtualKeyRejection {
    /// No key was presented.
    #[error("missing API key: send the key from the RSOLV credential exchange")]
    Missing,
    /// Not a key the platform minted.
    #[error("invalid API key: not a key vended by the RSOLV credential exchange")]
    Unknown,
    /// Minted for another provider than the endpoint called.
    #[error("this key was vended for {0}; call that provider's endpoint")]
    WrongProvider(&'static str),
    /// Past its `expires_at`.
    #[error("this key has expired; call the RSOLV credential exchange for a new one")]
    Expired,
    /// The API key that obtained it is revoked or past its rotation grace.
    #[error("the RSOLV API key this key was vended for has been revoked")]
    Revoked,
    /// The customer is suspended.
    #[error("this RSOLV account is suspended; contact support")]
    Suspended,
}

/// A virtual key that passed [`authenticate_virtual_key`].
#[derive(Debug, Clone)]
pub struct VirtualKeyAuth {
    /// `ai_virtual_keys.id`.
    pub virtual_key_id: i64,
    /// The API key that obtained it.
    pub api_key_id: i64,
    /// The provider it was minted for.
    pub provider: Provider,
    /// Its customer, as read now.
    pub customer: Customer,
}

/// Looks a presented key up by hash and checks it for a call to one of
/// `providers` (the endpoint's).
///
/// Errors: `Ok(Err(_))` for a refused key; `Err` when the database fails.
pub async fn authenticate_virtual_key(
    conn: &mut AsyncPgConnection,
    presented: Option<&str>,
    providers: &[Provider],
) -> Result<Result<VirtualKeyAuth, VirtualKeyRejection>, BillingError> {
    let Some(presented) = presented.map(str::trim).filter(|k| !k.is_empty()) else {
        return Ok(Err(VirtualKeyRejection::Missing));
    };
    if !presented.starts_with(VIRTUAL_KEY_PREFIX) || presented.len() > MAX_KEY_LEN {
        return Ok(Err(VirtualKeyRejection::Unknown));
    }
    type Found = (
        i64,
        i64,
        String,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        Customer,
    );
    let found: Option<Found> = ai_virtual_keys::table
        .inner_join(api_keys::table)
        .inner_join(customers::table)
        .filter(ai_virtual_keys::token_hash.eq(hash(presented).as_slice()))
        .select((
            ai_virtual_keys::id,
            ai_virtual_keys::api_key_id,
            ai_virtual_keys::provider,
            ai_virtual_keys::expires_at,
            api_keys::revoked_at,
            api_keys::expires_at,
            Customer::as_select(),
        ))
        .first(conn)
        .await
        .optional()?;
    let Some((virtual_key_id, api_key_id, provider, expires_at, revoked_at, key_expires, customer)) =
        found
    else {
        return Ok(Err(VirtualKeyRejection::Unknown));
    };
    let Some(provider) = Provider::parse(&provider) else {
        return Ok(Err(VirtualKeyRejection::Unknown));
    };
    let now = Utc::now();
    if revoked_at.is_some() || key_expires.is_some_and(|at| at <= now) {
        return Ok(Err(VirtualKeyRejection::Revoked));
    }
    if customer.status() == CustomerStatus::Suspended {
        return Ok(Err(VirtualKeyRejection::Suspended));
    }
    if expires_at <= now {
        return Ok(Err(VirtualKeyRejection::Expired));
    }
    if !providers.contains(&provider) {
        return Ok(Err(VirtualKeyRejection::WrongProvider(provider.as_str())));
    }
    Ok(Ok(VirtualKeyAuth {
        virtual_key_id,
        api_key_id,
        provider,
        customer,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let key = PlainVirtualKey(format!("{VIRTUAL_KEY_PREFIX}secret"));
        assert_eq!(format!("{key:?}"), "PlainVirtualKey(<redacted>)");
    }
}
