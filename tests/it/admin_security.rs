//! Staff admins' security (issue 12, item 6; README § Security, "Admins"):
//! TOTP second factor with enrolment at first sign-in, one-time recovery
//! codes, replay and guessing refused; deactivation ending sessions at
//! once; session idle timeout and absolute lifetime; kill-switch reasons;
//! `/admin` pages redirecting everyone but signed-in admins; `next` kept
//! local.

use crate::authz::{signed_in, ADMIN_CALLS, PASSWORD};
use crate::harness::{email, totp_code, totp_code_at, TestApp, ADMIN_PASSWORD};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rsolv_platform::server::db::schema::{admin_recovery_codes, admin_totp, sessions};
use serde_json::{json, Value};

/// Sessions stored for `user_id` (signed in or half-way).
async fn sessions_of(app: &TestApp, user_id: i64) -> i64 {
    sessions::table
        .filter(sessions::user_id.eq(user_id))
        .count()
        .get_result(&mut app.conn().await)
        .await
        .unwrap()
}

/// `GET path` with `browser` (no redirects followed): status, Location.
async fn get(app: &TestApp, browser: &reqwest::Client, path: &str) -> (u16, Option<String>) {
    let response = browser.get(app.url(path)).send().await.unwrap();
    (
        response.status().as_u16(),
        response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned()),
    )
}

/// Sets `field` of the `sign_in` record of every session of `user_id` to
/// `value` (Unix seconds): the clock moved without sleeping.
async fn set_sign_in_time(app: &TestApp, user_id: i64, field: &str, value: i64) {
    let updated = diesel::sql_query(format!(
        "UPDATE sessions SET data = jsonb_set(data, '{{sign_in,{field}}}', to_jsonb($1::bigint)) \
         WHERE user_id = $2 AND data ? 'sign_in'"
    ))
    .bind::<diesel::sql_types::BigInt, _>(value)
    .bind::<diesel::sql_types::BigInt, _>(user_id)
    .execute(&mut app.conn().await)
    .await
    .unwrap();
    assert!(updated >= 1, "a signed-in session of user {user_id}");
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn totp_enrolment_then_sign_in_with_a_code_and_wrong_or_replayed_codes_refused() {
    let app = TestApp::spawn().await;
    let address = email("totp-admin");
    let admin = app.enrolled_admin(&address).await;
    // Enrolled: ten recovery codes, stored as SHA-256 only.
    assert_eq!(admin.recovery_codes.len(), 10);
    let hashes: Vec<Vec<u8>> = admin_recovery_codes::table
        .filter(admin_recovery_codes::user_id.eq(admin.user_id))
        .select(admin_recovery_codes::code_hash)
        .load(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(hashes.len(), 10);
    assert!(hashes.iter().all(|h| h.len() == 32));
    for code in &admin.recovery_codes {
        assert!(hashes
            .iter()
            .all(|h| !String::from_utf8_lossy(h).contains(code.as_str())));
    }
    let (status, body) = app.admin_fn(&admin.browser, "flags", &[]).await;
    assert_eq!(status, 200, "{body}");
    // A fully signed-in admin still has no customer: the portal refuses.
    let (status, _, _) = app.server_fn(&admin.browser, "portal/dashboard", &[]).await;
    assert_eq!(status, 403);

    // The next sign-in asks for a code, with no enrolment shown.
    let browser = app.admin_password_step(&address).await;
    let (status, _, body) = app.server_fn(&browser, "2fa/status", &[]).await;
    assert_eq!(status, 200, "{body}");
    let view: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["enrolment"], Value::Null);
    assert_eq!(view["email"], json!(address));
    // Not signed in before the code.
    let (status, _) = app.admin_fn(&browser, "flags", &[]).await;
    assert_eq!(status, 401);
    // A code outside the ±1 step window is wrong.
    let (status, _, body) = app
        .second_factor(&browser, &totp_code(&admin.secret, 5))
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("incorrect or already used code"), "{body}");
    // The code the enrolment used is used up; the next step's code (within
    // the skew) signs in and goes to /admin.
    let (status, _, _) = app.second_factor(&browser, &admin.enrolment_code).await;
    assert_eq!(status, 422, "the enrolment's code cannot be replayed");
    let next_at = now() + 30;
    let next_code = totp_code_at(&admin.secret, next_at);
    let (status, location, body) = app.second_factor(&browser, &next_code).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(location.as_deref(), Some("/admin"));
    let (status, body) = app.admin_fn(&browser, "flags", &[]).await;
    assert_eq!(status, 200, "{body}");
    let last_step: Option<i64> = admin_totp::table
        .find(admin.user_id)
        .select(admin_totp::last_used_step)
        .first(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(last_step, Some(next_at / 30));

    // The same code again, from another sign-in: refused (replay).
    let replay = app.admin_password_step(&address).await;
    let (status, _, body) = app.second_factor(&replay, &next_code).await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = app.admin_fn(&replay, "flags", &[]).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_recovery_code_signs_in_once() {
    let app = TestApp::spawn().await;
    let address = email("recovery-admin");
    let admin = app.enrolled_admin(&address).await;
    let code = admin.recovery_codes[3].clone();
    let browser = app.admin_password_step(&address).await;
    // Typed in capitals and without dashes: still the code.
    let typed = code.replace('-', "").to_uppercase();
    let (status, location, body) = app.second_factor(&browser, &typed).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(location.as_deref(), Some("/admin"));
    let (status, _) = app.admin_fn(&browser, "flags", &[]).await;
    assert_eq!(status, 200);
    let used: i64 = admin_recovery_codes::table
        .filter(admin_recovery_codes::user_id.eq(admin.user_id))
        .filter(admin_recovery_codes::used_at.is_not_null())
        .count()
        .get_result(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(used, 1);
    // Used up.
    let again = app.admin_password_step(&address).await;
    let (status, _, body) = app.second_factor(&again, &code).await;
    assert_eq!(status, 422, "{body}");
    // Another admin's codes are not this admin's.
    let other = app.enrolled_admin(&email("recovery-other")).await;
    let (status, _, _) = app.second_factor(&again, &other.recovery_codes[0]).await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn wrong_codes_count_toward_the_sign_in_throttle() {
    let app = TestApp::spawn().await;
    let address = email("guess-admin");
    let admin = app.enrolled_admin(&address).await;
    let browser = app.admin_password_step(&address).await;
    for _ in 0..5 {
        let (status, _, body) = app
            .second_factor(&browser, &totp_code(&admin.secret, 9))
            .await;
        assert_eq!(status, 422, "{body}");
    }
    // Blocked now: even the right code is refused, and so is the password.
    let (status, _, body) = app
        .second_factor(&browser, &totp_code(&admin.secret, 1))
        .await;
    assert_eq!(status, 429, "{body}");
    let (status, _) = app.admin_fn(&browser, "flags", &[]).await;
    assert_eq!(status, 401);
    let (status, _, _) = app
        .server_fn(
            &app.browser(),
            "login",
            &[("email", &address), ("password", ADMIN_PASSWORD)],
        )
        .await;
    assert_eq!(status, 429);
}

#[tokio::test]
async fn an_admin_without_the_second_factor_reaches_no_admin_function() {
    let app = TestApp::spawn().await;
    let address = email("half-admin");
    app.create_staff_admin(&address).await;
    let browser = app.admin_password_step(&address).await;
    // Not enrolled yet: the enrolment shows a secret; every admin function
    // answers 401 (not signed in), as to a stranger (authz.rs).
    let (status, _, body) = app.server_fn(&browser, "2fa/status", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("otpauth://totp/"), "{body}");
    for (endpoint, fields) in ADMIN_CALLS {
        let fields: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (*k, if v.starts_with('{') { "1" } else { *v }))
            .collect();
        let (status, _, body) = app.server_fn(&browser, endpoint, &fields).await;
        assert_eq!(status, 401, "{endpoint} before the second factor: {body}");
    }
    // Every admin page leads to the second factor's page, which renders.
    for path in ["/admin", "/admin/flags", "/admin/admins"] {
        let (status, location) = get(&app, &browser, path).await;
        assert_eq!(
            (status, location.as_deref()),
            (303, Some("/admin/2fa")),
            "{path}"
        );
    }
    let (status, _) = get(&app, &browser, "/admin/2fa").await;
    assert_eq!(status, 200);
    // The second-factor functions act on a pending step only.
    let customer = signed_in(&app, &email("half-customer"), "Customer").await;
    for client in [&customer.browser, &app.browser()] {
        for endpoint in ["2fa/status", "2fa/verify"] {
            let (status, _, body) = app.server_fn(client, endpoint, &[("code", "123456")]).await;
            assert_eq!(status, 401, "{endpoint}: {body}");
        }
    }
    let (status, location) = get(&app, &app.browser(), "/admin/2fa").await;
    assert_eq!(status, 303);
    assert!(location.unwrap().starts_with("/login?next="));
}

#[tokio::test]
async fn deactivating_an_admin_ends_their_sessions_at_once_and_is_audited() {
    use rsolv_platform::server::admin::staff::set_admin_active;
    use rsolv_platform::server::admin::Admin;
    let app = TestApp::spawn().await;
    let a = app.enrolled_admin(&email("deact-a")).await;
    let b_address = email("deact-b");
    let b = app.enrolled_admin(&b_address).await;
    let b_pending = app.admin_password_step(&b_address).await;
    assert_eq!(sessions_of(&app, b.user_id).await, 2);
    let b_id = b.user_id.to_string();
    // A reason is required.
    let (status, _) = app
        .admin_fn(
            &a.browser,
            "admins/deactivate",
            &[("user_id", &b_id), ("reason", " ")],
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(sessions_of(&app, b.user_id).await, 2);
    let (status, body) = app
        .admin_fn(
            &a.browser,
            "admins/deactivate",
            &[("user_id", &b_id), ("reason", "left the company")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // B's sessions are gone, the pending one too: at once, not at expiry.
    assert_eq!(sessions_of(&app, b.user_id).await, 0);
    let (status, _) = app.admin_fn(&b.browser, "flags", &[]).await;
    assert_eq!(status, 401);
    let (status, _, _) = app
        .second_factor(&b_pending, &totp_code(&b.secret, 1))
        .await;
    assert_eq!(status, 401);
    // B cannot sign in: the same answer as a wrong password.
    let (status, _, body) = app
        .server_fn(
            &app.browser(),
            "login",
            &[("email", &b_address), ("password", ADMIN_PASSWORD)],
        )
        .await;
    assert_eq!(status, 422);
    assert!(body.contains("incorrect email or password"), "{body}");
    let audit = app.audit_entries("admin.deactivate").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].1.as_deref(), Some(b_id.as_str()));
    assert_eq!(audit[0].2.as_deref(), Some("left the company"));
    assert_eq!(audit[0].4.as_ref().unwrap()["sessions_ended"], json!(2));
    let (status, list) = app.admin_fn(&a.browser, "admins", &[]).await;
    assert_eq!(status, 200);
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == json!(b.user_id))
        .unwrap();
    assert_eq!(
        (row["deactivated"].clone(), row["two_factor"].clone()),
        (json!(true), json!(true))
    );

    // Not oneself; not the last active admin (A is now the only one).
    let a_id = a.user_id.to_string();
    let (status, body) = app
        .admin_fn(
            &a.browser,
            "admins/deactivate",
            &[("user_id", &a_id), ("reason", "oops")],
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let refused =
        set_admin_active(&mut app.conn().await, &Admin::cli(), a.user_id, false, "x").await;
    assert!(refused.is_err(), "the last active admin stays");
    assert_eq!(app.audit_entries("admin.deactivate").await.len(), 1);

    // Reactivated (audited), B signs in again with password and code.
    let (status, body) = app
        .admin_fn(
            &a.browser,
            "admins/reactivate",
            &[("user_id", &b_id), ("reason", "back")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        app.audit_entries("admin.reactivate").await[0].2.as_deref(),
        Some("back")
    );
    let browser = app.admin_password_step(&b_address).await;
    let (status, _, body) = app.second_factor(&browser, &totp_code(&b.secret, 1)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn sessions_end_after_the_absolute_lifetime_or_the_idle_timeout() {
    let app = TestApp::spawn_with(&[
        ("SESSION_ABSOLUTE_LIFETIME_SECONDS", "3600"),
        ("SESSION_IDLE_TIMEOUT_SECONDS", "600"),
        ("ADMIN_SESSION_ABSOLUTE_LIFETIME_SECONDS", "1800"),
        ("ADMIN_SESSION_IDLE_TIMEOUT_SECONDS", "300"),
    ])
    .await;
    let current = async |browser: &reqwest::Client| -> Value {
        let (status, _, body) = app.server_fn(browser, "current_user", &[]).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let user_id_of = async |address: &str| -> i64 {
        use rsolv_platform::server::db::schema::users;
        users::table
            .filter(users::email.eq(address))
            .select(users::id)
            .first(&mut app.conn().await)
            .await
            .unwrap()
    };
    // Absolute: active a minute ago, signed in just under the lifetime ago:
    // still in; just over: signed out and the row deleted.
    let old = signed_in(&app, &email("life-abs"), "Old").await;
    let old_id = user_id_of(&old.email).await;
    set_sign_in_time(&app, old_id, "seen", now() - 60).await;
    set_sign_in_time(&app, old_id, "at", now() - 3500).await;
    assert_ne!(current(&old.browser).await, Value::Null);
    set_sign_in_time(&app, old_id, "seen", now() - 60).await;
    set_sign_in_time(&app, old_id, "at", now() - 3601).await;
    assert_eq!(current(&old.browser).await, Value::Null);
    assert_eq!(sessions_of(&app, old_id).await, 0);
    // Idle: no request for longer than the idle timeout.
    let idle = signed_in(&app, &email("life-idle"), "Idle").await;
    let idle_id = user_id_of(&idle.email).await;
    set_sign_in_time(&app, idle_id, "seen", now() - 601).await;
    assert_eq!(current(&idle.browser).await, Value::Null);
    // A session from before lifetimes were recorded (no sign-in time).
    let legacy = signed_in(&app, &email("life-legacy"), "Legacy").await;
    let legacy_id = user_id_of(&legacy.email).await;
    diesel::sql_query("UPDATE sessions SET data = data - 'sign_in' WHERE user_id = $1")
        .bind::<diesel::sql_types::BigInt, _>(legacy_id)
        .execute(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(current(&legacy.browser).await, Value::Null);
    // Admins: their own, shorter, lifetimes.
    let admin = app.enrolled_admin(&email("life-admin")).await;
    set_sign_in_time(&app, admin.user_id, "at", now() - 1700).await;
    let (status, _) = app.admin_fn(&admin.browser, "flags", &[]).await;
    assert_eq!(status, 200);
    set_sign_in_time(&app, admin.user_id, "at", now() - 1801).await;
    let (status, _) = app.admin_fn(&admin.browser, "flags", &[]).await;
    assert_eq!(status, 401);
    let idle_admin = app.enrolled_admin(&email("life-admin-idle")).await;
    set_sign_in_time(&app, idle_admin.user_id, "seen", now() - 301).await;
    let (status, _) = app.admin_fn(&idle_admin.browser, "flags", &[]).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_kill_switch_needs_a_reason_which_is_audited() {
    let app = TestApp::spawn().await;
    let admin = app.admin_browser(&email("switch-admin")).await;
    for reason in ["", "   ", &"x".repeat(501)] {
        let (status, body) = app
            .admin_fn(
                &admin,
                "flags/set",
                &[
                    ("key", "billing_enabled"),
                    ("enabled", "false"),
                    ("reason", reason),
                ],
            )
            .await;
        assert_eq!(status, 422, "{body}");
    }
    let (status, _) = app
        .admin_fn(
            &admin,
            "flags/set",
            &[("key", "billing_enabled"), ("enabled", "false")],
        )
        .await;
    assert_eq!(status, 422);
    assert!(app.audit_entries("flag.set").await.is_empty());
    let (_, flags) = app.admin_fn(&admin, "flags", &[]).await;
    let billing = flags
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == json!("billing_enabled"))
        .unwrap()
        .clone();
    assert_eq!(billing["on"], json!(true), "unchanged without a reason");
    let (status, body) = app
        .admin_fn(
            &admin,
            "flags/set",
            &[
                ("key", "billing_enabled"),
                ("enabled", "false"),
                ("reason", "Stripe incident INC-42"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let audit = app.audit_entries("flag.set").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].2.as_deref(), Some("Stripe incident INC-42"));
    // The reason is a plain form field of the page's confirmation step (no
    // JavaScript needed; see admin_console.rs).
    let html = app
        .html(&admin, "/admin/flags?confirm=billing_enabled&to=on")
        .await;
    assert!(
        html.contains(r#"name="reason""#),
        "the flag's confirmation step has a reason field"
    );
}

#[tokio::test]
async fn admin_pages_redirect_the_signed_out_and_customers() {
    let app = TestApp::spawn().await;
    let (status, location) = get(&app, &app.browser(), "/admin/customers/5?tab=keys").await;
    assert_eq!(status, 303);
    assert_eq!(
        location.as_deref(),
        Some("/login?next=/admin/customers/5%3Ftab%3Dkeys")
    );
    let (status, location) = get(&app, &app.browser(), "/admin").await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/login?next=/admin"))
    );
    let customer = signed_in(&app, &email("page-customer"), "Customer").await;
    for path in ["/admin", "/admin/flags", "/admin/2fa"] {
        let (status, location) = get(&app, &customer.browser, path).await;
        assert_eq!(
            (status, location.as_deref()),
            (303, Some("/dashboard")),
            "{path}"
        );
    }
    let admin = app.admin_browser(&email("page-admin")).await;
    let (status, _) = get(&app, &admin, "/admin/flags").await;
    assert_eq!(status, 200);
    let (status, location) = get(&app, &admin, "/admin/2fa").await;
    assert_eq!((status, location.as_deref()), (303, Some("/admin")));
    // Not an admin page: untouched.
    let (status, _) = get(&app, &app.browser(), "/administrator").await;
    assert_ne!(status, 303);
}

#[tokio::test]
async fn sign_in_follows_next_to_local_paths_only() {
    let app = TestApp::spawn().await;
    let customer = signed_in(&app, &email("next-customer"), "Customer").await;
    let login = async |next: &str| -> Option<String> {
        let (status, location, body) = app
            .server_fn(
                &app.browser(),
                "login",
                &[
                    ("email", &customer.email),
                    ("password", PASSWORD),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        location
    };
    assert_eq!(login("/credits").await.as_deref(), Some("/credits"));
    for evil in [
        "//evil.example/x",
        "https://evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
        "/\t/evil.example",
        "evil.example",
    ] {
        assert_eq!(login(evil).await.as_deref(), Some("/dashboard"), "{evil:?}");
    }
    // An admin's next survives the second factor.
    let address = email("next-admin");
    let admin = app.enrolled_admin(&address).await;
    let browser = app.browser();
    let (status, location, _) = app
        .server_fn(
            &browser,
            "login",
            &[
                ("email", &address),
                ("password", ADMIN_PASSWORD),
                ("next", "/admin/flags"),
            ],
        )
        .await;
    assert_eq!((status, location.as_deref()), (200, Some("/admin/2fa")));
    let (status, location, body) = app
        .second_factor(&browser, &totp_code(&admin.secret, 1))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(location.as_deref(), Some("/admin/flags"));
}
