//! The authorisation matrix over HTTP with real sessions: customers A and
//! B each register, confirm and sign in; with A's session every portal
//! server function and portal route is called with B's ids and is refused
//! (or answers only A's data), nothing of B's changes, and every account
//! server function acts on A alone.
//!
//! The list of server functions is read from the source (`#[server(endpoint
//! = "…")]` in `src/app/**`), so a new one without an entry in [`MATRIX`]
//! fails [`every_server_function_has_an_entry_in_the_matrix`].

use crate::harness::{email, TestApp};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rsolv_platform::server::billing::api_keys::ApiKey;
use rsolv_platform::server::db::schema::{api_keys, sessions, users};
use serde_json::{json, Value};
use std::path::Path;

pub(crate) const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "another horse battery";

/// Every server function's endpoint and how this file covers it.
const MATRIX: &[(&str, &str)] = &[
    // Portal: session-scoped, checked with B's ids below.
    ("portal/dashboard", "A's balance and name only"),
    ("portal/ledger", "A's rows only"),
    ("portal/keys", "A's keys only"),
    ("portal/keys/create", "creates for A only"),
    ("portal/keys/revoke", "B's key id: 404, B's key still works"),
    ("portal/keys/rotate", "B's key id: 404, B's key not rotated"),
    // Billing: session-scoped; card ids of B read as not found (billing.rs).
    ("portal/billing", "A's plan and cards only"),
    ("portal/billing/setup-intent", "A's Stripe Customer only"),
    (
        "portal/billing/cards/add",
        "B's SetupIntent: 404 (billing.rs)",
    ),
    (
        "portal/billing/cards/default",
        "B's card id: 404 (billing.rs)",
    ),
    (
        "portal/billing/cards/remove",
        "B's card id: 404 (billing.rs)",
    ),
    ("portal/billing/subscribe", "subscribes A only"),
    ("portal/billing/cancel", "cancels A's subscription only"),
    ("portal/billing/resume", "resumes A's subscription only"),
    ("portal/billing/history", "A's invoices and charges only"),
    (
        "portal/billing/authenticate",
        "B's charge id: 404, as a missing one (billing.rs)",
    ),
    (
        "portal/billing/authenticate/begin",
        "B's charge id: 404, no client secret (billing.rs)",
    ),
    (
        "portal/billing/authenticate/complete",
        "B's charge id: 404, nothing settled (billing.rs)",
    ),
    (
        "portal/ai-usage",
        "A's AI usage and budget only (ai_pages.rs)",
    ),
    // Account: session-scoped, act on the session's user only.
    ("current_user", "answers A"),
    ("logout", "ends A's session only"),
    ("logout_all", "ends A's sessions only"),
    ("change_password", "changes A's password only"),
    // Public: no session involved; they act on what their input names.
    ("register", "public: creates the named account"),
    ("confirm_email", "public: token-scoped"),
    ("login", "public: credentials-scoped"),
    ("forgot_password", "public: mails the named address only"),
    (
        "reset_password",
        "public: token-scoped; A's session cannot use it without B's token",
    ),
    (
        "accept_invite",
        "public: token-scoped; A's session cannot use it without B's token",
    ),
    ("signup", "public: creates a new customer"),
    ("signup_mode", "public: reads the signup flags only"),
    // A staff admin's second factor: acts only on the session's own pending
    // sign-in step; 401 for every other session (admin_security.rs).
    ("2fa/status", "pending step only: 401 otherwise"),
    ("2fa/verify", "pending step only: 401 otherwise"),
    // Admin console: staff admins only; a customer session gets 403 and no
    // session 401 ([`customer_sessions_get_403_from_every_admin_function`]).
    ("admin/customers", "staff only: 403 for customers"),
    ("admin/customer", "staff only: 403 for customers"),
    (
        "admin/customer/portal",
        "staff only: 403, nothing shown, no audit",
    ),
    (
        "admin/customers/provision",
        "staff only: 403, nothing provisioned",
    ),
    ("admin/credits/adjust", "staff only: 403, balance unchanged"),
    ("admin/fixes/write-off", "staff only: 403, fix still unpaid"),
    (
        "admin/fixes/retry-charge",
        "staff only: 403, no charge, no audit",
    ),
    ("admin/customers/suspend", "staff only: 403, still active"),
    (
        "admin/customers/reactivate",
        "staff only: 403 for customers",
    ),
    ("admin/keys/revoke", "staff only: 403, key still works"),
    ("admin/events", "staff only: 403 for customers"),
    ("admin/events/replay", "staff only: 403 for customers"),
    ("admin/events/get", "staff only: 403, no payload shown"),
    ("admin/deliveries", "staff only: 403 for customers"),
    ("admin/emails", "staff only: 403 for customers"),
    ("admin/emails/resend", "staff only: 403 for customers"),
    ("admin/emails/get", "staff only: 403, no body shown"),
    ("admin/jobs", "staff only: 403 for customers"),
    ("admin/jobs/retry", "staff only: 403, job stays dead"),
    ("admin/jobs/retry-kind", "staff only: 403, jobs stay dead"),
    ("admin/reconciliation", "staff only: 403 for customers"),
    ("admin/reconciliation/run", "staff only: 403, no run queued"),
    (
        "admin/reconciliation/repair",
        "staff only: 403, nothing granted",
    ),
    ("admin/flags", "staff only: 403 for customers"),
    ("admin/flags/set", "staff only: 403, flag unchanged"),
    ("admin/audit", "staff only: 403 for customers"),
    ("admin/signups", "staff only: 403 for customers"),
    ("admin/signups/approve", "staff only: 403 for customers"),
    ("admin/signups/reject", "staff only: 403 for customers"),
    ("admin/admins", "staff only: 403 for customers"),
    ("admin/admins/invite", "staff only: 403, no admin created"),
    (
        "admin/admins/deactivate",
        "staff only: 403, nobody deactivated (admin_security.rs)",
    ),
    ("admin/admins/reactivate", "staff only: 403 for customers"),
    ("admin/ai-usage/top", "staff only: 403 for customers"),
    ("admin/ai-budget/set", "staff only: 403, no budget stored"),
];

/// Every admin server function with arguments that would succeed for a
/// staff admin (`{customer}`, `{key}` are replaced by the caller's own ids).
pub(crate) const ADMIN_CALLS: &[(&str, &[(&str, &str)])] = &[
    ("admin/customers", &[("q", "")]),
    ("admin/customer", &[("customer_id", "{customer}")]),
    (
        "admin/customer/portal",
        &[("customer_id", "{customer}"), ("section", "keys")],
    ),
    (
        "admin/customers/provision",
        &[
            ("email", "sneaky-provision@example.com"),
            ("name", "Sneaky"),
            ("source", "direct"),
        ],
    ),
    (
        "admin/credits/adjust",
        &[
            ("customer_id", "{customer}"),
            ("amount", "1000"),
            ("reason", "free money"),
            ("form_token", "attacker-token"),
        ],
    ),
    (
        "admin/fixes/write-off",
        &[
            ("customer_id", "{customer}"),
            ("fix_id", "1"),
            ("reason", "x"),
        ],
    ),
    (
        "admin/fixes/retry-charge",
        &[
            ("customer_id", "{customer}"),
            ("fix_id", "1"),
            ("form_token", "attacker-token"),
        ],
    ),
    (
        "admin/customers/suspend",
        &[("customer_id", "{customer}"), ("reason", "x")],
    ),
    (
        "admin/customers/reactivate",
        &[("customer_id", "{customer}"), ("reason", "x")],
    ),
    (
        "admin/keys/revoke",
        &[
            ("customer_id", "{customer}"),
            ("key_id", "{key}"),
            ("reason", "x"),
        ],
    ),
    ("admin/events", &[]),
    ("admin/events/replay", &[("event_id", "evt_x")]),
    ("admin/events/get", &[("source", "stripe"), ("id", "evt_x")]),
    ("admin/deliveries", &[]),
    ("admin/emails", &[]),
    ("admin/emails/resend", &[("email_id", "1")]),
    ("admin/emails/get", &[("email_id", "1")]),
    ("admin/jobs", &[]),
    ("admin/jobs/retry", &[("job_id", "1")]),
    ("admin/jobs/retry-kind", &[("kind", "stripe.charge")]),
    ("admin/reconciliation", &[]),
    ("admin/reconciliation/run", &[]),
    ("admin/reconciliation/repair", &[("finding_id", "1")]),
    ("admin/flags", &[]),
    (
        "admin/flags/set",
        &[
            ("key", "maintenance"),
            ("enabled", "true"),
            ("reason", "drill"),
        ],
    ),
    ("admin/audit", &[]),
    ("admin/signups", &[]),
    ("admin/signups/approve", &[("request_id", "1")]),
    (
        "admin/signups/reject",
        &[("request_id", "1"), ("reason", "x")],
    ),
    ("admin/admins", &[]),
    (
        "admin/admins/invite",
        &[("email", "sneaky-admin@example.com")],
    ),
    (
        "admin/admins/deactivate",
        &[("user_id", "1"), ("reason", "takeover")],
    ),
    (
        "admin/admins/reactivate",
        &[("user_id", "1"), ("reason", "takeover")],
    ),
    ("admin/ai-usage/top", &[]),
    (
        "admin/ai-budget/set",
        &[
            ("customer_id", "{customer}"),
            ("daily_tokens", "0"),
            ("max_concurrent", "0"),
            ("reason", "unlimited for me"),
        ],
    ),
];

#[tokio::test]
async fn customer_sessions_get_403_from_every_admin_function() {
    let app = TestApp::spawn().await;
    let a = signed_in(&app, &email("authz-admin-a"), "Customer A").await;
    let (customer, key) = (a.customer_id.to_string(), a.key_id.to_string());
    let mut conn = app.conn().await;
    let balance_before = app.balance_and_ledger_sum(a.customer_id).await;
    let admin_fns: Vec<&str> = MATRIX
        .iter()
        .map(|(e, _)| *e)
        .filter(|e| e.starts_with("admin/"))
        .collect();
    let called: Vec<&str> = ADMIN_CALLS.iter().map(|(e, _)| *e).collect();
    assert_eq!(admin_fns, called, "every admin function is called below");
    for (endpoint, fields) in ADMIN_CALLS {
        let fields: Vec<(&str, String)> = fields
            .iter()
            .map(|(k, v)| {
                (
                    *k,
                    v.replace("{customer}", &customer).replace("{key}", &key),
                )
            })
            .collect();
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, _, body) = app.server_fn(&a.browser, endpoint, &fields).await;
        assert_eq!(status, 403, "{endpoint} with a customer session: {body}");
        let (status, _, body) = app.server_fn(&app.browser(), endpoint, &fields).await;
        assert_eq!(status, 401, "{endpoint} without a session: {body}");
    }
    // Nothing changed.
    assert_eq!(
        app.balance_and_ledger_sum(a.customer_id).await,
        balance_before
    );
    assert_eq!(exchange(&app, &a.key).await, 200);
    assert_eq!(app.count("admin_audit_log").await, 0);
    assert_eq!(app.count("feature_flags").await, 0);
    assert_eq!(app.count("ai_budgets").await, 0);
    let staff: i64 = users::table
        .filter(users::role.eq("staff_admin"))
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(staff, 0);
    assert!(keys_of(&mut conn, a.customer_id)
        .await
        .iter()
        .all(|k| k.revoked_at.is_none()));
}

/// The endpoints of every `#[server(endpoint = "…")]` under `dir`.
fn endpoints_in(dir: &Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            endpoints_in(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines().map(str::trim) {
                // `#[server(default)]` marks an argument, not a function.
                if !line.starts_with("#[server") || line.starts_with("#[server(default)]") {
                    continue;
                }
                let start = line.find("endpoint = \"").unwrap_or_else(|| {
                    panic!(
                        "{}: a server function without an endpoint: {line}",
                        path.display()
                    )
                }) + "endpoint = \"".len();
                let end = line[start..].find('"').unwrap() + start;
                found.push(line[start..end].to_owned());
            }
        }
    }
}

#[test]
fn every_server_function_has_an_entry_in_the_matrix() {
    let mut found = Vec::new();
    endpoints_in(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/app"),
        &mut found,
    );
    found.sort();
    let mut listed: Vec<String> = MATRIX.iter().map(|(e, _)| (*e).to_owned()).collect();
    listed.sort();
    assert!(
        found.len() >= 17,
        "the scan finds the server functions: {found:?}"
    );
    assert_eq!(
        found, listed,
        "every server function in src/app needs an entry in MATRIX (tests/it/authz.rs)"
    );
}

/// A signed-in customer: their browser, email, customer id and an API key
/// created through the portal.
pub(crate) struct Customer {
    pub(crate) browser: reqwest::Client,
    pub(crate) email: String,
    pub(crate) customer_id: i64,
    pub(crate) key_id: i64,
    pub(crate) key: String,
}

/// Registers, confirms and signs in `address` named `name`, then creates
/// an API key through the portal.
pub(crate) async fn signed_in(app: &TestApp, address: &str, name: &str) -> Customer {
    let browser = app.browser();
    let (status, _, body) = app
        .server_fn(
            &browser,
            "register",
            &[
                ("email", address),
                ("name", name),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let token = app.mailed_token(address, "email_confirmation").await;
    let (status, _, body) = app
        .server_fn(
            &browser,
            "confirm_email",
            &[("token", &token), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, location, body) = app
        .server_fn(
            &browser,
            "login",
            &[("email", address), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(location.as_deref(), Some("/dashboard"));
    let (status, _, body) = app
        .server_fn(&browser, "portal/keys/create", &[("name", name)])
        .await;
    assert_eq!(status, 200, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    let mut conn = app.conn().await;
    let customer_id = users::table
        .filter(users::email.eq(address))
        .select(users::customer_id.assume_not_null())
        .first(&mut conn)
        .await
        .unwrap();
    Customer {
        browser,
        email: address.to_owned(),
        customer_id,
        key_id: created["key"]["id"].as_i64().unwrap(),
        key: created["secret"].as_str().unwrap().to_owned(),
    }
}

async fn keys_of(conn: &mut AsyncPgConnection, customer_id: i64) -> Vec<ApiKey> {
    api_keys::table
        .filter(api_keys::customer_id.eq(customer_id))
        .order(api_keys::id.asc())
        .select(ApiKey::as_select())
        .load(conn)
        .await
        .unwrap()
}

async fn sessions_of(conn: &mut AsyncPgConnection, address: &str) -> i64 {
    sessions::table
        .inner_join(users::table)
        .filter(users::email.eq(address))
        .count()
        .get_result(conn)
        .await
        .unwrap()
}

async fn exchange(app: &TestApp, key: &str) -> u16 {
    app.post_json(
        "/api/v1/credentials/exchange",
        Some(key),
        &json!({"providers": ["anthropic"]}),
    )
    .await
    .0
}

/// The email `current_user` answers for `browser`'s session.
async fn current_email(app: &TestApp, browser: &reqwest::Client) -> Option<String> {
    let (status, _, body) = app.server_fn(browser, "current_user", &[]).await;
    assert_eq!(status, 200, "{body}");
    let user: Value = serde_json::from_str(&body).unwrap();
    user["email"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn a_session_reaches_only_its_own_customer() {
    let app = TestApp::spawn().await;
    let a = signed_in(&app, &email("authz-a"), "Alice").await;
    let b = signed_in(&app, &email("authz-b"), "Bobby").await;
    assert_ne!(a.customer_id, b.customer_id);
    let mut conn = app.conn().await;
    assert_eq!(exchange(&app, &b.key).await, 200);
    let b_keys_before = keys_of(&mut conn, b.customer_id).await;
    let b_balance_before = app.balance_and_ledger_sum(b.customer_id).await;

    // Revoke and rotate B's key with A's session: not found.
    for endpoint in ["portal/keys/revoke", "portal/keys/rotate"] {
        let (status, _, body) = app
            .server_fn(&a.browser, endpoint, &[("key_id", &b.key_id.to_string())])
            .await;
        assert_eq!(status, 404, "{endpoint}: {body}");
        assert!(!body.contains(&b.key), "{endpoint}");
    }

    // Listing: A's keys only.
    let (status, _, body) = app.server_fn(&a.browser, "portal/keys", &[]).await;
    assert_eq!(status, 200, "{body}");
    let listed: Vec<Value> = serde_json::from_str(&body).unwrap();
    let mut listed: Vec<i64> = listed.iter().map(|k| k["id"].as_i64().unwrap()).collect();
    listed.sort_unstable();
    let a_keys: Vec<i64> = keys_of(&mut conn, a.customer_id)
        .await
        .iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(listed, a_keys, "{body}");
    assert!(listed.contains(&a.key_id));

    // Creating: for A.
    let (status, _, body) = app
        .server_fn(&a.browser, "portal/keys/create", &[("name", "second")])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        keys_of(&mut conn, a.customer_id).await.len(),
        a_keys.len() + 1
    );

    // Dashboard: A's.
    let (status, _, body) = app.server_fn(&a.browser, "portal/dashboard", &[]).await;
    assert_eq!(status, 200, "{body}");
    let dashboard: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(dashboard["name"], "Alice", "{body}");
    assert_eq!(
        dashboard["credit_balance"],
        app.balance_and_ledger_sum(a.customer_id).await.0
    );

    // Ledger: A's rows only (B's would make the total larger).
    let (status, _, body) = app
        .server_fn(&a.browser, "portal/ledger", &[("kind", "")])
        .await;
    assert_eq!(status, 200, "{body}");
    let ledger: Value = serde_json::from_str(&body).unwrap();
    let a_rows = ledger["total"].as_i64().unwrap();
    assert!(a_rows >= 1, "{body}");
    let a_sum: i64 = ledger["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["amount"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(
        a_sum,
        app.balance_and_ledger_sum(a.customer_id).await.1,
        "{body}"
    );

    // CSV export: A's rows only (a header and A's rows).
    let response = a
        .browser
        .get(app.url("/credits/export.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let csv = response.text().await.unwrap();
    assert_eq!(csv.lines().count() as i64, a_rows + 1, "{csv}");

    // The no-JavaScript forms: rotate B's key refused, create creates for A.
    let response = a
        .browser
        .post(app.url("/keys/rotate"))
        .header("origin", &app.base)
        .form(&[("key_id", b.key_id.to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let html = response.text().await.unwrap();
    assert!(!html.contains(r#"data-testid="new-api-key""#));
    let response = a
        .browser
        .post(app.url("/keys/create"))
        .header("origin", &app.base)
        .form(&[("name", "form")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        keys_of(&mut conn, a.customer_id).await.len(),
        a_keys.len() + 2
    );

    // Nothing of B's changed; B's key still works.
    assert_eq!(keys_of(&mut conn, b.customer_id).await, b_keys_before);
    assert_eq!(
        app.balance_and_ledger_sum(b.customer_id).await,
        b_balance_before
    );
    assert_eq!(exchange(&app, &b.key).await, 200);
    assert_eq!(exchange(&app, &a.key).await, 200);

    // Account functions act on A alone.
    assert_eq!(current_email(&app, &a.browser).await, Some(a.email.clone()));
    assert_eq!(current_email(&app, &b.browser).await, Some(b.email.clone()));

    // Reset links are token-scoped: A's session with no or a bogus token
    // changes nobody's password.
    for endpoint in ["reset_password", "accept_invite"] {
        let (status, _, body) = app
            .server_fn(
                &a.browser,
                endpoint,
                &[
                    ("token", "not-a-token"),
                    ("password", NEW_PASSWORD),
                    ("password_confirm", NEW_PASSWORD),
                ],
            )
            .await;
        assert_eq!(status, 422, "{endpoint}: {body}");
    }

    let (status, _, body) = app
        .server_fn(
            &a.browser,
            "change_password",
            &[
                ("current_password", PASSWORD),
                ("new_password", NEW_PASSWORD),
                ("new_password_confirm", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // B still signs in with the old password, A only with the new one.
    let probe = app.browser();
    let (status, _, body) = app
        .server_fn(
            &probe,
            "login",
            &[("email", &b.email), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let probe = app.browser();
    let (status, _, _) = app
        .server_fn(
            &probe,
            "login",
            &[("email", &a.email), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(status, 422);

    let b_sessions = sessions_of(&mut conn, &b.email).await;
    let (status, _, body) = app.server_fn(&a.browser, "logout_all", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(sessions_of(&mut conn, &a.email).await, 0);
    assert_eq!(sessions_of(&mut conn, &b.email).await, b_sessions);
    assert_eq!(current_email(&app, &b.browser).await, Some(b.email.clone()));
    assert_eq!(current_email(&app, &a.browser).await, None);

    let (status, _, body) = app.server_fn(&b.browser, "logout", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(current_email(&app, &b.browser).await, None);
    // B's API key outlives B's sessions.
    assert_eq!(exchange(&app, &b.key).await, 200);
}
