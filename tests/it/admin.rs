//! The admin console's actions over HTTP with a real staff-admin session:
//! each action's effect and the audit entry it writes in the same
//! transaction; the `create-admin` subcommand; the approval queue.

use crate::harness::{email, TestApp, WEBHOOK_SECRET};
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rsolv_platform::server::db::schema::{
    admin_audit_log, api_keys, credit_ledger_entries, customers, email_outbox, jobs,
    signup_requests, stripe_events, users,
};
use rsolv_platform::server::jobs::run_until_idle;
use rsolv_platform::server::stripe::trigger::{prepare_fixture, FixtureOptions};
use serde_json::{json, Value};

async fn status_of(app: &TestApp, key: &str) -> u16 {
    app.get_json("/api/v1/billing/status", Some(key)).await.0
}

async fn admin_entries(app: &TestApp, customer_id: i64) -> Vec<(i64, String, Option<String>)> {
    credit_ledger_entries::table
        .filter(credit_ledger_entries::customer_id.eq(customer_id))
        .filter(credit_ledger_entries::kind.eq("admin_adjustment"))
        .order(credit_ledger_entries::id.asc())
        .select((
            credit_ledger_entries::amount,
            credit_ledger_entries::idempotency_key,
            credit_ledger_entries::reference,
        ))
        .load(&mut app.conn().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn create_admin_subcommand_reads_the_password_from_stdin_and_is_audited() {
    use std::io::Write;
    let app = TestApp::spawn().await;
    let address = email("cli-admin");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rsolv-platform"))
        .args(["create-admin", "--email", &address])
        .env("DATABASE_URL", &app.db.url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a long cli password\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (customer_id, role): (Option<i64>, String) = users::table
        .filter(users::email.eq(&address))
        .select((users::customer_id, users::role))
        .first(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!((customer_id, role.as_str()), (None, "staff_admin"));
    let audit = app.audit_entries("admin.create").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].0, "cli");
    // The admin signs in with that password and is sent on to the second
    // factor's enrolment.
    let browser = app.browser();
    let (status, location, body) = app
        .server_fn(
            &browser,
            "login",
            &[("email", &address), ("password", "a long cli password")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(location.as_deref(), Some("/admin/2fa"));
    // Half-way through sign-in nobody is signed in: the portal's functions
    // answer 401 like to a stranger.
    let (status, _, _) = app.server_fn(&browser, "portal/dashboard", &[]).await;
    assert_eq!(status, 401);
    // A too short password is refused and nothing is created.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rsolv-platform"))
        .args(["create-admin", "--email", &email("cli-short")])
        .env("DATABASE_URL", &app.db.url)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"short\n").unwrap();
    assert!(!child.wait_with_output().unwrap().status.success());
    assert_eq!(app.audit_entries("admin.create").await.len(), 1);
}

#[tokio::test]
async fn search_finds_by_email_name_stripe_id_and_key_prefix_and_filters() {
    let app = TestApp::spawn().await;
    let admin = app.admin_browser(&email("search-admin")).await;
    let ada = email("ada-search");
    let (ada_id, ada_key) = app.onboard(&ada).await;
    let (bob_id, _) = app.onboard(&email("bob-search")).await;
    diesel::update(customers::table.find(bob_id))
        .set((
            customers::stripe_customer_id.eq("cus_search_bob"),
            customers::status.eq("suspended"),
            customers::name.eq("Robert Tables"),
        ))
        .execute(&mut app.conn().await)
        .await
        .unwrap();
    let ids = |v: &Value| -> Vec<i64> {
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    };
    let search = |fields: Vec<(&'static str, String)>| {
        let app = &app;
        let admin = &admin;
        async move {
            let f: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, body) = app.admin_fn(admin, "customers", &f).await;
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    assert_eq!(
        ids(&search(vec![("q", ada.to_uppercase())]).await),
        vec![ada_id]
    );
    assert_eq!(
        ids(&search(vec![("q", "robert tab".into())]).await),
        vec![bob_id]
    );
    assert_eq!(
        ids(&search(vec![("q", "cus_search_bob".into())]).await),
        vec![bob_id]
    );
    assert_eq!(
        ids(&search(vec![("q", ada_key[..12].to_owned())]).await),
        vec![ada_id]
    );
    assert_eq!(
        ids(&search(vec![("status", "suspended".into())]).await),
        vec![bob_id]
    );
    assert_eq!(
        ids(&search(vec![("problem", "cannot_use_service".into())]).await),
        vec![bob_id]
    );
    assert_eq!(
        ids(&search(vec![("sort", "oldest".into())]).await),
        vec![ada_id, bob_id]
    );
    assert_eq!(ids(&search(vec![]).await), vec![bob_id, ada_id]);
    let page2 = search(vec![("page", "2".into())]).await;
    assert_eq!((ids(&page2).len(), page2["total"].as_i64()), (0, Some(2)));
    // A fix left unpaid counts as a failed payment.
    diesel::update(customers::table.find(ada_id))
        .set(customers::subscription_status.eq("past_due"))
        .execute(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(
        ids(&search(vec![("problem", "payment_failed".into())]).await),
        vec![ada_id]
    );
    let (status, body) = app.admin_fn(&admin, "customers", &[("plan", "gold")]).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = app
        .admin_fn(&admin, "customers", &[("problem", "bored")])
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = app
        .admin_fn(&admin, "customers", &[("sort", "random")])
        .await;
    assert_eq!(status, 422, "{body}");
}

#[tokio::test]
async fn credit_adjustment_needs_a_reason_applies_once_per_form_and_never_goes_negative() {
    let app = TestApp::spawn().await;
    let admin_email = email("credits-admin");
    let admin = app.admin_browser(&admin_email).await;
    let (customer_id, _) = app.onboard(&email("credits")).await;
    let id = customer_id.to_string();
    let (before, _) = app.balance_and_ledger_sum(customer_id).await;

    let (status, body) = app
        .admin_fn(&admin, "customer", &[("customer_id", &id)])
        .await;
    assert_eq!(status, 200, "{body}");
    let token = body["form_token"].as_str().unwrap().to_owned();

    let (status, body) = app
        .admin_fn(
            &admin,
            "credits/adjust",
            &[
                ("customer_id", &id),
                ("amount", "10"),
                ("reason", " "),
                ("form_token", &token),
            ],
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body["message"].as_str().unwrap().contains("reason"));

    let fields = [
        ("customer_id", id.as_str()),
        ("amount", "10"),
        ("reason", "goodwill after outage"),
        ("form_token", token.as_str()),
    ];
    let (status, body) = app.admin_fn(&admin, "credits/adjust", &fields).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!(before + 10));
    // The same form submitted again changes nothing.
    let (status, body) = app.admin_fn(&admin, "credits/adjust", &fields).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!(before + 10));
    assert_eq!(
        admin_entries(&app, customer_id).await,
        vec![(
            10,
            format!("admin_adjustment:{token}"),
            Some("goodwill after outage".into())
        )]
    );
    let (balance, sum) = app.balance_and_ledger_sum(customer_id).await;
    assert_eq!((balance, sum), (before + 10, before + 10));
    let audit = app.audit_entries("credits.adjust").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].0, admin_email);
    assert_eq!(audit[0].1.as_deref(), Some(id.as_str()));
    assert_eq!(audit[0].2.as_deref(), Some("goodwill after outage"));
    assert_eq!(
        audit[0].3.as_ref().unwrap()["credit_balance"],
        json!(before)
    );
    assert_eq!(
        audit[0].4.as_ref().unwrap()["credit_balance"],
        json!(before + 10)
    );

    // Below zero: a clear 409 and nothing written.
    let (status, body) = app
        .admin_fn(
            &admin,
            "credits/adjust",
            &[
                ("customer_id", &id),
                ("amount", &format!("-{}", before + 11)),
                ("reason", "clawback"),
                ("form_token", "second-form-token"),
            ],
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("below zero"),
        "{body}"
    );
    assert_eq!(admin_entries(&app, customer_id).await.len(), 1);
    assert_eq!(app.audit_entries("credits.adjust").await.len(), 1);

    // Removing exactly the balance is allowed.
    let (status, body) = app
        .admin_fn(
            &admin,
            "credits/adjust",
            &[
                ("customer_id", &id),
                ("amount", &format!("-{}", before + 10)),
                ("reason", "account closed"),
                ("form_token", "third-form-token"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.balance_and_ledger_sum(customer_id).await, (0, 0));
    let (status, _) = app
        .admin_fn(
            &admin,
            "credits/adjust",
            &[
                ("customer_id", "999999"),
                ("amount", "1"),
                ("reason", "x"),
                ("form_token", "fourth-form-token"),
            ],
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn suspend_blocks_the_action_and_reactivate_restores_it() {
    let app = TestApp::spawn().await;
    let admin = app.admin_browser(&email("suspend-admin")).await;
    let (customer_id, key) = app.onboard(&email("suspend")).await;
    let id = customer_id.to_string();
    assert_eq!(status_of(&app, &key).await, 200);
    let (status, _) = app
        .admin_fn(
            &admin,
            "customers/suspend",
            &[("customer_id", &id), ("reason", "")],
        )
        .await;
    assert_eq!(status, 422);
    let (status, body) = app
        .admin_fn(
            &admin,
            "customers/suspend",
            &[("customer_id", &id), ("reason", "abuse report")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.get_json("/api/v1/billing/status", Some(&key)).await;
    assert_eq!(status, 403);
    assert!(
        body["error"].as_str().unwrap().contains("suspended"),
        "{body}"
    );
    let audit = app.audit_entries("customer.suspend").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].3, Some(json!({"status": "active"})));
    assert_eq!(audit[0].4, Some(json!({"status": "suspended"})));
    // Suspending again records nothing new.
    app.admin_fn(
        &admin,
        "customers/suspend",
        &[("customer_id", &id), ("reason", "again")],
    )
    .await;
    assert_eq!(app.audit_entries("customer.suspend").await.len(), 1);
    let (status, body) = app
        .admin_fn(
            &admin,
            "customers/reactivate",
            &[("customer_id", &id), ("reason", "resolved")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(status_of(&app, &key).await, 200);
    assert_eq!(app.audit_entries("customer.reactivate").await.len(), 1);
}

#[tokio::test]
async fn revoking_a_key_blocks_it_emails_the_customer_and_is_audited() {
    let app = TestApp::spawn().await;
    let admin = app.admin_browser(&email("revoke-admin")).await;
    let (customer_id, key) = app.onboard(&email("revoke")).await;
    let (other_id, _) = app.onboard(&email("revoke-other")).await;
    let key_id: i64 = api_keys::table
        .filter(api_keys::customer_id.eq(customer_id))
        .select(api_keys::id)
        .first(&mut app.conn().await)
        .await
        .unwrap();
    let (id, kid) = (customer_id.to_string(), key_id.to_string());
    // Another customer's id with this key: not found, nothing changes.
    let (status, _) = app
        .admin_fn(
            &admin,
            "keys/revoke",
            &[
                ("customer_id", &other_id.to_string()),
                ("key_id", &kid),
                ("reason", "x"),
            ],
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(status_of(&app, &key).await, 200);
    let (status, body) = app
        .admin_fn(
            &admin,
            "keys/revoke",
            &[
                ("customer_id", &id),
                ("key_id", &kid),
                ("reason", "leaked in a public repo"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(status_of(&app, &key).await, 401);
    let audit = app.audit_entries("api_key.revoke").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].2.as_deref(), Some("leaked in a public repo"));
    let revoked_emails: i64 = email_outbox::table
        .filter(email_outbox::customer_id.eq(customer_id))
        .filter(email_outbox::kind.eq("api_key_revoked"))
        .count()
        .get_result(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(revoked_emails, 1);
}

#[tokio::test]
async fn provisioning_by_hand_invites_the_owner_and_grants_starting_credits() {
    let app = TestApp::spawn().await;
    let admin = app.admin_browser(&email("prov-admin")).await;
    let address = email("early");
    let (status, body) = app
        .admin_fn(
            &admin,
            "customers/provision",
            &[
                ("email", &address),
                ("name", "Early Bird"),
                ("source", "gh_marketplace"),
            ],
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = app
        .admin_fn(
            &admin,
            "customers/provision",
            &[
                ("email", &address),
                ("name", "Early Bird"),
                ("source", "early_access"),
                ("starting_credits", "20"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let customer_id = body.as_i64().unwrap();
    let (source, balance): (String, i64) = customers::table
        .find(customer_id)
        .select((customers::source, customers::credit_balance))
        .first(&mut app.conn().await)
        .await
        .unwrap();
    let trial = rsolv_platform::server::billing::pricing::PricingCatalog::default().trial_credits;
    assert_eq!((source.as_str(), balance), ("early_access", trial + 20));
    assert_eq!(
        app.balance_and_ledger_sum(customer_id).await,
        (trial + 20, trial + 20)
    );
    // The owner's invite is in the outbox.
    assert!(!app.mailed_token(&address, "invite").await.is_empty());
    let audit = app.audit_entries("customer.provision").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].4.as_ref().unwrap()["starting_credits"], json!(20));
    let (status, _) = app
        .admin_fn(
            &admin,
            "customers/provision",
            &[("email", &address), ("name", "Again"), ("source", "direct")],
        )
        .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn a_dead_lettered_webhook_event_is_replayed_and_shows_on_the_customer() {
    let app = TestApp::spawn_with(&[("STRIPE_WEBHOOK_SECRETS", WEBHOOK_SECRET)]).await;
    let admin = app.admin_browser(&email("hook-admin")).await;
    let (customer_id, _) = app.onboard(&email("hook-customer")).await;
    let stripe_id = format!("cus_admin_{customer_id}_{}", std::process::id());
    diesel::update(customers::table.find(customer_id))
        .set(customers::stripe_customer_id.eq(&stripe_id))
        .execute(&mut app.conn().await)
        .await
        .unwrap();
    let event_id = format!("evt_admin_{customer_id}_{}", std::process::id());
    let body = serde_json::to_vec(
        &prepare_fixture(
            &crate::harness::stripe_fixture("payment_method.attached"),
            &FixtureOptions {
                customer: Some(&stripe_id),
                id: Some(&event_id),
                created: Some(Utc::now().timestamp()),
                fresh: false,
            },
        )
        .unwrap(),
    )
    .unwrap();
    let (status, answer) = app
        .post_stripe_event(&body, WEBHOOK_SECRET, Utc::now().timestamp())
        .await;
    assert_eq!(status, 200, "{answer}");
    // Not processed yet: replay refuses an event that has not failed.
    let (status, body) = app
        .admin_fn(&admin, "events/replay", &[("event_id", &event_id)])
        .await;
    assert_eq!(status, 422, "{body}");
    // Dead-letter it as the worker would after its last attempt.
    let mut conn = app.conn().await;
    diesel::update(stripe_events::table.find(&event_id))
        .set((
            stripe_events::status.eq("failed"),
            stripe_events::attempts.eq(10),
            stripe_events::last_error.eq("boom"),
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    let dedupe = format!("stripe.process_event:{event_id}");
    diesel::update(jobs::table.filter(jobs::dedupe_key.eq(&dedupe)))
        .set((jobs::status.eq("dead"), jobs::attempts.eq(10)))
        .execute(&mut conn)
        .await
        .unwrap();
    let (status, list) = app.admin_fn(&admin, "events", &[("status", "dead")]).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["rows"][0]["id"], json!(event_id));
    assert_eq!(list["rows"][0]["job_status"], json!("dead"));
    let (status, body) = app
        .admin_fn(&admin, "events/replay", &[("event_id", &event_id)])
        .await;
    assert_eq!(status, 200, "{body}");
    let (job_status, attempts): (String, i32) = jobs::table
        .filter(jobs::dedupe_key.eq(&dedupe))
        .select((jobs::status, jobs::attempts))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!((job_status.as_str(), attempts), ("queued", 0));
    let audit = app.audit_entries("stripe_event.replay").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].3.as_ref().unwrap()["job_status"], json!("dead"));
    // The worker applies it.
    let state = app.state_with("http://127.0.0.1:9", &[("BILLING_ENABLED", "false")]);
    run_until_idle(&state).await.unwrap();
    let status: String = stripe_events::table
        .find(&event_id)
        .select(stripe_events::status)
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!(status, "processed");
    // The customer's page lists the event and the payment method.
    let (status, detail) = app
        .admin_fn(
            &admin,
            "customer",
            &[("customer_id", &customer_id.to_string())],
        )
        .await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["events"][0]["id"], json!(event_id));
    assert_eq!(detail["payment_methods"].as_array().unwrap().len(), 1);
    assert!(!detail["emails"].as_array().unwrap().is_empty());
    assert!(!detail["ledger"].as_array().unwrap().is_empty());
    let (status, _) = app
        .admin_fn(&admin, "events/replay", &[("event_id", "evt_nope")])
        .await;
    assert_eq!(status, 404);
    let (status, _) = app.admin_fn(&admin, "events", &[("status", "weird")]).await;
    assert_eq!(status, 422);
}

#[tokio::test]
async fn a_failed_email_is_resent_and_others_are_refused() {
    let app = TestApp::spawn().await;
    let admin = app.admin_browser(&email("mail-admin")).await;
    let (customer_id, _) = app.onboard(&email("mail")).await;
    let mut conn = app.conn().await;
    let email_id: i64 = email_outbox::table
        .filter(email_outbox::customer_id.eq(customer_id))
        .filter(email_outbox::kind.eq("welcome"))
        .select(email_outbox::id)
        .first(&mut conn)
        .await
        .unwrap();
    let eid = email_id.to_string();
    let (status, _) = app
        .admin_fn(&admin, "emails/resend", &[("email_id", &eid)])
        .await;
    assert_eq!(status, 422, "a queued email is not resent");
    diesel::update(email_outbox::table.find(email_id))
        .set((
            email_outbox::status.eq("failed"),
            email_outbox::attempts.eq(8),
            email_outbox::last_error.eq("550 mailbox unavailable"),
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    let (status, list) = app
        .admin_fn(&admin, "emails", &[("status", "failed")])
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["total"], json!(1));
    let (status, body) = app
        .admin_fn(&admin, "emails/resend", &[("email_id", &eid)])
        .await;
    assert_eq!(status, 200, "{body}");
    let (st, attempts): (String, i32) = email_outbox::table
        .find(email_id)
        .select((email_outbox::status, email_outbox::attempts))
        .first(&mut conn)
        .await
        .unwrap();
    assert_eq!((st.as_str(), attempts), ("queued", 0));
    let audit = app.audit_entries("email.resend").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].3.as_ref().unwrap()["status"], json!("failed"));
}

#[tokio::test]
async fn the_audit_log_is_append_only_and_listed() {
    let app = TestApp::spawn().await;
    let admin = app.admin_browser(&email("audit-admin")).await;
    let mut conn = app.conn().await;
    let update = diesel::update(admin_audit_log::table)
        .set(admin_audit_log::reason.eq("rewritten"))
        .execute(&mut conn)
        .await;
    assert!(update.is_err(), "an update is refused");
    let delete = diesel::delete(admin_audit_log::table)
        .execute(&mut conn)
        .await;
    assert!(delete.is_err(), "a delete is refused");
    let (status, list) = app
        .admin_fn(&admin, "audit", &[("action", "admin.create")])
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], json!(1));
    assert_eq!(list["rows"][0]["actor_email"], json!("cli"));
}

#[tokio::test]
async fn with_auto_provision_off_signups_wait_for_approval() {
    let app = TestApp::spawn().await;
    let admin = app.admin_browser(&email("queue-admin")).await;
    let (status, body) = app
        .admin_fn(
            &admin,
            "flags/set",
            &[
                ("key", "auto_provision"),
                ("enabled", "false"),
                ("reason", "manual approvals"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let customers_before = app.count("customers").await;

    // The Action's onboarding: 202 pending_approval, no key, nothing provisioned.
    let api_address = email("queued-api");
    let (status, body) = app
        .post_json(
            "/api/v1/customers/onboard",
            None,
            &json!({"email": api_address, "name": "Queued Api"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], json!("pending_approval"));
    assert!(body.get("api_key").is_none());
    // Asking twice keeps one request.
    let (status, _) = app
        .post_json(
            "/api/v1/customers/onboard",
            None,
            &json!({"email": api_address.to_uppercase(), "name": "Queued Api"}),
        )
        .await;
    assert_eq!(status, 202);

    // The signup server function and /register.
    let form_address = email("queued-form");
    let (status, _, body) = app
        .server_fn(
            &app.browser(),
            "signup",
            &[("email", &form_address), ("name", "Queued Form")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let view: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["pending_approval"], json!(true));
    assert!(view.get("api_key").is_none(), "{view}");
    let reg_address = email("queued-register");
    let (status, location, body) = app
        .server_fn(
            &app.browser(),
            "register",
            &[
                ("email", &reg_address),
                ("name", "Queued Register"),
                ("password", "a long enough password"),
                ("password_confirm", "a long enough password"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(location.as_deref(), Some("/register?pending=1"));
    assert_eq!(app.count("customers").await, customers_before);
    assert_eq!(app.count("signup_requests").await, 3);

    let (status, list) = app.admin_fn(&admin, "signups", &[]).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], json!(3));
    let request_id = |addr: &str| -> String {
        list["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["email"] == json!(addr))
            .unwrap()["id"]
            .as_i64()
            .unwrap()
            .to_string()
    };
    let (api_req, form_req) = (request_id(&api_address), request_id(&form_address));

    // Approve: provisioned, invited, audited.
    let (status, body) = app
        .admin_fn(&admin, "signups/approve", &[("request_id", &api_req)])
        .await;
    assert_eq!(status, 200, "{body}");
    let customer_id = body.as_i64().unwrap();
    assert!(!app.mailed_token(&api_address, "invite").await.is_empty());
    let (status, _) = app
        .admin_fn(&admin, "signups/approve", &[("request_id", &api_req)])
        .await;
    assert_eq!(status, 422, "decided already");
    let audit = app.audit_entries("signup.approve").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(
        audit[0].4.as_ref().unwrap()["customer_id"],
        json!(customer_id)
    );

    // Reject: recorded with the reason, no customer.
    let (status, _) = app
        .admin_fn(
            &admin,
            "signups/reject",
            &[("request_id", &form_req), ("reason", "")],
        )
        .await;
    assert_eq!(status, 422);
    let (status, body) = app
        .admin_fn(
            &admin,
            "signups/reject",
            &[("request_id", &form_req), ("reason", "spam")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (st, reason): (String, Option<String>) = signup_requests::table
        .find(form_req.parse::<i64>().unwrap())
        .select((signup_requests::status, signup_requests::reason))
        .first(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!((st.as_str(), reason.as_deref()), ("rejected", Some("spam")));
    assert_eq!(app.audit_entries("signup.reject").await.len(), 1);
    assert_eq!(app.count("customers").await, customers_before + 1);
}

#[tokio::test]
async fn admins_invite_other_admins() {
    let app = TestApp::spawn().await;
    let admin = app.admin_browser(&email("inviting-admin")).await;
    let invited = email("invited-admin");
    let (status, body) = app
        .admin_fn(&admin, "admins/invite", &[("email", &invited)])
        .await;
    assert_eq!(status, 200, "{body}");
    let token = app.mailed_token(&invited, "invite").await;
    let (status, _, body) = app
        .server_fn(
            &app.browser(),
            "accept_invite",
            &[
                ("token", &token),
                ("password", "invited admin password"),
                ("password_confirm", "invited admin password"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, list) = app.admin_fn(&admin, "admins", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 2);
    // A customer's address cannot become a staff admin.
    let customer = email("customer-not-admin");
    app.onboard(&customer).await;
    let (status, _) = app
        .admin_fn(&admin, "admins/invite", &[("email", &customer)])
        .await;
    assert_eq!(status, 409);
}
