//! The console for an operator (issue 14, item 6): every admin table
//! scrolls inside its card; a kill switch flips only after a confirmation
//! step that names it and its effect; webhook events, GitHub deliveries and
//! emails have detail pages with the payload and the body (tokens
//! redacted), for admins only; an unpaid fix is charged again or written
//! off through audited, idempotent actions.

use crate::authz::signed_in;
use crate::harness::{email, localstripe_base, TestApp, STRIPE_TEST_KEY};
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rsolv_platform::app::admin::flags::switch_effect;
use rsolv_platform::server::billing::charges::{list_charges, ChargeStatus};
use rsolv_platform::server::billing::customers::find_customer;
use rsolv_platform::server::billing::payment_methods::{add_card, begin_card_setup, Consent};
use rsolv_platform::server::db::schema::{email_outbox, fixes, github_deliveries, stripe_events};
use rsolv_platform::server::flags::Flag;
use rsolv_platform::server::jobs::run_until_idle;
use rsolv_platform::server::state::AppState;
use serde_json::{json, Value};

/// The admin's page at `path`: asserts 200 and answers the HTML.
async fn admin_page(app: &TestApp, admin: &reqwest::Client, path: &str) -> String {
    let (status, location, html) = app.page(admin, path).await;
    assert_eq!(status, 200, "{path}: {location:?}");
    html
}

/// Checks that every `<table` of `html` sits directly in the table
/// scroller (`overflow-x-auto`; hydration comments between are ignored)
/// and answers how many tables there are.
fn tables_in_scrollers(html: &str, path: &str) -> usize {
    let mut tables = 0;
    for (at, _) in html.match_indices("<table") {
        let mut before = html[..at].trim_end();
        loop {
            if before.ends_with("-->") {
                before = before[..before.rfind("<!--").unwrap()].trim_end();
            } else if before.ends_with("<!>") {
                before = before[..before.len() - 3].trim_end();
            } else {
                break;
            }
        }
        let tag = &before[before.rfind('<').unwrap()..];
        assert!(
            tag.starts_with("<div")
                && tag.contains("overflow-x-auto")
                && tag.contains("data-table-scroll"),
            "{path}: table {tables} is not in its scroller; it follows {tag:?}"
        );
        tables += 1;
    }
    tables
}

#[tokio::test]
async fn every_admin_table_scrolls_inside_its_card() {
    let app = TestApp::spawn().await;
    let admin = app.admin_browser(&email("tables-admin")).await;
    // A customer with a very long address, an audited action, an event
    // with a long id and a GitHub delivery: every table has rows.
    let long = email("a-very-long-address-that-never-wraps-anywhere");
    let (customer_id, _) = app.onboard(&long).await;
    let cid = customer_id.to_string();
    let token = app
        .admin_fn(&admin, "customer", &[("customer_id", &cid)])
        .await
        .1["form_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = app
        .admin_fn(
            &admin,
            "credits/adjust",
            &[
                ("customer_id", &cid),
                ("amount", "3"),
                ("reason", &"goodwill ".repeat(40)),
                ("form_token", &token),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut conn = app.conn().await;
    diesel::insert_into(stripe_events::table)
        .values((
            stripe_events::id.eq(format!("evt_{}", "X".repeat(60))),
            stripe_events::type_.eq("payment_method.attached"),
            stripe_events::created.eq(Utc::now()),
            stripe_events::payload.eq(json!({"id": "evt_long"})),
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    insert_delivery(&mut conn, "delivery-tables", Some(customer_id)).await;

    let mut total = 0;
    for (path, at_least) in [
        ("/admin".to_owned(), 1),
        (format!("/admin/customers/{customer_id}"), 4),
        ("/admin/webhooks".to_owned(), 2),
        ("/admin/emails".to_owned(), 1),
        ("/admin/jobs".to_owned(), 0),
        ("/admin/reconciliation".to_owned(), 0),
        ("/admin/signups?status=all".to_owned(), 0),
        ("/admin/audit".to_owned(), 1),
        ("/admin/admins".to_owned(), 1),
    ] {
        let html = admin_page(&app, &admin, &path).await;
        let tables = tables_in_scrollers(&html, &path);
        assert!(tables >= at_least, "{path}: {tables} tables");
        total += tables;
    }
    assert!(total >= 10, "{total} tables checked");
    // The long address is cut (its cell has the whole value as a title),
    // not allowed to widen the page.
    let html = admin_page(&app, &admin, "/admin").await;
    assert!(
        html.contains(&format!(r#"title="{long}""#)),
        "the full address in a title"
    );
}

/// A GitHub delivery row (failed, with an error) for `customer_id`.
async fn insert_delivery(
    conn: &mut diesel_async::AsyncPgConnection,
    id: &str,
    customer_id: Option<i64>,
) {
    diesel::insert_into(github_deliveries::table)
        .values((
            github_deliveries::delivery_id.eq(id),
            github_deliveries::event.eq("marketplace_purchase"),
            github_deliveries::action.eq("purchased"),
            github_deliveries::account_login.eq("octo-org"),
            github_deliveries::customer_id.eq(customer_id),
            github_deliveries::payload.eq(json!({
                "action": "purchased",
                "marketplace_purchase": {"account": {"login": "octo-org"}, "plan": {"id": 7}},
            })),
            github_deliveries::status.eq("failed"),
            github_deliveries::attempts.eq(2),
            github_deliveries::error.eq("no plan 7 in the catalog"),
        ))
        .execute(conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_kill_switch_flips_only_after_a_confirmation_naming_it_and_its_effect() {
    // Every flag the server knows says what switching it does, both ways.
    for flag in Flag::ALL {
        assert!(switch_effect(flag.key(), true).is_some(), "{}", flag.key());
        assert!(switch_effect(flag.key(), false).is_some(), "{}", flag.key());
    }
    let app = TestApp::spawn().await;
    let admin = app.admin_browser(&email("confirm-admin")).await;
    let billing_on = async || -> bool {
        let (_, flags) = app.admin_fn(&admin, "flags", &[]).await;
        flags
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["key"] == json!("billing_enabled"))
            .unwrap()["on"]
            .as_bool()
            .unwrap()
    };
    // The flags page holds no switching form: only links to the
    // confirmation step.
    let html = admin_page(&app, &admin, "/admin/flags").await;
    assert!(!html.contains(r#"name="enabled""#), "no one-click switch");
    assert!(!html.contains(r#"data-testid="flag-confirm""#));
    assert!(
        html.contains("/admin/flags?confirm=billing_enabled&amp;to=off")
            || html.contains("/admin/flags?confirm=billing_enabled&to=off"),
        "a link to the confirmation step"
    );
    // The confirmation step names the switch and its effect, asks for the
    // reason, and switches nothing by being shown.
    let confirm = "/admin/flags?confirm=billing_enabled&to=off";
    let html = admin_page(&app, &admin, confirm).await;
    assert_eq!(html.matches(r#"data-testid="flag-confirm""#).count(), 1);
    assert!(html.contains("Switch billing_enabled off?"));
    assert!(html.contains(switch_effect("billing_enabled", false).unwrap()));
    assert!(html.contains(r#"action="/api/admin/flags/set""#));
    assert!(html.contains(r#"name="enabled""#) && html.contains(r#"value="false""#));
    let reason_input = &html[html.find(r#"name="reason""#).unwrap()..];
    assert!(reason_input[..reason_input.find('>').unwrap()].contains("required"));
    assert!(billing_on().await, "showing the step switched nothing");
    assert!(app.audit_entries("flag.set").await.is_empty());
    // A target the flag has already: no panel. Unknown targets: none.
    for path in [
        "/admin/flags?confirm=billing_enabled&to=on",
        "/admin/flags?confirm=billing_enabled&to=maybe",
        "/admin/flags?confirm=no_such_flag&to=off",
    ] {
        let html = admin_page(&app, &admin, path).await;
        assert!(!html.contains(r#"name="enabled""#), "{path}");
    }
    // The confirmation's form, submitted: switched once, audited with its
    // reason.
    let (status, body) = app
        .admin_fn(
            &admin,
            "flags/set",
            &[
                ("key", "billing_enabled"),
                ("enabled", "false"),
                ("reason", "Stripe incident INC-7"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(!billing_on().await);
    let audit = app.audit_entries("flag.set").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].2.as_deref(), Some("Stripe incident INC-7"));
    // Back on the confirmation link (as a browser without JavaScript is,
    // redirected to where it posted from): nothing left to confirm.
    let html = admin_page(&app, &admin, confirm).await;
    assert!(!html.contains(r#"name="enabled""#));
    assert!(html.contains(r#"data-testid="flag-already""#));
    assert!(
        html.contains("/admin/flags?confirm=billing_enabled&amp;to=on")
            || html.contains("/admin/flags?confirm=billing_enabled&to=on")
    );
}

#[tokio::test]
async fn event_delivery_and_email_details_show_payload_and_body_to_admins_only() {
    let app = TestApp::spawn().await;
    let admin = app.admin_browser(&email("detail-admin")).await;
    let customer = signed_in(&app, &email("detail-customer"), "Detail Customer").await;
    let mut conn = app.conn().await;
    // A failed Stripe event with a payload over 64 KiB.
    let event_id = "evt_detail_1";
    diesel::insert_into(stripe_events::table)
        .values((
            stripe_events::id.eq(event_id),
            stripe_events::type_.eq("invoice.paid"),
            stripe_events::created.eq(Utc::now()),
            stripe_events::payload.eq(json!({
                "id": event_id,
                "type": "invoice.paid",
                "data": {"object": {"id": "in_detail", "memo": "m".repeat(70_000)}},
            })),
            stripe_events::status.eq("failed"),
            stripe_events::attempts.eq(3),
            stripe_events::last_error.eq("no such customer cus_gone"),
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    let fields = [("source", "stripe"), ("id", event_id)];
    let (status, e) = app.admin_fn(&admin, "events/get", &fields).await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["type_"], json!("invoice.paid"));
    assert_eq!(e["status"], json!("failed"));
    assert_eq!(e["attempts"], json!(3));
    assert_eq!(e["last_error"], json!("no such customer cus_gone"));
    let payload = e["payload"].as_str().unwrap();
    assert!(
        payload.starts_with("{\n  \""),
        "indented: {}",
        &payload[..40]
    );
    // JSONB keeps keys sorted: the invoice's id comes before the long memo
    // that is cut.
    assert!(
        payload.contains(r#""id": "in_detail""#),
        "{}",
        &payload[..200]
    );
    assert!(
        !payload.contains(r#""id": "evt_detail_1""#),
        "cut after the memo"
    );
    assert!(payload.len() <= 64 * 1024 && e["payload_truncated"] == json!(true));
    let html = admin_page(&app, &admin, "/admin/webhooks/stripe/evt_detail_1").await;
    assert!(html.contains(r#"data-testid="event-payload""#));
    assert!(html.contains("no such customer cus_gone"));
    assert!(
        html.contains("Replay this event"),
        "a failed event can be replayed"
    );
    // The log links to it.
    let html = admin_page(&app, &admin, "/admin/webhooks").await;
    assert!(html.contains(r#"href="/admin/webhooks/stripe/evt_detail_1""#));

    // A GitHub delivery, listed and in full.
    insert_delivery(&mut conn, "gh-delivery-1", Some(customer.customer_id)).await;
    let (status, list) = app.admin_fn(&admin, "deliveries", &[]).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        list["rows"][0]["type_"],
        json!("marketplace_purchase.purchased")
    );
    let (status, d) = app
        .admin_fn(
            &admin,
            "events/get",
            &[("source", "github"), ("id", "gh-delivery-1")],
        )
        .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["customer_id"], json!(customer.customer_id));
    assert_eq!(d["last_error"], json!("no plan 7 in the catalog"));
    assert!(d["payload"]
        .as_str()
        .unwrap()
        .contains(r#""login": "octo-org""#));
    let html = admin_page(&app, &admin, "/admin/webhooks/github/gh-delivery-1").await;
    assert!(html.contains("no plan 7 in the catalog"));
    let html = admin_page(&app, &admin, "/admin/webhooks").await;
    assert!(html.contains(r#"href="/admin/webhooks/github/gh-delivery-1""#));
    for (source, id) in [("stripe", "evt_nope"), ("github", "nope")] {
        let (status, _) = app
            .admin_fn(&admin, "events/get", &[("source", source), ("id", id)])
            .await;
        assert_eq!(status, 404, "{source} {id}");
    }
    let (status, _) = app
        .admin_fn(&admin, "events/get", &[("source", "paypal"), ("id", "x")])
        .await;
    assert_eq!(status, 422);

    // The customer's confirmation email, still queued: its link's token is
    // live in the outbox, and never shown.
    let live = app
        .mailed_token(&customer.email, "email_confirmation")
        .await;
    let email_id: i64 = email_outbox::table
        .filter(email_outbox::to_address.eq(&customer.email))
        .filter(email_outbox::kind.eq("email_confirmation"))
        .select(email_outbox::id)
        .first(&mut conn)
        .await
        .unwrap();
    let eid = email_id.to_string();
    let (status, m) = app
        .admin_fn(&admin, "emails/get", &[("email_id", &eid)])
        .await;
    assert_eq!(status, 200, "{m}");
    assert!(
        !m.to_string().contains(&live),
        "the live token is never shown"
    );
    assert!(m["notification"]
        .as_str()
        .unwrap()
        .contains("token=REDACTED"));
    // A failed email whose bodies are stored: shown as stored, redacted.
    diesel::update(email_outbox::table.find(email_id))
        .set((
            email_outbox::status.eq("failed"),
            email_outbox::attempts.eq(8),
            email_outbox::last_error.eq("550 mailbox unavailable"),
            email_outbox::subject.eq("Confirm your email"),
            email_outbox::text_body.eq(format!(
                "Hello,\nconfirm: https://rsolv.test/confirm?token={live}\nThanks"
            )),
            email_outbox::html_body.eq(format!(
                "<p>Hello, <a href=\"https://rsolv.test/confirm?token={live}\">confirm</a></p>"
            )),
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    let (status, m) = app
        .admin_fn(&admin, "emails/get", &[("email_id", &eid)])
        .await;
    assert_eq!(status, 200, "{m}");
    assert!(!m.to_string().contains(&live));
    assert_eq!(
        m["text_body"],
        json!("Hello,\nconfirm: https://rsolv.test/confirm?token=REDACTED\nThanks")
    );
    assert_eq!(m["email"]["status"], json!("failed"));
    assert_eq!(m["email"]["attempts"], json!(8));
    assert_eq!(m["email"]["last_error"], json!("550 mailbox unavailable"));
    let html = admin_page(&app, &admin, &format!("/admin/emails/{email_id}")).await;
    assert!(!html.contains(&live));
    assert!(html.contains(r#"data-testid="email-text""#));
    assert!(html.contains("550 mailbox unavailable"));
    assert!(html.contains("Resend this email"));
    // The HTML body is shown as its source, never rendered.
    assert!(html.contains("&lt;p&gt;Hello, &lt;a href="));
    let html = admin_page(&app, &admin, "/admin/emails").await;
    assert!(html.contains(&format!(r#"href="/admin/emails/{email_id}""#)));
    let (status, _) = app
        .admin_fn(&admin, "emails/get", &[("email_id", "999999")])
        .await;
    assert_eq!(status, 404);

    // Nobody else sees any of it: the functions refuse, the pages redirect.
    for (endpoint, fields) in [
        ("events/get", vec![("source", "stripe"), ("id", event_id)]),
        (
            "events/get",
            vec![("source", "github"), ("id", "gh-delivery-1")],
        ),
        ("deliveries", vec![]),
        ("emails/get", vec![("email_id", eid.as_str())]),
    ] {
        let (status, body) = app.admin_fn(&customer.browser, endpoint, &fields).await;
        assert_eq!(status, 403, "{endpoint}: {body}");
        assert!(!body.to_string().contains("cus_gone"), "{endpoint}");
        let (status, _) = app.admin_fn(&app.browser(), endpoint, &fields).await;
        assert_eq!(status, 401, "{endpoint}");
    }
    for path in [
        "/admin/webhooks/stripe/evt_detail_1".to_owned(),
        "/admin/webhooks/github/gh-delivery-1".to_owned(),
        format!("/admin/emails/{email_id}"),
    ] {
        let (status, location, body) = app.page(&customer.browser, &path).await;
        assert_eq!(
            (status, location.as_deref()),
            (303, Some("/dashboard")),
            "{path}"
        );
        assert!(
            !body.contains("cus_gone") && !body.contains("REDACTED"),
            "{path}"
        );
        let (status, location, _) = app.page(&app.browser(), &path).await;
        assert_eq!(status, 303, "{path}");
        assert!(location.unwrap().starts_with("/login?next="), "{path}");
    }
}

/// No free credits: the first fix finds none.
const NO_FREE_CREDITS: [(&str, &str); 2] = [
    ("PRICING_TRIAL_CREDITS", "0"),
    ("PRICING_BILLING_BONUS_CREDITS", "0"),
];

async fn run_jobs(state: &AppState) {
    for run in run_until_idle(state).await.unwrap() {
        assert_eq!(run.status, "done", "{run:?}");
    }
}

/// What the portal does to add a card: a SetupIntent confirmed on
/// localstripe with `pm`, recorded with consent.
async fn add_test_card(app: &TestApp, state: &AppState, base: &str, customer_id: i64, pm: &str) {
    let api = state.processor.clone();
    let mut conn = app.conn().await;
    let intent = begin_card_setup(api.as_ref(), &mut conn, customer_id)
        .await
        .unwrap();
    let confirmed: Value = reqwest::Client::new()
        .post(format!("{base}/v1/setup_intents/{}/confirm", intent.id))
        .basic_auth(STRIPE_TEST_KEY, Some(""))
        .form(&[("payment_method", pm)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(confirmed["status"], "succeeded", "{confirmed}");
    add_card(
        api.as_ref(),
        &mut conn,
        &state.config.pricing,
        customer_id,
        &intent.id,
        &Consent {
            given: true,
            user_id: None,
            ip: None,
            user_agent: Some("integration test".into()),
        },
    )
    .await
    .unwrap();
}

async fn fix_status(app: &TestApp, fix_id: i64) -> String {
    fixes::table
        .find(fix_id)
        .select(fixes::billing_status)
        .first(&mut app.conn().await)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaid_fix_is_charged_again_once_per_form_or_written_off_with_a_reason() {
    let base = localstripe_base().await;
    let app = TestApp::spawn_with_stripe(&base, &NO_FREE_CREDITS).await;
    let state = app.state_with(&base, &NO_FREE_CREDITS);
    let admin_email = email("retry-admin");
    let admin = app.admin_browser(&admin_email).await;
    let (customer_id, key) = app.onboard(&email("retry")).await;
    app.confirm_owner_directly(customer_id).await;
    run_jobs(&state).await; // the Stripe Customer
    add_test_card(
        &app,
        &state,
        &base,
        customer_id,
        "pm_card_chargeCustomerFail",
    )
    .await;
    let report = async |issue: i64| {
        app.post_json(
            "/api/v1/fix-attempts",
            Some(&key),
            &json!({"github_org": "acme", "repo_name": "api", "issue_number": issue, "pr_number": 100 + issue}),
        )
        .await
    };
    // Fix 1 is charged and declined; fix 2 is then refused.
    let (status, body) = report(1).await;
    assert_eq!(status, 200, "{body}");
    let fix1 = body["id"].as_i64().unwrap();
    run_jobs(&state).await;
    assert_eq!(fix_status(&app, fix1).await, "unpaid");
    assert_eq!(report(2).await.0, 402);
    let charges = list_charges(&mut app.conn().await, customer_id, 10)
        .await
        .unwrap();
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0].status, ChargeStatus::Failed);

    // The customer page lists both unpaid fixes with what happened.
    let cid = customer_id.to_string();
    let (status, page) = app
        .admin_fn(&admin, "customer", &[("customer_id", &cid)])
        .await;
    assert_eq!(status, 200, "{page}");
    let unpaid = page["unpaid_fixes"].as_array().unwrap().clone();
    assert_eq!(unpaid.len(), 2, "{unpaid:?}");
    assert_eq!(unpaid[0]["id"], json!(fix1));
    assert_eq!(unpaid[0]["declined"], json!(1));
    assert!(unpaid[0]["last_failure"]
        .as_str()
        .unwrap()
        .contains("declined"));
    assert!(page["payment_failed_at"].is_string());
    let token = page["form_token"].as_str().unwrap().to_owned();
    let html = admin_page(&app, &admin, &format!("/admin/customers/{customer_id}")).await;
    assert!(html.contains(r#"data-testid="unpaid-fixes""#));
    assert_eq!(html.matches(r#"data-testid="unpaid-fix-row""#).count(), 2);
    assert!(html.contains(r#"action="/api/admin/fixes/retry-charge""#));
    assert!(html.contains(r#"action="/api/admin/fixes/write-off""#));

    // Retry charge for fix 1: a new charge (new id, so a new idempotency
    // key), the decline's block lifted, audited once.
    let f1 = fix1.to_string();
    let retry = [
        ("customer_id", cid.as_str()),
        ("fix_id", f1.as_str()),
        ("form_token", token.as_str()),
    ];
    let (status, answer) = app.admin_fn(&admin, "fixes/retry-charge", &retry).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.as_str().unwrap().contains("on its way"), "{answer}");
    let charges = list_charges(&mut app.conn().await, customer_id, 10)
        .await
        .unwrap();
    assert_eq!(charges.len(), 2, "{charges:?}");
    let retried = charges
        .iter()
        .find(|c| c.status == ChargeStatus::Pending)
        .unwrap()
        .clone();
    assert_eq!(retried.fix_id, fix1);
    let customer = find_customer(&mut app.conn().await, customer_id)
        .await
        .unwrap();
    assert!(customer.payment_failed_at.is_none());
    let audit = app.audit_entries("fix.retry_charge").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].0, admin_email);
    assert_eq!(audit[0].1.as_deref(), Some(f1.as_str()));
    assert_eq!(audit[0].3.as_ref().unwrap()["payment_failed"], json!(true));
    assert_eq!(audit[0].4.as_ref().unwrap()["charge_id"], json!(retried.id));
    // The same form again, and a new form while the charge is on its way:
    // nothing changes, nothing more is recorded.
    let (status, answer) = app.admin_fn(&admin, "fixes/retry-charge", &retry).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer.as_str().unwrap().contains("submitted already"),
        "{answer}"
    );
    let other_form = [
        ("customer_id", cid.as_str()),
        ("fix_id", f1.as_str()),
        ("form_token", "another-form-token"),
    ];
    let (status, answer) = app
        .admin_fn(&admin, "fixes/retry-charge", &other_form)
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer.as_str().unwrap().contains("on its way already"),
        "{answer}"
    );
    // The card declines again; the first form, replayed after that, still
    // charges nothing more.
    run_jobs(&state).await;
    let (status, answer) = app.admin_fn(&admin, "fixes/retry-charge", &retry).await;
    assert_eq!(status, 200, "{answer}");
    let charges = list_charges(&mut app.conn().await, customer_id, 10)
        .await
        .unwrap();
    assert_eq!(charges.len(), 2, "{charges:?}");
    assert!(charges.iter().all(|c| c.status == ChargeStatus::Failed));
    assert_eq!(app.audit_entries("fix.retry_charge").await.len(), 1);
    assert_eq!(fix_status(&app, fix1).await, "unpaid");

    // Write off fix 2: a reason is required; then once, audited.
    let (status, body) = report(2).await;
    assert_eq!(status, 402, "{body}");
    let fix2: i64 = fixes::table
        .filter(fixes::customer_id.eq(customer_id))
        .filter(fixes::issue_number.eq(2))
        .select(fixes::id)
        .first(&mut app.conn().await)
        .await
        .unwrap();
    let f2 = fix2.to_string();
    let (status, body) = app
        .admin_fn(
            &admin,
            "fixes/write-off",
            &[("customer_id", &cid), ("fix_id", &f2), ("reason", " ")],
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let write_off = [
        ("customer_id", cid.as_str()),
        ("fix_id", f2.as_str()),
        ("reason", "goodwill: the card issuer's outage"),
    ];
    for _ in 0..2 {
        let (status, body) = app.admin_fn(&admin, "fixes/write-off", &write_off).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(fix_status(&app, fix2).await, "written_off");
    assert_eq!(app.audit_entries("fix.write_off").await.len(), 1);
    // A written-off fix cannot be charged again; another customer's fix is
    // not found; a form without its token is refused.
    let (status, body) = app
        .admin_fn(
            &admin,
            "fixes/retry-charge",
            &[
                ("customer_id", &cid),
                ("fix_id", &f2),
                ("form_token", "form-token-3"),
            ],
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (other, _) = app.onboard(&email("retry-other")).await;
    let (status, _) = app
        .admin_fn(
            &admin,
            "fixes/retry-charge",
            &[
                ("customer_id", &other.to_string()),
                ("fix_id", &f1),
                ("form_token", "form-token-4"),
            ],
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .admin_fn(
            &admin,
            "fixes/retry-charge",
            &[("customer_id", &cid), ("fix_id", &f1), ("form_token", "")],
        )
        .await;
    assert_eq!(status, 422);
    // The page lists only fix 1 now.
    let (_, page) = app
        .admin_fn(&admin, "customer", &[("customer_id", &cid)])
        .await;
    let unpaid = page["unpaid_fixes"].as_array().unwrap();
    assert_eq!(unpaid.len(), 1);
    assert_eq!(unpaid[0]["declined"], json!(2));
    assert_eq!(app.audit_entries("fix.retry_charge").await.len(), 1);
    assert_eq!(
        list_charges(&mut app.conn().await, customer_id, 10)
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn retrying_a_fix_nothing_can_pay_changes_nothing() {
    let app = TestApp::spawn_with(&NO_FREE_CREDITS).await;
    let admin = app.admin_browser(&email("retry-none-admin")).await;
    let (customer_id, key) = app.onboard(&email("retry-none")).await;
    let (status, _) = app
        .post_json(
            "/api/v1/fix-attempts",
            Some(&key),
            &json!({"github_org": "acme", "repo_name": "api", "issue_number": 1, "pr_number": 101}),
        )
        .await;
    assert_eq!(status, 402);
    let cid = customer_id.to_string();
    let (_, page) = app
        .admin_fn(&admin, "customer", &[("customer_id", &cid)])
        .await;
    let fix = page["unpaid_fixes"][0]["id"].as_i64().unwrap().to_string();
    let token = page["form_token"].as_str().unwrap().to_owned();
    let (status, body) = app
        .admin_fn(
            &admin,
            "fixes/retry-charge",
            &[
                ("customer_id", &cid),
                ("fix_id", &fix),
                ("form_token", &token),
            ],
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("no card on file"), "{body}");
    assert!(app.audit_entries("fix.retry_charge").await.is_empty());
    assert_eq!(app.count("charges").await, 0);
}

/// The part of a page from the element with `data-testid` = `testid` to
/// the end of `<main>` (the page's content, without the header's sign-out
/// form).
fn content_from<'a>(html: &'a str, testid: &str) -> &'a str {
    let at = html
        .find(&format!(r#"data-testid="{testid}""#))
        .unwrap_or_else(|| panic!("no {testid} in {html}"));
    let end = html[at..].find("</main>").map_or(html.len(), |e| at + e);
    &html[at..end]
}

/// The text right inside the first element with `data-testid` = `testid`.
fn testid_text<'a>(html: &'a str, testid: &str) -> &'a str {
    let rest = &html[html
        .find(&format!(r#"data-testid="{testid}""#))
        .unwrap_or_else(|| panic!("no {testid} in {html}"))..];
    let text = &rest[rest.find('>').unwrap() + 1..];
    &text[..text.find('<').unwrap()]
}

/// `html` with the apostrophe escapes Leptos may write turned back.
fn unescaped(html: &str) -> String {
    html.replace("&#x27;", "'").replace("&#39;", "'")
}

#[tokio::test]
async fn an_admin_views_a_customers_portal_read_only_and_each_view_is_audited() {
    use rsolv_platform::server::db::schema::api_keys;
    let app = TestApp::spawn().await;
    let customer = signed_in(&app, &email("portal-viewed"), "Viewed CI key").await;
    let id = customer.customer_id;
    let admin_email = email("portal-viewer");
    let admin = app.admin_browser(&admin_email).await;
    let balance = find_customer(&mut app.conn().await, id)
        .await
        .unwrap()
        .credit_balance;
    assert!(balance > 0, "a new account has its signup credits");

    // The customer page links to the read-only view.
    let html = admin_page(&app, &admin, &format!("/admin/customers/{id}")).await;
    assert!(
        html.contains(&format!(r#"href="/admin/customers/{id}/portal""#))
            && html.contains("View portal (read-only)"),
        "{html}"
    );

    let banner = format!(
        "Viewing {}'s portal as an admin — read-only",
        customer.email
    );
    let no_action = |html: &str, path: &str| {
        let content = content_from(html, "read-only-portal");
        for acting in [
            "<form",
            "<button",
            "<input",
            "<select",
            "confirm_",
            "/api/",
            "export.csv",
        ] {
            assert!(!content.contains(acting), "{path}: {acting} in {content}");
        }
        // Links between sections stay in the read-only view.
        for portal in [
            r#"href="/dashboard"#,
            r#"href="/billing"#,
            r#"href="/keys"#,
            r#"href="/credits"#,
        ] {
            assert!(!content.contains(portal), "{path}: {portal} in {content}");
        }
    };

    // Dashboard: credits, plan, the customer's state.
    let path = format!("/admin/customers/{id}/portal");
    let html = unescaped(&admin_page(&app, &admin, &path).await);
    assert!(html.contains(&banner), "{html}");
    assert_eq!(testid_text(&html, "credit-balance"), balance.to_string());
    assert_eq!(testid_text(&html, "plan"), "Trial");
    assert!(html.contains(&format!(r#"href="/admin/customers/{id}/portal/billing""#)));
    no_action(&html, &path);

    // Billing: the plan, its price and the cards, no card form.
    let path = format!("/admin/customers/{id}/portal/billing");
    let html = unescaped(&admin_page(&app, &admin, &path).await);
    assert!(html.contains(&banner));
    assert_eq!(testid_text(&html, "billing-plan"), "Trial");
    assert!(html.contains(&format!("{balance} credits left")));
    assert!(html.contains(r#"data-testid="cards-empty""#));
    assert!(html.contains("Billing history"));
    assert!(!html.contains("card-form") && !html.contains("Subscribe to Pro…"));
    no_action(&html, &path);

    // Keys: names, prefixes and states; never the secret or its hash.
    let path = format!("/admin/customers/{id}/portal/keys");
    let html = unescaped(&admin_page(&app, &admin, &path).await);
    let (prefix, hash): (String, Vec<u8>) = api_keys::table
        .filter(api_keys::id.eq(customer.key_id))
        .select((api_keys::prefix, api_keys::token_hash))
        .first(&mut app.conn().await)
        .await
        .unwrap();
    assert!(html.contains("Viewed CI key"), "{html}");
    assert!(html.contains(&format!("{prefix}…")));
    assert_eq!(testid_text(&html, "key-status"), "Active");
    assert!(!html.contains(&customer.key), "the secret is never shown");
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!html.contains(&hex), "the hash is never shown");
    assert!(!html.contains(">Revoke<") && !html.contains(">Rotate<"));
    no_action(&html, &path);

    // Credits: the ledger.
    let path = format!("/admin/customers/{id}/portal/credits");
    let html = unescaped(&admin_page(&app, &admin, &path).await);
    assert!(html.contains(r#"data-testid="ledger-row""#), "{html}");
    assert!(
        html.contains("Signup bonus")
            || html.contains("Billing bonus")
            || html.contains("Adjustment")
    );
    no_action(&html, &path);

    // The server function answers the same views, and refuses other sections.
    let cid = id.to_string();
    let (status, body) = app
        .admin_fn(
            &admin,
            "customer/portal",
            &[("customer_id", &cid), ("section", "keys")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["email"], customer.email.as_str());
    assert_eq!(body["data"]["Keys"][0]["name"], "Viewed CI key");
    assert!(!body.to_string().contains(&customer.key));
    let (status, _) = app
        .admin_fn(
            &admin,
            "customer/portal",
            &[("customer_id", &cid), ("section", "account")],
        )
        .await;
    assert!((400..500).contains(&status), "an unknown section: {status}");
    let (status, _) = app
        .admin_fn(&admin, "customer/portal", &[("customer_id", "999999999")])
        .await;
    assert_eq!(status, 404);

    // Every view is audited: who, whose, what.
    let entries = app.audit_entries("customer.view_portal").await;
    let sections: Vec<&str> = entries
        .iter()
        .map(|(actor, target, reason, before, after)| {
            assert_eq!(actor, &admin_email);
            assert_eq!(target.as_deref(), Some(cid.as_str()));
            assert_eq!((reason, before), (&None, &None));
            after.as_ref().unwrap()["section"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        sections,
        ["dashboard", "billing", "keys", "credits", "keys"],
        "one entry per view, none for a refused one"
    );
    // …and the entries show on the customer's page.
    let html = admin_page(&app, &admin, &format!("/admin/customers/{id}")).await;
    assert!(html.contains("customer.view_portal"), "{html}");
}

#[tokio::test]
async fn customers_and_the_signed_out_cannot_view_a_portal_read_only() {
    let app = TestApp::spawn().await;
    let victim = signed_in(&app, &email("portal-victim"), "Victim").await;
    let nosy = signed_in(&app, &email("portal-nosy"), "Nosy").await;
    let path = format!("/admin/customers/{}/portal/keys", victim.customer_id);
    let (status, location, _) = app.page(&app.browser(), &path).await;
    assert_eq!(status, 303);
    assert_eq!(
        location,
        Some(format!(
            "/login?next=/admin/customers/{}/portal/keys",
            victim.customer_id
        ))
    );
    let (status, location, body) = app.page(&nosy.browser, &path).await;
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/dashboard")),
        "{body}"
    );
    assert!(!body.contains("Victim"));
    let cid = victim.customer_id.to_string();
    let fields = [("customer_id", cid.as_str()), ("section", "keys")];
    let (status, body) = app
        .admin_fn(&nosy.browser, "customer/portal", &fields)
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.to_string().contains("Victim"));
    let (status, _) = app
        .admin_fn(&app.browser(), "customer/portal", &fields)
        .await;
    assert_eq!(status, 401);
    // A staff admin half-way through sign-in (no second factor) neither.
    let pending_admin = email("portal-pending");
    app.create_staff_admin(&pending_admin).await;
    let pending = app.admin_password_step(&pending_admin).await;
    let (status, _) = app.admin_fn(&pending, "customer/portal", &fields).await;
    assert!(matches!(status, 401 | 403), "{status}");
    assert!(app.audit_entries("customer.view_portal").await.is_empty());
}
