//! API keys: `rsolv_` followed by 32 random bytes from the OS RNG, encoded as
//! URL-safe base64 without padding (43 characters). Only the SHA-256 of the
//! whole key and a short display prefix are stored; the key itself is shown
//! once (ACTION_API.md § Authentication; crates.io's `utils/token.rs`).

use crate::server::billing::customers::Customer;
use crate::server::billing::notifications::{
    self as templates, enqueue_email, CustomerContact, EmailLinks, Recipient,
};
use crate::server::billing::BillingError;
use crate::server::db::schema::{api_keys, customers};
use crate::types::portal::{ApiKeyExpiry, ApiKeyName, KeyActivityView};
use crate::types::values::CustomerStatus;
use base64::Engine;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use sha2::{Digest, Sha256};

/// Every key starts with this.
pub const KEY_PREFIX: &str = "rsolv_";

/// Characters of the key kept for display (`rsolv_` plus 6).
pub const DISPLAY_PREFIX_LEN: usize = 12;

/// Longest string ever looked up as a key; longer input is rejected without
/// touching the database.
const MAX_KEY_LEN: usize = 128;

/// A full API key, held only between creation and the one response that
/// shows it. `Debug` is redacted so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainApiKey(String);

impl PlainApiKey {
    /// The secret, for the one response that shows it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PlainApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlainApiKey(<redacted>)")
    }
}

/// A freshly generated key: the secret, its display prefix and its SHA-256.
pub struct GeneratedKey {
    /// The full key.
    pub plain: PlainApiKey,
    /// The first [`DISPLAY_PREFIX_LEN`] characters.
    pub prefix: String,
    /// SHA-256 of the full key.
    pub hash: [u8; 32],
}

/// Generates a key from 32 bytes of the operating system's RNG.
///
/// Errors only if the OS RNG is unavailable.
pub fn generate_key() -> Result<GeneratedKey, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let secret = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    Ok(GeneratedKey {
        prefix: secret[..DISPLAY_PREFIX_LEN].to_owned(),
        hash: hash_key(&secret),
        plain: PlainApiKey(secret),
    })
}

/// SHA-256 of a presented key.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A stored key (without the secret).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg))]
pub struct ApiKey {
    /// Row id.
    pub id: i64,
    /// Owner.
    pub customer_id: i64,
    /// The customer's label for it.
    pub name: String,
    /// Display prefix, e.g. `rsolv_AbC123`.
    pub prefix: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Last successful use (updated at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked; a revoked key gets 401.
    pub revoked_at: Option<DateTime<Utc>>,
    /// For a rotated key, the end of its grace period; for a key created
    /// with an expiry, the end of its chosen lifetime. From then on it gets
    /// 401. `None` for keys that never expire.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Creates a key named `name` for `customer_id`; returns the stored row and
/// the secret to show once.
///
/// Errors: [`BillingError::Database`] (including a foreign-key violation
/// for an unknown customer).
pub async fn create_api_key(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    name: &ApiKeyName,
) -> Result<(ApiKey, PlainApiKey), BillingError> {
    create_api_key_expiring(conn, customer_id, name, ApiKeyExpiry::Never).await
}

/// Like [`create_api_key`], with a chosen lifetime: the key's `expires_at`
/// is `expiry` days after now (in whole days of 24 hours), after which
/// [`authenticate`] refuses it as [`KeyRejection::Expired`] (401);
/// [`ApiKeyExpiry::Never`] stores no expiry. A key with an expiry cannot be
/// rotated (see [`rotate_api_key`]); create a new one.
///
/// Errors: [`BillingError::Database`].
pub async fn create_api_key_expiring(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    name: &ApiKeyName,
    expiry: ApiKeyExpiry,
) -> Result<(ApiKey, PlainApiKey), BillingError> {
    let name = name.as_str();
    let expires_at = expiry
        .days()
        .map(|days| Utc::now() + chrono::Duration::days(i64::from(days)));
    let generated =
        generate_key().map_err(|e| BillingError::Pool(format!("OS RNG unavailable: {e}")))?;
    let key = diesel::insert_into(api_keys::table)
        .values((
            api_keys::customer_id.eq(customer_id),
            api_keys::name.eq(name),
            api_keys::prefix.eq(&generated.prefix),
            api_keys::token_hash.eq(generated.hash.as_slice()),
            api_keys::expires_at.eq(expires_at),
        ))
        .returning(ApiKey::as_returning())
        .get_result(conn)
        .await?;
    Ok((key, generated.plain))
}

/// Why a presented key was not accepted. The JSON API answers 401 for a
/// missing, unknown, revoked or expired key (issue #3: "revoke → 401";
/// ACTION_API.md only suggests statuses) and 403 for a suspended customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyRejection {
    /// No key was presented.
    #[error("missing API key: send it in the x-api-key header")]
    Missing,
    /// The key is not one we issued.
    #[error("invalid API key")]
    Unknown,
    /// The key was revoked.
    #[error("this API key has been revoked; create a new one in the dashboard")]
    Revoked,
    /// The key was rotated and its grace period is over, or it was created
    /// with an expiry that has passed.
    #[error("this API key has expired; use its replacement or create a new key")]
    Expired,
    /// The customer is suspended.
    #[error("this account is suspended; contact support")]
    Suspended,
}

/// A key that passed [`authenticate`], with its customer.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The key's row id.
    pub api_key_id: i64,
    /// The key's customer, as read during authentication.
    pub customer: Customer,
}

/// Verifies a presented key by hash lookup and records its use (at most one
/// write per key per minute, keeping the hot path read-mostly): one
/// indexed read of the key joined to its customer, read on every call so a
/// revocation, rotation or suspension applies to the next request on every
/// instance; plus, when `last_used_at` is older than a minute, one update.
///
/// Errors: `Ok(Err(KeyRejection))` for a key that is not accepted;
/// `Err(BillingError)` when the database fails.
pub async fn authenticate(
    conn: &mut AsyncPgConnection,
    presented: Option<&str>,
) -> Result<Result<Authenticated, KeyRejection>, BillingError> {
    let Some(presented) = presented.map(str::trim).filter(|k| !k.is_empty()) else {
        return Ok(Err(KeyRejection::Missing));
    };
    if !presented.starts_with(KEY_PREFIX) || presented.len() > MAX_KEY_LEN {
        return Ok(Err(KeyRejection::Unknown));
    }
    type Found = (
        i64,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        Customer,
    );
    let found: Option<Found> = api_keys::table
        .inner_join(customers::table)
        .filter(api_keys::token_hash.eq(hash_key(presented).as_slice()))
        .select((
            api_keys::id,
            api_keys::revoked_at,
            api_keys::expires_at,
            api_keys::last_used_at,
            Customer::as_select(),
        ))
        .first(conn)
        .await
        .optional()?;
    let Some((api_key_id, revoked_at, expires_at, last_used_at, customer)) = found else {
        return Ok(Err(KeyRejection::Unknown));
    };
    let now = Utc::now();
    if revoked_at.is_some() {
        return Ok(Err(KeyRejection::Revoked));
    }
    if expires_at.is_some_and(|at| at <= now) {
        return Ok(Err(KeyRejection::Expired));
    }
    if customer.status() == CustomerStatus::Suspended {
        return Ok(Err(KeyRejection::Suspended));
    }
    let a_minute_ago = now - chrono::Duration::minutes(1);
    if last_used_at.is_none_or(|at| at < a_minute_ago) {
        // The filter repeats the test, so concurrent calls write once.
        diesel::update(api_keys::table.find(api_key_id))
            .filter(
                api_keys::last_used_at
                    .is_null()
                    .or(api_keys::last_used_at.lt(a_minute_ago)),
            )
            .set(api_keys::last_used_at.eq(diesel::dsl::now))
            .execute(conn)
            .await?;
    }
    Ok(Ok(Authenticated {
        api_key_id,
        customer,
    }))
}

/// The customer's keys, newest first (revoked and expired ones included,
/// so the portal can show their history).
///
/// Errors: [`BillingError::Database`].
pub async fn list_api_keys(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
) -> Result<Vec<ApiKey>, BillingError> {
    Ok(api_keys::table
        .filter(api_keys::customer_id.eq(customer_id))
        .order(api_keys::id.desc())
        .select(ApiKey::as_select())
        .load(conn)
        .await?)
}

/// How far back the "last 30 days" counts of [`KeyActivity`] reach: the
/// 30 × 24 hours before the moment they are read (the pages say so:
/// [`KeyActivityView::DAYS`]).
pub const ACTIVITY_DAYS: i64 = KeyActivityView::DAYS;

/// What one key has done (issue 14 item 5), as counted by
/// [`list_api_keys_with_activity`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, QueryableByName)]
pub struct KeyActivity {
    /// Fixes whose first report came with this key ([`Fix::api_key_id`]:
    /// later reports of a fix through another key do not count for that
    /// key) and that were first reported within the last
    /// [`ACTIVITY_DAYS`] days (`fixes.created_at`), whatever their billing
    /// status.
    ///
    /// [`Fix::api_key_id`]: crate::server::billing::fixes::Fix::api_key_id
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub fixes_recent: i64,
    /// The same, all time (fixes recorded before keys were recorded, in
    /// 2026-12, belong to no key).
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub fixes_total: i64,
    /// Calls through the AI gateway within the last [`ACTIVITY_DAYS`]
    /// days made with the virtual keys this key obtained (`ai_usage` rows,
    /// each carrying its API key; refused calls after authentication
    /// included, as on `/ai-usage`).
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub ai_calls_recent: i64,
}

impl From<KeyActivity> for KeyActivityView {
    fn from(a: KeyActivity) -> Self {
        Self {
            fixes_recent: a.fixes_recent,
            fixes_total: a.fixes_total,
            ai_calls_recent: a.ai_calls_recent,
        }
    }
}

/// A key and its [`KeyActivity`].
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct KeyWithActivity {
    /// The key.
    #[diesel(embed)]
    pub key: ApiKey,
    /// Its counts.
    #[diesel(embed)]
    pub activity: KeyActivity,
}

/// The customer's keys, newest first (revoked and expired ones included,
/// with their counts), each with what it did ([`KeyActivity`]), as of
/// `now` (the recent counts reach back [`ACTIVITY_DAYS`] days from it).
///
/// One statement: per-key `COUNT … GROUP BY api_key_id` of the customer's
/// fixes (index `fixes_api_key_idx`) and of its `ai_usage` rows since
/// the cut-off (index `ai_usage_customer_day`), joined to its keys. Only
/// rows of `customer_id` are counted, and only for its own keys.
///
/// Errors: [`BillingError::Database`].
pub async fn list_api_keys_with_activity(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    now: DateTime<Utc>,
) -> Result<Vec<KeyWithActivity>, BillingError> {
    use diesel::sql_types::{BigInt, Timestamptz};
    let since = now - chrono::Duration::days(ACTIVITY_DAYS);
    Ok(diesel::sql_query(KEY_ACTIVITY_SQL)
        .bind::<BigInt, _>(customer_id)
        .bind::<Timestamptz, _>(since)
        .load(conn)
        .await?)
}

/// See [`list_api_keys_with_activity`]: `$1` the customer, `$2` the
/// cut-off of the recent counts.
const KEY_ACTIVITY_SQL: &str = "\
WITH f AS (
    SELECT api_key_id,
           count(*) FILTER (WHERE created_at >= $2) AS fixes_recent,
           count(*) AS fixes_total
    FROM fixes
    WHERE customer_id = $1 AND api_key_id IS NOT NULL
    GROUP BY api_key_id
), a AS (
    SELECT api_key_id, count(*) AS ai_calls_recent
    FROM ai_usage
    WHERE customer_id = $1 AND created_at >= $2
    GROUP BY api_key_id
)
SELECT k.id, k.customer_id, k.name, k.prefix, k.created_at, k.last_used_at, k.revoked_at,
       k.expires_at,
       COALESCE(f.fixes_recent, 0)::int8 AS fixes_recent,
       COALESCE(f.fixes_total, 0)::int8 AS fixes_total,
       COALESCE(a.ai_calls_recent, 0)::int8 AS ai_calls_recent
FROM api_keys k
LEFT JOIN f ON f.api_key_id = k.id
LEFT JOIN a ON a.api_key_id = k.id
WHERE k.customer_id = $1
ORDER BY k.id DESC";

/// Locks one of the customer's keys for the rest of the transaction.
/// Another customer's key id reads as not found.
async fn lock_customer_key(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    key_id: i64,
) -> Result<ApiKey, BillingError> {
    api_keys::table
        .filter(api_keys::id.eq(key_id))
        .filter(api_keys::customer_id.eq(customer_id))
        .select(ApiKey::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?
        .ok_or(BillingError::NotFound("API key"))
}

/// Revokes one of the customer's keys, at once: the next API call with it
/// gets 401. Queues an `api_key_revoked` email in the same transaction.
/// Revoking a revoked key changes nothing and returns it as it is. The
/// email's dashboard link starts with `links`.
///
/// Errors: [`BillingError::NotFound`] when `key_id` is not one of this
/// customer's keys (another customer's key included; nothing changes);
/// [`BillingError::Database`].
pub async fn revoke_api_key(
    conn: &mut AsyncPgConnection,
    links: &EmailLinks,
    customer_id: i64,
    key_id: i64,
) -> Result<ApiKey, BillingError> {
    conn.transaction(async |conn| {
        let key = lock_customer_key(conn, customer_id, key_id).await?;
        if key.revoked_at.is_some() {
            return Ok(key);
        }
        let revoked = diesel::update(api_keys::table.find(key.id))
            .set(api_keys::revoked_at.eq(diesel::dsl::now))
            .returning(ApiKey::as_returning())
            .get_result(conn)
            .await?;
        queue_key_email(conn, links, &revoked, KeyEvent::Revoked).await?;
        Ok(revoked)
    })
    .await
}

/// The outcome of [`rotate_api_key`].
#[derive(Debug)]
pub struct Rotated {
    /// The old key, now expiring at `expires_at`.
    pub old: ApiKey,
    /// The replacement (same name).
    pub new: ApiKey,
    /// The replacement's secret, to show once.
    pub plain: PlainApiKey,
}

/// Rotates one of the customer's keys: creates a replacement with the same
/// name and lets the old one keep working until `now + grace` (then the API
/// answers 401 for it). Queues an `api_key_rotated` email in the same
/// transaction (dashboard link from `links`). A `grace` of zero ends the
/// old key at once.
///
/// Errors: [`BillingError::NotFound`] when `key_id` is not one of this
/// customer's keys; [`BillingError::Invalid`] when the key is revoked or was
/// already rotated (nothing changes); [`BillingError::Database`].
pub async fn rotate_api_key(
    conn: &mut AsyncPgConnection,
    links: &EmailLinks,
    customer_id: i64,
    key_id: i64,
    grace: chrono::Duration,
) -> Result<Rotated, BillingError> {
    let grace = grace.max(chrono::Duration::zero());
    conn.transaction(async |conn| {
        let key = lock_customer_key(conn, customer_id, key_id).await?;
        if key.revoked_at.is_some() {
            return Err(BillingError::Invalid(crate::types::values::ParseError(
                "this key is revoked; create a new key instead".into(),
            )));
        }
        if key.expires_at.is_some() {
            return Err(BillingError::Invalid(crate::types::values::ParseError(
                "this key already expires (it was rotated or created with an expiry); \
                 create or rotate another key instead"
                    .into(),
            )));
        }
        let old = diesel::update(api_keys::table.find(key.id))
            .set(api_keys::expires_at.eq(Utc::now() + grace))
            .returning(ApiKey::as_returning())
            .get_result(conn)
            .await?;
        let name = ApiKeyName::parse(&old.name)?;
        let (new, plain) = create_api_key(conn, customer_id, &name).await?;
        queue_key_email(conn, links, &old, KeyEvent::Rotated(&new)).await?;
        Ok(Rotated { old, new, plain })
    })
    .await
}

/// What happened to a key, for [`queue_key_email`].
enum KeyEvent<'a> {
    Revoked,
    /// Rotated; the replacement.
    Rotated(&'a ApiKey),
}

/// Queues the notice about `key` for its customer through the shared
/// templates ([`templates::api_key_revoked`] and
/// [`templates::api_key_rotated`]; one email per key and event, key
/// `<kind>:<key id>`).
async fn queue_key_email(
    conn: &mut AsyncPgConnection,
    links: &EmailLinks,
    key: &ApiKey,
    event: KeyEvent<'_>,
) -> Result<(), BillingError> {
    let contact = CustomerContact::load(conn, key.customer_id).await?;
    let to = contact.recipient();
    let outgoing = match event {
        KeyEvent::Revoked => templates::api_key_revoked(
            links,
            &to,
            &key.name,
            &key.prefix,
            format!("{}:{}", templates::kind::API_KEY_REVOKED, key.id),
        ),
        KeyEvent::Rotated(new) => templates::api_key_rotated(
            links,
            &to,
            &key.name,
            &key.prefix,
            &new.prefix,
            key.expires_at.unwrap_or_else(Utc::now),
            format!("{}:{}", templates::kind::API_KEY_ROTATED, key.id),
        ),
    };
    enqueue_email(conn, &outgoing).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_prefix_enough_entropy_and_distinct_hashes() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        assert!(a.plain.expose().starts_with(KEY_PREFIX));
        assert_eq!(a.plain.expose().len(), KEY_PREFIX.len() + 43);
        assert_eq!(a.prefix, a.plain.expose()[..DISPLAY_PREFIX_LEN]);
        assert_eq!(a.hash, hash_key(a.plain.expose()));
        assert_ne!(a.plain, b.plain);
        assert_ne!(a.hash, b.hash);
        assert_eq!(format!("{:?}", a.plain), "PlainApiKey(<redacted>)");
    }
}

/// The name of the key issued by [`issue_key_at_first_proof`].
pub const FIRST_PROOF_KEY_NAME: &str = "Issued when you confirmed your email";

/// The outcome of [`issue_key_at_first_proof`].
#[derive(Debug)]
pub struct FirstProofKey {
    /// The new key's row.
    pub key: ApiKey,
    /// Its secret, to show once (in the response to the request that
    /// proved the email; never in an email).
    pub plain: PlainApiKey,
    /// How many live keys issued before the proof were revoked (0 for an
    /// account provisioned by a sign-up path, which issues no key).
    pub revoked: usize,
}

/// Claiming an account (ASVS V2 / issue 12 item 5): called once, in the
/// caller's transaction, when the customer's owner proves the email for
/// the first time (invite accepted, email confirmed, password reset by a
/// mailed link). Provisioning issues no key (anyone can sign up with any
/// address), so this is where the owner gets one: a key named
/// [`FIRST_PROOF_KEY_NAME`] is created and returned, to show once. Any
/// live key of `customer_id` (not revoked, not past a rotation's grace)
/// was issued before the proof — e.g. by an admin, or before this rule —
/// so each is revoked (their AI virtual keys stop with them) and an
/// `api_key_reissued` email naming the prefixes (never a key) is queued to
/// `to`; with none, no email. With `issue_when_none_revoked` false and no
/// key revoked, nothing is created and `None` returned (an owner who will
/// create keys in the portal).
///
/// Errors: [`BillingError::Database`]; the OS RNG failing as
/// [`BillingError::Pool`].
pub async fn issue_key_at_first_proof(
    conn: &mut AsyncPgConnection,
    customer_id: i64,
    to: &Recipient<'_>,
    issue_when_none_revoked: bool,
) -> Result<Option<FirstProofKey>, BillingError> {
    let now = Utc::now();
    let revoked: Vec<String> = diesel::update(
        api_keys::table
            .filter(api_keys::customer_id.eq(customer_id))
            .filter(api_keys::revoked_at.is_null())
            .filter(
                api_keys::expires_at
                    .is_null()
                    .or(api_keys::expires_at.gt(now)),
            ),
    )
    .set(api_keys::revoked_at.eq(now))
    .returning(api_keys::prefix)
    .get_results(conn)
    .await?;
    if revoked.is_empty() && !issue_when_none_revoked {
        return Ok(None);
    }
    let name = ApiKeyName::parse(FIRST_PROOF_KEY_NAME)?;
    let (key, plain) = create_api_key(conn, customer_id, &name).await?;
    if !revoked.is_empty() {
        enqueue_email(
            conn,
            &templates::api_key_reissued(
                to,
                revoked.clone(),
                key.prefix.clone(),
                format!("{}:{}", templates::kind::API_KEY_REISSUED, key.id),
            ),
        )
        .await?;
    }
    Ok(Some(FirstProofKey {
        key,
        plain,
        revoked: revoked.len(),
    }))
}
