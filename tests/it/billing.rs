//! Billing through Stripe against the real localstripe: trial limits, cards
//! (consent, one-time bonus), pay-as-you-go charges, Pro (credits, overage
//! items, renewals, failed renewals), cancellation, declined cards, the
//! kill switch and Stripe outages. Each test asserts the ledger, the
//! balance, the fixes' billing status, the Stripe-side objects (read back
//! from localstripe) and the emails.

use crate::harness::{
    email, localstripe_base, stripe_fixture, TestApp, STRIPE_TEST_KEY, WEBHOOK_SECRET,
};
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use rsolv_platform::server::billing::charges::{
    find_charge_by_invoice_item, list_charges, settle_invoiced_overage, Charge, ChargeStatus,
};
use rsolv_platform::server::billing::customers::{find_customer, Customer};
use rsolv_platform::server::billing::payment_methods::{
    add_card, begin_card_setup, list_cards, remove_card, CardRow, Consent, CONSENT_TEXT,
};
use rsolv_platform::server::billing::subscriptions;
use rsolv_platform::server::db::schema::{
    charges, credit_ledger_entries, email_outbox, fixes, jobs, payment_method_consents,
};
use rsolv_platform::server::jobs::{retry_now, run_until_idle, KIND_STRIPE_CHARGE};
use rsolv_platform::server::state::AppState;
use rsolv_platform::server::stripe::client::StripeApi;
use rsolv_platform::server::stripe::trigger::{prepare_fixture, FixtureOptions};
use serde_json::{json, Value};

/// An address nothing listens on.
fn closed_port_base() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// One customer of an app talking to localstripe, its Stripe Customer made.
struct Billing {
    app: TestApp,
    state: AppState,
    base: String,
    id: i64,
    key: String,
    address: String,
    cus: String,
}

impl Billing {
    async fn new(tag: &str) -> Self {
        Self::with(tag, &[]).await
    }

    async fn with(tag: &str, extra: &[(&str, &str)]) -> Self {
        let base = localstripe_base().await;
        let app = TestApp::spawn_with_stripe(&base, extra).await;
        let state = app.state_with(&base, &[]);
        let address = email(tag);
        let (id, key) = app.onboard(&address).await;
        // Only a verified owner may add a card.
        app.confirm_owner_directly(id).await;
        for run in run_until_idle(&state).await.unwrap() {
            assert_eq!(run.status, "done", "{run:?}");
        }
        let cus = find_customer(&mut app.conn().await, id)
            .await
            .unwrap()
            .stripe_customer_id
            .expect("Stripe Customer created by the job");
        Self {
            app,
            state,
            base,
            id,
            key,
            address,
            cus,
        }
    }

    async fn customer(&self) -> Customer {
        find_customer(&mut self.app.conn().await, self.id)
            .await
            .unwrap()
    }

    /// What the portal does: a SetupIntent, confirmed as Stripe.js would
    /// with `pm` (a localstripe test card), then recorded with consent.
    async fn add_card(&self, pm: &str) -> CardRow {
        let processor = self.state.processor.clone();
        let mut conn = self.app.conn().await;
        let intent = begin_card_setup(processor.as_ref(), &mut conn, self.id)
            .await
            .unwrap();
        assert!(intent.client_secret.is_some());
        let confirmed: Value = self
            .stripe_post(
                &format!("/v1/setup_intents/{}/confirm", intent.id),
                &[("payment_method", pm)],
            )
            .await;
        assert_eq!(confirmed["status"], "succeeded", "{confirmed}");
        add_card(
            processor.as_ref(),
            &mut conn,
            &self.state.config.pricing,
            self.id,
            &intent.id,
            &Consent {
                given: true,
                user_id: None,
                ip: Some("203.0.113.9".into()),
                user_agent: Some("integration test".into()),
            },
        )
        .await
        .unwrap()
    }

    /// A customer signed in through the portal (register, confirm, sign in:
    /// [`crate::authz::signed_in`]) of an app whose card form is configured;
    /// returns it with its browser.
    async fn portal(tag: &str) -> (Self, reqwest::Client) {
        let base = localstripe_base().await;
        let app =
            TestApp::spawn_with_stripe(&base, &[("STRIPE_PUBLISHABLE_KEY", "pk_test_it")]).await;
        let state = app.state_with(&base, &[]);
        let address = email(tag);
        let signed = crate::authz::signed_in(&app, &address, "SCA Customer").await;
        for run in run_until_idle(&state).await.unwrap() {
            assert_eq!(run.status, "done", "{run:?}");
        }
        let cus = find_customer(&mut app.conn().await, signed.customer_id)
            .await
            .unwrap()
            .stripe_customer_id
            .expect("Stripe Customer created by the job");
        let billing = Self {
            app,
            state,
            base,
            id: signed.customer_id,
            key: signed.key,
            address,
            cus,
        };
        (billing, signed.browser)
    }

    /// Saves card `number` (a localstripe 3-D Secure test card) as the
    /// portal does, the customer completing the bank's check of the
    /// SetupIntent (Stripe.js confirms it a second time).
    async fn add_card_number(&self, number: &str) -> CardRow {
        let pm = self
            .stripe_post(
                "/v1/payment_methods",
                &[
                    ("type", "card"),
                    ("card[number]", number),
                    ("card[exp_month]", "12"),
                    ("card[exp_year]", "2030"),
                    ("card[cvc]", "123"),
                ],
            )
            .await;
        let pm = pm["id"].as_str().unwrap().to_owned();
        let processor = self.state.processor.clone();
        let mut conn = self.app.conn().await;
        let intent = begin_card_setup(processor.as_ref(), &mut conn, self.id)
            .await
            .unwrap();
        let path = format!("/v1/setup_intents/{}/confirm", intent.id);
        let first = self.stripe_post(&path, &[("payment_method", &pm)]).await;
        assert_eq!(first["status"], "requires_action", "{first}");
        let second = self.stripe_post(&path, &[]).await;
        assert_eq!(second["status"], "succeeded", "{second}");
        add_card(
            processor.as_ref(),
            &mut conn,
            &self.state.config.pricing,
            self.id,
            &intent.id,
            &Consent {
                given: true,
                user_id: None,
                ip: Some("203.0.113.9".into()),
                user_agent: Some("integration test".into()),
            },
        )
        .await
        .unwrap()
    }

    /// This customer's PaymentIntents on localstripe whose metadata names
    /// our charge (localstripe is shared by every test: charge ids repeat).
    async fn intents_of_charge(&self, charge_id: i64) -> Vec<Value> {
        let mut found = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut query = vec![("limit", "100".to_owned())];
            if let Some(a) = &after {
                query.push(("starting_after", a.clone()));
            }
            let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let page = self.stripe_get("/v1/payment_intents", &query).await;
            let data = page["data"].as_array().unwrap();
            found.extend(
                data.iter()
                    .filter(|pi| {
                        pi["customer"] == self.cus.as_str()
                            && pi["metadata"]["rsolv_charge_id"] == charge_id.to_string().as_str()
                    })
                    .cloned(),
            );
            after = data
                .last()
                .and_then(|pi| pi["id"].as_str())
                .map(str::to_owned);
            if page["has_more"] != true || after.is_none() {
                return found;
            }
        }
    }

    /// The stored notifications (JSON) of `kind` to this customer.
    async fn stored_notifications(&self, kind: &str) -> Vec<String> {
        type Row = (Option<Value>, Option<String>, Option<String>, String);
        let rows: Vec<Row> = email_outbox::table
            .filter(email_outbox::to_address.eq(&self.address))
            .filter(email_outbox::kind.eq(kind))
            .order(email_outbox::id.asc())
            .select((
                email_outbox::notification,
                email_outbox::subject,
                email_outbox::text_body,
                email_outbox::idempotency_key,
            ))
            .load(&mut self.app.conn().await)
            .await
            .unwrap();
        rows.into_iter()
            .map(|(n, subject, text, key)| format!("{n:?} {subject:?} {text:?} {key}"))
            .collect()
    }

    async fn stripe_get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .basic_auth(STRIPE_TEST_KEY, Some(""))
            .query(query)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    async fn stripe_post(&self, path: &str, form: &[(&str, &str)]) -> Value {
        let response = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .basic_auth(STRIPE_TEST_KEY, Some(""))
            .form(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "POST {path}");
        response.json().await.unwrap()
    }

    /// Reports fix `issue` through `POST /api/v1/fix-attempts`.
    async fn fix(&self, issue: i64) -> (u16, Value) {
        self.app
            .post_json(
                "/api/v1/fix-attempts",
                Some(&self.key),
                &json!({
                    "github_org": "acme", "repo_name": "api", "issue_number": issue,
                    "pr_number": 1000 + issue, "pr_title": "Fix", "api_key_used": self.key,
                }),
            )
            .await
    }

    async fn fixes_ok(&self, issues: std::ops::RangeInclusive<i64>, status: &str) {
        for issue in issues {
            let (code, body) = self.fix(issue).await;
            assert_eq!(code, 200, "fix {issue}: {body}");
            assert_eq!(body["billing_status"], status, "fix {issue}: {body}");
        }
    }

    async fn run_jobs(&self) {
        for run in run_until_idle(&self.state).await.unwrap() {
            assert_eq!(run.status, "done", "{run:?}");
        }
    }

    async fn balance(&self) -> i64 {
        let (balance, sum) = self.app.balance_and_ledger_sum(self.id).await;
        assert_eq!(balance, sum, "cached balance == ledger sum");
        balance
    }

    async fn ledger(&self, kind: &str) -> Vec<(i64, String)> {
        credit_ledger_entries::table
            .filter(credit_ledger_entries::customer_id.eq(self.id))
            .filter(credit_ledger_entries::kind.eq(kind))
            .order(credit_ledger_entries::id.asc())
            .select((
                credit_ledger_entries::amount,
                credit_ledger_entries::idempotency_key,
            ))
            .load(&mut self.app.conn().await)
            .await
            .unwrap()
    }

    async fn fix_status(&self, issue: i64) -> String {
        fixes::table
            .filter(fixes::customer_id.eq(self.id))
            .filter(fixes::issue_number.eq(issue))
            .select(fixes::billing_status)
            .first(&mut self.app.conn().await)
            .await
            .unwrap()
    }

    async fn fix_id(&self, issue: i64) -> i64 {
        fixes::table
            .filter(fixes::customer_id.eq(self.id))
            .filter(fixes::issue_number.eq(issue))
            .select(fixes::id)
            .first(&mut self.app.conn().await)
            .await
            .unwrap()
    }

    async fn charges(&self) -> Vec<Charge> {
        let mut list = list_charges(&mut self.app.conn().await, self.id, 100)
            .await
            .unwrap();
        list.reverse();
        list
    }

    /// The text of each `kind` email to this customer, rendered as the
    /// worker renders it at send time.
    async fn emails(&self, kind: &str) -> Vec<String> {
        let notifications: Vec<Option<Value>> = email_outbox::table
            .filter(email_outbox::to_address.eq(&self.address))
            .filter(email_outbox::kind.eq(kind))
            .order(email_outbox::id.asc())
            .select(email_outbox::notification)
            .load(&mut self.app.conn().await)
            .await
            .unwrap();
        notifications
            .into_iter()
            .map(|n| crate::harness::rendered(n).text_body)
            .collect()
    }

    /// The PaymentIntents of this customer's charges on localstripe.
    async fn stripe_payment_intents(&self) -> Vec<Value> {
        let charges = self
            .stripe_get("/v1/charges", &[("customer", &self.cus), ("limit", "100")])
            .await;
        let mut out = Vec::new();
        for charge in charges["data"].as_array().unwrap() {
            let pi = charge["payment_intent"].as_str().unwrap();
            out.push(
                self.stripe_get(&format!("/v1/payment_intents/{pi}"), &[])
                    .await,
            );
        }
        out
    }

    /// Signs and delivers fixture `name` about this customer, with
    /// `edit` applied to the event, then processes it.
    /// The event is stamped after everything applied so far, as Stripe's
    /// next event would be.
    async fn deliver(&self, name: &str, id: &str, edit: impl FnOnce(&mut Value)) {
        let last = self
            .customer()
            .await
            .subscription_updated_at
            .map_or(0, |t| t.timestamp());
        let created = (Utc::now().timestamp() + 5).max(last + 1);
        let mut event = prepare_fixture(
            &stripe_fixture(name),
            &FixtureOptions {
                customer: Some(&self.cus),
                id: Some(id),
                created: Some(created),
                fresh: false,
            },
        )
        .unwrap();
        edit(&mut event);
        let body = serde_json::to_vec(&event).unwrap();
        let (status, answer) = self
            .app
            .post_stripe_event(&body, WEBHOOK_SECRET, Utc::now().timestamp())
            .await;
        assert_eq!(status, 200, "{answer}");
        self.run_jobs().await;
    }
}

/// Points an invoice fixture at subscription `sub` and gives it id `invoice`.
fn invoice_of(event: &mut Value, invoice: &str, sub: &str) {
    let object = event.pointer_mut("/data/object").unwrap();
    object["id"] = json!(invoice);
    object["parent"]["subscription_details"]["subscription"] = json!(sub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trial_gets_five_fixes_then_a_clear_402_and_the_sixth_is_still_recorded() {
    let b = Billing::new("bill-trial").await;
    b.fixes_ok(1..=5, "credit").await;
    assert_eq!(b.balance().await, 0);
    assert_eq!(b.ledger("fix_consumed").await.len(), 5);
    assert_eq!(b.emails("low_credit").await.len(), 1, "at 1 credit left");

    let (status, body) = b.fix(6).await;
    assert_eq!(status, 402, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("add a payment method"),
        "{body}"
    );
    // Never lost: recorded as unpaid, and nothing charged.
    assert_eq!(b.fix_status(6).await, "unpaid");
    assert!(b.charges().await.is_empty());
    assert_eq!(b.balance().await, 0);
    // The same fix again: still 402, still one row.
    assert_eq!(b.fix(6).await.0, 402);
    assert_eq!(b.app.count("fixes").await, 6);
    // The Action's start-up call is refused too.
    let (status, body) = b
        .app
        .post_json(
            "/api/v1/credentials/exchange",
            Some(&b.key),
            &json!({"api_key": b.key, "providers": ["anthropic"], "ttl_minutes": 60}),
        )
        .await;
    assert_eq!(status, 402, "{body}");
    assert!(b.stripe_payment_intents().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_grants_five_credits_once_then_each_fix_is_charged_29_dollars() {
    let b = Billing::new("bill-payg").await;
    let card = b.add_card("pm_card_visa").await;
    assert_eq!(card.last4.as_deref(), Some("4242"));
    assert_eq!(card.brand.as_deref(), Some("visa"));
    let c = b.customer().await;
    assert!(c.has_payment_method);
    assert_eq!(c.plan.as_str(), "payg");
    assert_eq!(
        b.ledger("billing_bonus").await,
        vec![(5, "billing_bonus".to_owned())]
    );
    assert_eq!(b.balance().await, 10);
    // Consent: text, time and address recorded.
    let consents: Vec<(String, String, Option<String>)> = payment_method_consents::table
        .filter(payment_method_consents::customer_id.eq(b.id))
        .select((
            payment_method_consents::payment_method_id,
            payment_method_consents::consent_text,
            payment_method_consents::ip,
        ))
        .load(&mut b.app.conn().await)
        .await
        .unwrap();
    assert_eq!(
        consents,
        vec![(
            card.id.clone(),
            CONSENT_TEXT.to_owned(),
            Some("203.0.113.9".into())
        )]
    );
    // On Stripe: attached to the customer and its default.
    let pm = b
        .stripe_get(&format!("/v1/payment_methods/{}", card.id), &[])
        .await;
    assert_eq!(pm["customer"], b.cus.as_str());
    let cus = b.stripe_get(&format!("/v1/customers/{}", b.cus), &[]).await;
    assert_eq!(
        cus["invoice_settings"]["default_payment_method"],
        card.id.as_str()
    );
    // A second card: no second bonus; it becomes the default.
    let second = b.add_card("pm_card_visa").await;
    assert_eq!(b.ledger("billing_bonus").await.len(), 1);
    let (cards, default) = list_cards(&mut b.app.conn().await, b.id).await.unwrap();
    assert_eq!(cards.len(), 2);
    assert_eq!(default.as_deref(), Some(second.id.as_str()));

    b.fixes_ok(1..=10, "credit").await;
    assert_eq!(b.balance().await, 0);
    // Beyond the credits: recorded, charged through the job queue.
    b.fixes_ok(11..=12, "unpaid").await;
    assert_eq!(b.fix(11).await.1["billing_status"], "unpaid", "a replay");
    let pending = b.charges().await;
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|c| c.status == ChargeStatus::Pending
        && c.amount_cents == 2900
        && c.kind == rsolv_platform::server::billing::charges::ChargeKind::Payg));
    b.run_jobs().await;
    for issue in [11, 12] {
        assert_eq!(b.fix_status(issue).await, "charged");
    }
    let charged = b.charges().await;
    assert!(
        charged.iter().all(|c| c.status == ChargeStatus::Succeeded),
        "{charged:?}"
    );
    // The ledger shows each purchase and each consumption.
    assert_eq!(b.ledger("purchase").await.len(), 2);
    assert_eq!(b.ledger("fix_consumed").await.len(), 12);
    assert_eq!(b.balance().await, 0);
    // Stripe: exactly two PaymentIntents of $29.00 naming our charges.
    let intents = b.stripe_payment_intents().await;
    assert_eq!(intents.len(), 2, "{intents:?}");
    for intent in &intents {
        assert_eq!(intent["amount"], 2900);
        assert_eq!(intent["status"], "succeeded");
        assert_eq!(intent["payment_method"], second.id.as_str());
        let charge_id: i64 = intent["metadata"]["rsolv_charge_id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let ours = charged.iter().find(|c| c.id == charge_id).unwrap();
        assert_eq!(
            ours.stripe_payment_intent_id.as_deref(),
            intent["id"].as_str()
        );
    }
    // Running the jobs again (a lost lease) changes nothing.
    for charge in &charged {
        rsolv_platform::server::stripe::charges::charge_job(
            &b.state,
            &json!({"charge_id": charge.id}),
        )
        .await
        .unwrap();
    }
    assert_eq!(b.stripe_payment_intents().await.len(), 2);
    assert!(b.emails("charge_declined").await.is_empty());
    // Either card can be removed (no subscription needs one).
    remove_card(
        b.state.processor.as_ref(),
        &mut b.app.conn().await,
        &b.state.config.pricing,
        b.id,
        &card.id,
    )
    .await
    .unwrap();
    let (cards, default) = list_cards(&mut b.app.conn().await, b.id).await.unwrap();
    assert_eq!(cards.len(), 1);
    assert_eq!(default.as_deref(), Some(second.id.as_str()));
    let pm = b
        .stripe_get(&format!("/v1/payment_methods/{}", card.id), &[])
        .await;
    assert!(pm["customer"].is_null(), "detached on Stripe: {pm}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pro_grants_60_per_paid_invoice_and_bills_overage_items() {
    let b = Billing::new("bill-pro").await;
    b.add_card("pm_card_visa").await;
    assert_eq!(b.balance().await, 10);
    let sub = subscriptions::subscribe_pro(
        b.state.processor.as_ref(),
        &b.state.config.stripe.pro_price_id,
        &mut b.app.conn().await,
        &b.state.config.pricing,
        b.id,
    )
    .await
    .unwrap();
    assert_eq!(sub.status.as_str(), "active");
    let c = b.customer().await;
    assert_eq!(c.plan.as_str(), "pro");
    assert_eq!(c.subscription_status.map(|s| s.as_str()), Some("active"));
    assert_eq!(c.stripe_subscription_id.as_deref(), Some(sub.id.as_str()));
    assert!(c.current_period_end.is_some());
    let grants = b.ledger("subscription_grant").await;
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].0, 60);
    assert_eq!(b.balance().await, 70);
    // On Stripe: the subscription on the $599.00/month plan, first invoice paid.
    let on_stripe = b
        .stripe_get(&format!("/v1/subscriptions/{}", sub.id), &[])
        .await;
    assert_eq!(on_stripe["status"], "active");
    assert_eq!(on_stripe["items"]["data"][0]["plan"]["amount"], 59900);
    let invoices = b.stripe_get("/v1/invoices", &[("customer", &b.cus)]).await;
    assert_eq!(invoices["data"][0]["status"], "paid");
    // Subscribing twice is refused.
    assert!(subscriptions::subscribe_pro(
        b.state.processor.as_ref(),
        &b.state.config.stripe.pro_price_id,
        &mut b.app.conn().await,
        &b.state.config.pricing,
        b.id,
    )
    .await
    .is_err());

    b.fixes_ok(1..=70, "credit").await;
    assert_eq!(b.balance().await, 0);
    b.fixes_ok(71..=71, "unpaid").await;
    b.run_jobs().await;
    // The overage item exists; the charge waits for its invoice.
    assert_eq!(b.fix_status(71).await, "unpaid");
    let charges = b.charges().await;
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0].status, ChargeStatus::Invoiced);
    assert_eq!(
        (charges[0].kind.as_str(), charges[0].amount_cents),
        ("overage", 1500)
    );
    // No card charge (the one PaymentIntent paid the first $599.00
    // invoice): a $15.00 invoice item waits for the next invoice.
    let intents = b.stripe_payment_intents().await;
    assert_eq!(intents.len(), 1, "{intents:?}");
    assert_eq!(intents[0]["amount"], 59900);
    let items = b
        .stripe_get("/v1/invoiceitems", &[("customer", &b.cus)])
        .await;
    let items = items["data"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["amount"], 1500);
    assert_eq!(
        items[0]["metadata"]["rsolv_charge_id"],
        charges[0].id.to_string()
    );
    assert_eq!(
        charges[0].stripe_invoice_item_id.as_deref(),
        items[0]["id"].as_str()
    );
    assert_eq!(b.balance().await, 0);
    assert!(b.ledger("purchase").await.is_empty(), "not paid yet");
    // Its invoice is paid (what the invoice.paid handler calls): paid once.
    let item = items[0]["id"].as_str().unwrap();
    let mut conn = b.app.conn().await;
    let found = find_charge_by_invoice_item(&mut conn, item)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, charges[0].id);
    assert!(
        settle_invoiced_overage(&mut conn, found.id, "in_it_overage")
            .await
            .unwrap()
    );
    assert!(
        !settle_invoiced_overage(&mut conn, found.id, "in_it_overage")
            .await
            .unwrap()
    );
    drop(conn);
    assert_eq!(b.fix_status(71).await, "charged");
    let settled = &b.charges().await[0];
    assert_eq!(settled.status, ChargeStatus::Succeeded);
    assert_eq!(settled.stripe_invoice_id.as_deref(), Some("in_it_overage"));
    assert_eq!(b.ledger("purchase").await.len(), 1);
    assert_eq!(b.balance().await, 0);

    // Renewal (localstripe has no clock: a signed invoice.paid), twice.
    for evt in ["evt_it_renewal_1", "evt_it_renewal_1_again"] {
        b.deliver("invoice.paid", evt, |e| {
            invoice_of(e, "in_it_renewal_2", &sub.id)
        })
        .await;
    }
    assert_eq!(b.ledger("subscription_grant").await.len(), 2);
    assert_eq!(b.balance().await, 60);
    b.fixes_ok(72..=72, "credit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_renewal_is_past_due_with_an_email_until_the_card_is_fixed() {
    let b = Billing::new("bill-pastdue").await;
    b.add_card("pm_card_visa").await;
    let sub = subscriptions::subscribe_pro(
        b.state.processor.as_ref(),
        &b.state.config.stripe.pro_price_id,
        &mut b.app.conn().await,
        &b.state.config.pricing,
        b.id,
    )
    .await
    .unwrap();
    b.deliver("invoice.payment_failed", "evt_it_renewal_failed", |e| {
        invoice_of(e, "in_it_failed_2", &sub.id)
    })
    .await;
    let c = b.customer().await;
    assert_eq!(c.subscription_status.map(|s| s.as_str()), Some("past_due"));
    assert_eq!(
        c.plan.as_str(),
        "pro",
        "Stripe retries: still Pro meanwhile"
    );
    let mails = b.emails("subscription_payment_failed").await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("$599.00"), "{}", mails[0]);
    assert!(mails[0].contains("/billing"), "a link to fix the card");
    // The same event again: no second email.
    b.deliver("invoice.payment_failed", "evt_it_renewal_failed", |e| {
        invoice_of(e, "in_it_failed_2", &sub.id)
    })
    .await;
    assert_eq!(b.emails("subscription_payment_failed").await.len(), 1);
    // The customer adds a working card; Stripe's retry succeeds.
    let card = b.add_card("pm_card_visa").await;
    let cus = b.stripe_get(&format!("/v1/customers/{}", b.cus), &[]).await;
    assert_eq!(
        cus["invoice_settings"]["default_payment_method"],
        card.id.as_str()
    );
    b.deliver("invoice.paid", "evt_it_renewal_recovered", |e| {
        invoice_of(e, "in_it_failed_2", &sub.id)
    })
    .await;
    let c = b.customer().await;
    assert_eq!(c.subscription_status.map(|s| s.as_str()), Some("active"));
    assert_eq!(b.ledger("subscription_grant").await.len(), 2);
    // Stripe gives up on a later invoice and ends the subscription; the
    // event still carries a stale status: Stripe's current state (re-read)
    // wins, back to pay as you go.
    let response = reqwest::Client::new()
        .delete(format!("{}/v1/subscriptions/{}", b.base, sub.id))
        .basic_auth(STRIPE_TEST_KEY, Some(""))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    b.deliver("customer.subscription.updated", "evt_it_gave_up", |e| {
        let object = e.pointer_mut("/data/object").unwrap();
        object["id"] = json!(sub.id);
        object["status"] = json!("past_due");
    })
    .await;
    let c = b.customer().await;
    assert_eq!(c.subscription_status.map(|s| s.as_str()), Some("canceled"));
    assert_eq!(c.plan.as_str(), "payg");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_card_leaves_the_fix_unpaid_and_stops_fixes_until_fixed() {
    let b = Billing::new("bill-declined").await;
    b.add_card("pm_card_chargeCustomerFail").await;
    assert_eq!(b.balance().await, 10);
    b.fixes_ok(1..=10, "credit").await;
    b.fixes_ok(11..=11, "unpaid").await;
    b.run_jobs().await;
    assert_eq!(b.fix_status(11).await, "unpaid", "never lost");
    let charges = b.charges().await;
    assert_eq!(charges[0].status, ChargeStatus::Failed);
    assert!(charges[0].failure_message.is_some());
    assert!(b.customer().await.payment_failed_at.is_some());
    let mails = b.emails("charge_declined").await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("$29.00") && mails[0].contains("/billing"));
    // Our words, not the processor's: what happened and what to do.
    assert!(
        mails[0].contains("declined") && mails[0].contains("another card"),
        "{}",
        mails[0]
    );
    let declined_pi = b.stripe_payment_intents().await;
    for raw in declined_pi
        .iter()
        .filter_map(|pi| pi["last_payment_error"]["message"].as_str())
    {
        assert!(!mails[0].contains(raw), "quotes Stripe: {raw}");
    }
    // Running the job again changes nothing: a decline is final.
    rsolv_platform::server::stripe::charges::charge_job(
        &b.state,
        &json!({"charge_id": charges[0].id}),
    )
    .await
    .unwrap();
    assert_eq!(b.charges().await[0].status, ChargeStatus::Failed);
    assert_eq!(b.emails("charge_declined").await.len(), 1);
    assert!(b.ledger("purchase").await.is_empty());
    assert_eq!(b.balance().await, 0);
    // Further fixes: recorded, refused with a clear 402.
    let (status, body) = b.fix(12).await;
    assert_eq!(status, 402, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("declined"),
        "{body}"
    );
    assert_eq!(b.fix_status(12).await, "unpaid");
    assert_eq!(b.charges().await.len(), 1);
    let (status, _) = b
        .app
        .post_json(
            "/api/v1/credentials/exchange",
            Some(&b.key),
            &json!({"api_key": b.key, "providers": ["anthropic"]}),
        )
        .await;
    assert_eq!(status, 402);
    // A working card: the unpaid fix gets a NEW charge (new id, so a new
    // idempotency key); the declined one stays failed.
    let declined = b.charges().await[0].clone();
    let card = b.add_card("pm_card_visa").await;
    b.run_jobs().await;
    assert_eq!(b.fix_status(11).await, "charged");
    // Fix 12, refused while the card was declined, is billed now too
    // (issue 9: an unpaid fix is billed as soon as the customer can pay).
    assert_eq!(b.fix_status(12).await, "charged");
    assert!(b.customer().await.payment_failed_at.is_none());
    let after = b.charges().await;
    assert_eq!(after.len(), 3, "{after:?}");
    assert_eq!(after[2].fix_id, b.fix_id(12).await);
    assert_eq!(after[2].status, ChargeStatus::Succeeded);
    assert_eq!(after[0].id, declined.id);
    assert_eq!(after[0].status, ChargeStatus::Failed);
    assert_eq!(after[1].fix_id, declined.fix_id);
    assert_eq!(after[1].status, ChargeStatus::Succeeded);
    assert_ne!(after[1].idempotency_key(), declined.idempotency_key());
    let intents = b.stripe_payment_intents().await;
    let succeeded: Vec<&Value> = intents
        .iter()
        .filter(|i| i["status"] == "succeeded")
        .collect();
    assert_eq!(succeeded.len(), 2, "{intents:?}");
    assert!(succeeded
        .iter()
        .all(|i| i["payment_method"] == card.id.as_str()));
    assert_eq!(b.ledger("purchase").await.len(), 2);
    assert_eq!(b.balance().await, 0);
    // Fixes resume.
    b.fixes_ok(13..=13, "unpaid").await;
    b.run_jobs().await;
    assert_eq!(b.fix_status(13).await, "charged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_now_or_at_period_end_and_resume() {
    let b = Billing::new("bill-cancel").await;
    let card = b.add_card("pm_card_visa").await;
    let (processor, pricing, price) = (
        b.state.processor.clone(),
        b.state.config.pricing.clone(),
        b.state.config.stripe.pro_price_id.clone(),
    );
    let api = processor.as_ref();
    let mut conn = b.app.conn().await;
    let first = subscriptions::subscribe_pro(api, &price, &mut conn, &pricing, b.id)
        .await
        .unwrap();
    // The only card of a subscription cannot be removed.
    let refused = remove_card(
        b.state.processor.as_ref(),
        &mut conn,
        &pricing,
        b.id,
        &card.id,
    )
    .await;
    assert!(refused.is_err());
    // Cancel now: ends at once on Stripe and here.
    subscriptions::cancel(api, &mut conn, &pricing, b.id, false)
        .await
        .unwrap();
    let on_stripe = b
        .stripe_get(&format!("/v1/subscriptions/{}", first.id), &[])
        .await;
    assert_eq!(on_stripe["status"], "canceled");
    let c = b.customer().await;
    assert_eq!(c.subscription_status.map(|s| s.as_str()), Some("canceled"));
    assert_eq!(c.plan.as_str(), "payg", "a card on file: pay as you go");
    // The webhook localstripe sends for it later changes nothing.
    b.deliver(
        "customer.subscription.deleted",
        "evt_it_deleted_late",
        |e| {
            let object = e.pointer_mut("/data/object").unwrap();
            object["id"] = json!(first.id);
        },
    )
    .await;
    assert_eq!(b.customer().await.plan.as_str(), "payg");

    // Again, cancelling at the period end: Pro until then, resumable.
    let second = subscriptions::subscribe_pro(api, &price, &mut conn, &pricing, b.id)
        .await
        .unwrap();
    assert_ne!(first.id, second.id);
    assert_eq!(b.ledger("subscription_grant").await.len(), 2);
    let ending = subscriptions::cancel(api, &mut conn, &pricing, b.id, true)
        .await
        .unwrap();
    assert!(ending.cancel_at_period_end);
    let on_stripe = b
        .stripe_get(&format!("/v1/subscriptions/{}", second.id), &[])
        .await;
    assert_eq!(on_stripe["cancel_at_period_end"], true);
    assert_eq!(on_stripe["status"], "active");
    assert_eq!(b.customer().await.plan.as_str(), "pro");
    assert!(subscriptions::ends_at_period_end(&mut conn, b.id)
        .await
        .unwrap());
    // While it ends at the period end, its only card may go.
    subscriptions::resume(api, &mut conn, &pricing, b.id)
        .await
        .unwrap();
    assert!(!subscriptions::ends_at_period_end(&mut conn, b.id)
        .await
        .unwrap());
    let on_stripe = b
        .stripe_get(&format!("/v1/subscriptions/{}", second.id), &[])
        .await;
    assert_eq!(on_stripe["cancel_at_period_end"], false);
    subscriptions::cancel(api, &mut conn, &pricing, b.id, true)
        .await
        .unwrap();
    // The period ends (localstripe has no clock: Stripe's side ends the
    // subscription by hand, then its signed event arrives).
    let response = reqwest::Client::new()
        .delete(format!("{}/v1/subscriptions/{}", b.base, second.id))
        .basic_auth(STRIPE_TEST_KEY, Some(""))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    b.deliver("customer.subscription.deleted", "evt_it_period_over", |e| {
        let object = e.pointer_mut("/data/object").unwrap();
        object["id"] = json!(second.id);
    })
    .await;
    let c = b.customer().await;
    assert_eq!(c.subscription_status.map(|s| s.as_str()), Some("canceled"));
    assert_eq!(c.plan.as_str(), "payg");
    // The second subscription's grant expired what was left of the first
    // period's 60 (credit policy); the trial and card bonus stay.
    assert_eq!(
        b.balance().await,
        70,
        "granted credits of the current period stay"
    );
    assert_eq!(b.ledger("expired").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_disabled_records_fixes_for_later_and_calls_no_stripe() {
    let b = Billing::new("bill-off").await;
    b.add_card("pm_card_visa").await;
    b.fixes_ok(1..=10, "credit").await;
    // The kill switch: the same database, billing off.
    let off = b.app.state_with(&b.base, &[("BILLING_ENABLED", "false")]);
    assert!(StripeApi::new(&off.config.stripe).is_err());
    b.fixes_ok(11..=12, "unpaid").await;
    assert!(
        run_until_idle(&off).await.unwrap().is_empty(),
        "no Stripe job runs"
    );
    assert!(b.stripe_payment_intents().await.is_empty());
    assert!(b
        .charges()
        .await
        .iter()
        .all(|c| c.status == ChargeStatus::Pending && c.attempts == 0));
    // Back on: billed.
    b.run_jobs().await;
    assert_eq!(b.fix_status(11).await, "charged");
    assert_eq!(b.fix_status(12).await, "charged");
    assert_eq!(b.stripe_payment_intents().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_unreachable_during_a_charge_is_retried_into_exactly_one_payment() {
    let b = Billing::new("bill-outage").await;
    b.add_card("pm_card_visa").await;
    b.fixes_ok(1..=10, "credit").await;
    b.fixes_ok(11..=11, "unpaid").await;
    let down = b.app.state_with(&closed_port_base(), &[]);
    let runs = run_until_idle(&down).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, "queued", "{runs:?}");
    let charge = &b.charges().await[0];
    assert_eq!((charge.status, charge.attempts), (ChargeStatus::Pending, 1));
    assert_eq!(b.fix_status(11).await, "unpaid");
    // Stripe is back; the job is due after its backoff (made due now).
    let job_id: i64 = jobs::table
        .filter(jobs::kind.eq(KIND_STRIPE_CHARGE))
        .select(jobs::id)
        .first(&mut b.app.conn().await)
        .await
        .unwrap();
    assert!(retry_now(&mut b.app.conn().await, job_id).await.unwrap());
    b.run_jobs().await;
    assert_eq!(b.fix_status(11).await, "charged");
    assert_eq!(b.stripe_payment_intents().await.len(), 1);

    // A run whose answer was lost (our row never learnt the PaymentIntent)
    // finds it by metadata instead of charging again.
    let charge_id = b.charges().await[0].id;
    diesel::update(charges::table.find(charge_id))
        .set((
            charges::status.eq("pending"),
            charges::stripe_payment_intent_id.eq(None::<String>),
        ))
        .execute(&mut b.app.conn().await)
        .await
        .unwrap();
    rsolv_platform::server::stripe::charges::charge_job(&b.state, &json!({"charge_id": charge_id}))
        .await
        .unwrap();
    assert_eq!(
        b.stripe_payment_intents().await.len(),
        1,
        "exactly one charge"
    );
    let charge = &b.charges().await[0];
    assert_eq!(charge.status, ChargeStatus::Succeeded);
    assert!(charge.stripe_payment_intent_id.is_some());
    assert_eq!(b.ledger("purchase").await.len(), 1);
    assert_eq!(b.balance().await, 0);
    let _ = b.fix_id(11).await;
}

// --- The portal's server functions -----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_billing_functions_act_on_the_signed_in_customer_only() {
    use crate::authz::signed_in;
    let base = localstripe_base().await;
    let app = TestApp::spawn_with_stripe(&base, &[("STRIPE_PUBLISHABLE_KEY", "pk_test_it")]).await;
    let state = app.state_with(&base, &[]);
    let a = signed_in(&app, &email("bill-a"), "A").await;
    let b = signed_in(&app, &email("bill-b"), "B").await;
    for run in run_until_idle(&state).await.unwrap() {
        assert_eq!(run.status, "done", "{run:?}");
    }
    let stripe_post = |path: String, pm: &'static str| {
        let base = base.clone();
        async move {
            let response = reqwest::Client::new()
                .post(format!("{base}{path}"))
                .basic_auth(STRIPE_TEST_KEY, Some(""))
                .form(&[("payment_method", pm)])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
    };
    // Nobody signed in: 401.
    let (status, _, _) = app.server_fn(&app.client, "portal/billing", &[]).await;
    assert_eq!(status, 401);

    // B adds a card through the portal.
    let (status, _, body) = app
        .server_fn(&b.browser, "portal/billing/setup-intent", &[])
        .await;
    assert_eq!(status, 200, "{body}");
    let b_intent: Value = serde_json::from_str(&body).unwrap();
    let b_seti = b_intent["setup_intent_id"].as_str().unwrap().to_owned();
    assert!(b_intent["client_secret"]
        .as_str()
        .unwrap()
        .starts_with(&b_seti));
    stripe_post(
        format!("/v1/setup_intents/{b_seti}/confirm"),
        "pm_card_visa",
    )
    .await;
    // Without the consent box: refused, nothing recorded.
    let (status, _, body) = app
        .server_fn(
            &b.browser,
            "portal/billing/cards/add",
            &[("setup_intent_id", &b_seti)],
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(app.count("payment_method_consents").await, 0);
    // A cannot record B's SetupIntent.
    let (status, _, body) = app
        .server_fn(
            &a.browser,
            "portal/billing/cards/add",
            &[("setup_intent_id", &b_seti), ("consent", "on")],
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = app
        .server_fn(
            &b.browser,
            "portal/billing/cards/add",
            &[("setup_intent_id", &b_seti), ("consent", "on")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let b_card: Value = serde_json::from_str(&body).unwrap();
    let b_pm = b_card["id"].as_str().unwrap().to_owned();
    assert_eq!(b_card["last4"], "4242");
    let ip: Option<String> = payment_method_consents::table
        .filter(payment_method_consents::customer_id.eq(b.customer_id))
        .select(payment_method_consents::ip)
        .first(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(ip.as_deref(), Some("127.0.0.1"));

    // A sees only A's billing, and B's card id reads as not found.
    let (status, _, body) = app.server_fn(&a.browser, "portal/billing", &[]).await;
    assert_eq!(status, 200, "{body}");
    let view: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["cards"], json!([]));
    assert_eq!(view["can_add_cards"], true);
    assert_eq!(view["publishable_key"], "pk_test_it");
    for endpoint in [
        "portal/billing/cards/remove",
        "portal/billing/cards/default",
    ] {
        let (status, _, body) = app
            .server_fn(&a.browser, endpoint, &[("payment_method_id", &b_pm)])
            .await;
        assert_eq!(status, 404, "{endpoint}: {body}");
    }
    let (cards, _) = list_cards(&mut app.conn().await, b.customer_id)
        .await
        .unwrap();
    assert_eq!(cards.len(), 1, "B's card is untouched");
    // A has no subscription to cancel; B subscribes, A's view unchanged.
    let (status, _, _) = app
        .server_fn(&a.browser, "portal/billing/cancel", &[("when", "now")])
        .await;
    assert_eq!(status, 422);
    // B subscribes without JavaScript (a plain form post): sent back to
    // /billing with the outcome to say.
    let response = b
        .browser
        .post(app.url("/api/portal/billing/subscribe"))
        .header("origin", &app.base)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 302);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("/billing?notice=You%20are%20on%20Pro"),
        "{location}"
    );
    let html = app.html(&b.browser, &location).await;
    assert!(html.contains("You are on Pro."), "{html}");
    let (_, _, body) = app.server_fn(&a.browser, "portal/billing", &[]).await;
    let view: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["plan"], "trial");
    // The page, rendered on the server (works without JavaScript).
    let html = app.html(&b.browser, "/billing").await;
    assert!(
        html.contains("data-testid=\"subscription-status\""),
        "{html}"
    );
    assert!(html.contains("Cancel at period end"), "{html}");
    assert!(html.contains("Visa •••• 4242"), "{html}");
    // History: B's invoice and no charges; A's empty.
    let (status, _, body) = app
        .server_fn(&b.browser, "portal/billing/history", &[])
        .await;
    assert_eq!(status, 200, "{body}");
    let history: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        history["invoices"].as_array().unwrap().len(),
        1,
        "{history}"
    );
    assert_eq!(history["invoices"][0]["amount"], "$599.00");
    let (_, _, body) = app
        .server_fn(&a.browser, "portal/billing/history", &[])
        .await;
    let history: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(history["invoices"], json!([]));
    // Cancel at period end and resume, through the functions.
    let (status, _, body) = app
        .server_fn(
            &b.browser,
            "portal/billing/cancel",
            &[("when", "period_end")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, _, body) = app.server_fn(&b.browser, "portal/billing", &[]).await;
    let view: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["cancel_at_period_end"], true);
    let (status, _, body) = app
        .server_fn(&b.browser, "portal/billing/resume", &[])
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = app.server_fn(&b.browser, "portal/dashboard", &[]).await;
    assert_eq!(status, 200, "{body}");
    let notice = serde_json::from_str::<Value>(&body).unwrap()["notice"].clone();
    assert_eq!(notice["past_due"], false);
    assert_eq!(notice["billing_enabled"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_says_billing_is_paused_and_changes_nothing_on_stripe() {
    use crate::authz::signed_in;
    let base = localstripe_base().await;
    let app = TestApp::spawn_with_stripe(
        &base,
        &[
            ("STRIPE_PUBLISHABLE_KEY", "pk_test_it"),
            ("BILLING_ENABLED", "false"),
        ],
    )
    .await;
    let a = signed_in(&app, &email("bill-paused"), "A").await;
    let (status, _, body) = app.server_fn(&a.browser, "portal/billing", &[]).await;
    assert_eq!(status, 200, "{body}");
    let view: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["billing_enabled"], false);
    assert_eq!(view["can_add_cards"], false);
    let (status, _, body) = app
        .server_fn(&a.browser, "portal/billing/setup-intent", &[])
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("paused"), "{body}");
    let (status, _, body) = app.server_fn(&a.browser, "portal/dashboard", &[]).await;
    assert_eq!(status, 200, "{body}");
    let notice = serde_json::from_str::<Value>(&body).unwrap()["notice"].clone();
    assert_eq!(notice["billing_enabled"], false);
    assert_eq!(
        app.count("jobs WHERE status = 'done'").await,
        0,
        "no Stripe job ran"
    );
}

// --- Charges: declines vs outages, one key, one PaymentIntent ---------------

/// A tiny Stripe stand-in on 127.0.0.1: every GET answers an empty list,
/// every POST the error status chosen with [`FakeStripe::answer`]; it
/// records each request's method, path and `Idempotency-Key`.
struct FakeStripe {
    base: String,
    status: std::sync::Arc<std::sync::atomic::AtomicU16>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<SeenRequest>>>,
}

/// Method, path and `Idempotency-Key` of a request the fake saw.
type SeenRequest = (String, String, Option<String>);

impl FakeStripe {
    async fn start() -> Self {
        use axum::http::{HeaderMap, Method, StatusCode, Uri};
        use std::sync::atomic::{AtomicU16, Ordering};
        use std::sync::{Arc, Mutex};
        let status = Arc::new(AtomicU16::new(500));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (answer, log) = (status.clone(), seen.clone());
        let app =
            axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap| {
                let (answer, log) = (answer.clone(), log.clone());
                async move {
                    let key = headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    log.lock()
                        .unwrap()
                        .push((method.to_string(), uri.path().to_owned(), key));
                    if method == Method::GET {
                        return (
                            StatusCode::OK,
                            axum::Json(json!({"object": "list", "data": [], "has_more": false})),
                        );
                    }
                    let code = AtomicU16::load(&answer, Ordering::SeqCst);
                    let kind = match code {
                        409 => "idempotency_error",
                        500..=599 => "api_error",
                        _ => "invalid_request_error",
                    };
                    (
                        StatusCode::from_u16(code).unwrap(),
                        axum::Json(json!({"error": {"type": kind, "message": "fake failure"}})),
                    )
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { base, status, seen }
    }

    fn answer(&self, status: u16) {
        self.status
            .store(status, std::sync::atomic::Ordering::SeqCst);
    }

    /// The idempotency keys of the PaymentIntent creations seen so far.
    fn payment_intent_keys(&self) -> Vec<Option<String>> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, path, _)| m == "POST" && path == "/v1/payment_intents")
            .map(|(_, _, key)| key.clone())
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_conflicts_and_rejected_keys_leave_the_charge_pending_and_never_email() {
    let b = Billing::new("bill-not-a-decline").await;
    b.add_card("pm_card_visa").await;
    b.fixes_ok(1..=10, "credit").await;
    b.fixes_ok(11..=11, "unpaid").await;
    let charge_id = b.charges().await[0].id;
    let fake = FakeStripe::start().await;
    let broken = b.app.state_with(&fake.base, &[]);

    // 500 through the queue: the job is put back to retry.
    fake.answer(500);
    let runs = run_until_idle(&broken).await.unwrap();
    let run = runs.iter().find(|r| r.kind == KIND_STRIPE_CHARGE).unwrap();
    assert_eq!(run.status, "queued", "{runs:?}");
    // 409 (a concurrent request), 401 (a rotated key), 403, 400, 429: each
    // run is a retryable failure.
    for status in [409, 401, 403, 400, 429, 503] {
        fake.answer(status);
        let outcome = rsolv_platform::server::stripe::charges::charge_job(
            &broken,
            &json!({ "charge_id": charge_id }),
        )
        .await;
        let error = outcome.expect_err("not done");
        assert!(error.retryable, "{status}: {error:?}");
    }
    // Nothing listening at all.
    let down = b.app.state_with(&closed_port_base(), &[]);
    let error = rsolv_platform::server::stripe::charges::charge_job(
        &down,
        &json!({ "charge_id": charge_id }),
    )
    .await
    .expect_err("unreachable");
    assert!(error.retryable);

    let charge = &b.charges().await[0];
    assert_eq!(charge.status, ChargeStatus::Pending, "never failed");
    assert_eq!(charge.attempts, 8);
    assert!(charge.failure_message.is_none());
    assert!(b.customer().await.payment_failed_at.is_none());
    assert!(b.emails("charge_declined").await.is_empty(), "no email");
    assert_eq!(b.fix_status(11).await, "unpaid");
    // Every creating call carried the charge's one key.
    let keys = fake.payment_intent_keys();
    assert_eq!(keys.len(), 7, "{keys:?}");
    let expected = format!("charge:{charge_id}");
    assert!(
        keys.iter().all(|k| k.as_deref() == Some(expected.as_str())),
        "{keys:?}"
    );
    assert_eq!(charge.idempotency_key(), expected);
    // Further fixes are not refused: the card was never declined.
    b.fixes_ok(12..=12, "unpaid").await;

    // Stripe is back: the retried job charges exactly once.
    let job_id: i64 = jobs::table
        .filter(jobs::kind.eq(KIND_STRIPE_CHARGE))
        .filter(jobs::status.eq("queued"))
        .order(jobs::id.asc())
        .select(jobs::id)
        .first(&mut b.app.conn().await)
        .await
        .unwrap();
    assert!(retry_now(&mut b.app.conn().await, job_id).await.unwrap());
    b.run_jobs().await;
    assert_eq!(b.fix_status(11).await, "charged");
    assert_eq!(b.fix_status(12).await, "charged");
    let intents = b.stripe_payment_intents().await;
    assert_eq!(intents.len(), 2, "{intents:?}");
    let for_charge: Vec<&Value> = intents
        .iter()
        .filter(|i| {
            i["metadata"]["rsolv_charge_id"].as_str() == Some(charge_id.to_string().as_str())
        })
        .collect();
    assert_eq!(for_charge.len(), 1);
    assert!(b.emails("charge_declined").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_workers_and_retries_make_one_payment_intent_per_charge() {
    let b = Billing::new("bill-race").await;
    b.add_card("pm_card_visa").await;
    b.fixes_ok(1..=10, "credit").await;
    b.fixes_ok(11..=11, "unpaid").await;
    let charge_id = b.charges().await[0].id;
    // Four workers run the same charge's job at the same moment.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let state = b.state.clone();
        tasks.push(tokio::spawn(async move {
            rsolv_platform::server::stripe::charges::charge_job(
                &state,
                &json!({ "charge_id": charge_id }),
            )
            .await
        }));
    }
    let mut done = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => done += 1,
            Err(error) => assert!(error.retryable, "{error:?}"),
        }
    }
    assert!(done >= 1);
    // The queued job, and a retry after a failure elsewhere, find it paid.
    b.run_jobs().await;
    rsolv_platform::server::stripe::charges::charge_job(
        &b.state,
        &json!({ "charge_id": charge_id }),
    )
    .await
    .unwrap();
    let intents = b.stripe_payment_intents().await;
    assert_eq!(intents.len(), 1, "one PaymentIntent: {intents:?}");
    assert_eq!(
        intents[0]["metadata"]["rsolv_charge_id"],
        charge_id.to_string()
    );
    let charges = b.charges().await;
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0].status, ChargeStatus::Succeeded);
    assert_eq!(
        charges[0].stripe_payment_intent_id.as_deref(),
        intents[0]["id"].as_str()
    );
    assert_eq!(b.ledger("purchase").await.len(), 1);
    assert_eq!(b.balance().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_stuck_pending_without_a_live_job_is_requeued_once_per_round() {
    use rsolv_platform::server::billing::charges::sweep_stuck_charges;
    let b = Billing::new("bill-sweep").await;
    b.add_card("pm_card_visa").await;
    b.fixes_ok(1..=10, "credit").await;
    b.fixes_ok(11..=12, "unpaid").await;
    let charges = b.charges().await;
    let (stuck, fresh) = (charges[0].id, charges[1].id);
    let mut conn = b.app.conn().await;
    // Its job died (attempts used up), an hour ago.
    diesel::update(
        jobs::table
            .filter(jobs::kind.eq(KIND_STRIPE_CHARGE))
            .filter(
                jobs::payload
                    .retrieve_as_text("charge_id")
                    .eq(stuck.to_string()),
            ),
    )
    .set(jobs::status.eq("dead"))
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::update(charges::table.find(stuck))
        .set(charges::updated_at.eq(Utc::now() - chrono::Duration::hours(1)))
        .execute(&mut conn)
        .await
        .unwrap();
    // The other one's job is still queued: not swept even when old.
    diesel::update(charges::table.find(fresh))
        .set(charges::updated_at.eq(Utc::now() - chrono::Duration::hours(1)))
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        sweep_stuck_charges(&mut conn, 30, 1).await.unwrap(),
        vec![stuck]
    );
    assert!(sweep_stuck_charges(&mut conn, 30, 1)
        .await
        .unwrap()
        .is_empty());
    assert!(
        sweep_stuck_charges(&mut conn, 30, 2)
            .await
            .unwrap()
            .is_empty(),
        "its new job is queued"
    );
    let dedupe: Vec<Option<String>> = jobs::table
        .filter(jobs::kind.eq(KIND_STRIPE_CHARGE))
        .filter(jobs::status.eq("queued"))
        .order(jobs::id.asc())
        .select(jobs::dedupe_key)
        .load(&mut conn)
        .await
        .unwrap();
    assert!(
        dedupe.contains(&Some(format!("stripe.charge:{stuck}:sweep:1"))),
        "{dedupe:?}"
    );
    drop(conn);
    b.run_jobs().await;
    assert_eq!(b.fix_status(11).await, "charged");
    assert_eq!(b.fix_status(12).await, "charged");
    assert!(sweep_stuck_charges(&mut b.app.conn().await, 0, 3)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(b.stripe_payment_intents().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_compares_charges_and_grants_with_the_processor() {
    use rsolv_platform::server::billing::ports::SubscribeRequest;
    use rsolv_platform::server::billing::reconciliation::{run, FindingKind};
    use rsolv_platform::server::db::schema::stripe_subscriptions;
    let b = Billing::new("bill-recon").await;
    b.add_card("pm_card_visa").await;
    let balance = b.balance().await;
    b.fixes_ok(1..=balance, "credit").await;
    b.fixes_ok(balance + 1..=balance + 1, "unpaid").await;
    b.run_jobs().await;
    let processor = b.state.processor.clone();
    let mut conn = b.app.conn().await;
    // Our charge and its PaymentIntent agree: no drift.
    let clean = run(&mut conn, processor.as_ref()).await.unwrap();
    assert_eq!(clean.findings, vec![], "a clean account");

    // A Pro invoice paid at the processor whose grant never came (its
    // subscription known here, its `invoice.paid` never delivered).
    let sub = processor
        .subscribe(&SubscribeRequest {
            customer_id: b.id,
            customer: b.cus.clone(),
            price: b.state.config.stripe.pro_price_id.clone(),
            amount_cents: 59900,
            currency: "usd".into(),
            idempotency_key: format!("recon-test:{}", b.id),
        })
        .await
        .unwrap();
    diesel::insert_into(stripe_subscriptions::table)
        .values((
            stripe_subscriptions::id.eq(&sub.id),
            stripe_subscriptions::customer_id.eq(b.id),
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    // And our charge row pointing at another PaymentIntent than the one the
    // processor holds for it (as if a retry had made a second one).
    let charge = list_charges(&mut conn, b.id, 10).await.unwrap().remove(0);
    let real_pi = charge.stripe_payment_intent_id.clone().unwrap();
    diesel::update(charges::table.find(charge.id))
        .set(charges::stripe_payment_intent_id.eq("pi_not_at_the_processor"))
        .execute(&mut conn)
        .await
        .unwrap();

    let found = run(&mut conn, processor.as_ref()).await.unwrap().findings;
    let invoice = sub.latest_invoice.clone().unwrap();
    let mut subjects: Vec<(&str, String)> = found
        .iter()
        .map(|f| (f.kind.as_str(), f.subject.clone()))
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        vec![
            ("fix_payment", format!("charge:{}", charge.id)),
            ("fix_payment", format!("payment_intent:{real_pi}")),
            ("missing_grant", format!("invoice:{invoice}")),
        ],
        "{found:#?}"
    );
    assert!(FindingKind::MissingGrant.repairable());
}

/// Points a `payment_intent.succeeded` fixture at PaymentIntent `pi` paying
/// our charge `charge_id` (metadata `rsolv_charge_id`) `amount` cents.
fn intent_of(event: &mut Value, pi: &str, charge_id: i64, amount: i64) {
    let object = event.pointer_mut("/data/object").unwrap();
    object["id"] = json!(pi);
    object["amount"] = json!(amount);
    object["amount_received"] = json!(amount);
    object["metadata"]["rsolv_charge_id"] = json!(charge_id.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_card_charge_gets_one_receipt_whether_the_job_or_the_webhook_books_it() {
    let b = Billing::new("bill-receipt-payg").await;
    b.add_card("pm_card_visa").await;
    b.fixes_ok(1..=10, "credit").await;
    b.fixes_ok(11..=12, "unpaid").await;
    let pending = b.charges().await;
    let (first, second) = (pending[0].id, pending[1].id);
    // The charge jobs wait (due in an hour) while the webhooks come first.
    let hold = |at: &'static str| {
        diesel::update(jobs::table.filter(jobs::kind.eq(KIND_STRIPE_CHARGE)))
            .set(jobs::run_at.eq(diesel::dsl::sql::<diesel::sql_types::Timestamptz>(at)))
    };
    hold("now() + interval '1 hour'")
        .execute(&mut b.app.conn().await)
        .await
        .unwrap();

    // The webhook first (twice), then the job: booked once, by the webhook,
    // and the job makes no PaymentIntent for a charge already paid.
    for evt in ["evt_it_pi_first", "evt_it_pi_first_again"] {
        b.deliver("payment_intent.succeeded", evt, |e| {
            intent_of(e, "pi_it_webhook_first", first, 2900)
        })
        .await;
    }
    // The same PaymentIntent claiming the other charge with another amount
    // books nothing.
    b.deliver("payment_intent.succeeded", "evt_it_pi_wrong", |e| {
        intent_of(e, "pi_it_wrong_amount", second, 100)
    })
    .await;
    assert_eq!(b.charges().await[1].status, ChargeStatus::Pending);
    hold("now()")
        .execute(&mut b.app.conn().await)
        .await
        .unwrap();
    b.run_jobs().await;
    let charges = b.charges().await;
    assert!(charges.iter().all(|c| c.status == ChargeStatus::Succeeded));
    assert_eq!(
        charges[0].stripe_payment_intent_id.as_deref(),
        Some("pi_it_webhook_first")
    );
    let real_pi = charges[1].stripe_payment_intent_id.clone().unwrap();
    assert_eq!(b.stripe_payment_intents().await.len(), 1, "only the job's");
    // The job first, then its webhook (and a replay of the job).
    b.deliver("payment_intent.succeeded", "evt_it_pi_after", |e| {
        intent_of(e, &real_pi, second, 2900)
    })
    .await;
    rsolv_platform::server::stripe::charges::charge_job(&b.state, &json!({"charge_id": second}))
        .await
        .unwrap();

    assert_eq!(b.ledger("purchase").await.len(), 2);
    assert_eq!(b.balance().await, 0);
    let receipts = b.emails("charge_receipt").await;
    assert_eq!(receipts.len(), 2, "one per charge: {receipts:?}");
    for receipt in &receipts {
        assert!(
            receipt.contains("We received your payment of $29.00."),
            "{receipt}"
        );
        assert!(receipt.contains("(pay as you go)"), "{receipt}");
        assert!(receipt.contains(&format!("Date: {} (UTC)", Utc::now().format("%Y-%m-%d"))));
        assert!(
            receipt.contains("http://127.0.0.1:3000/billing/history"),
            "{receipt}"
        );
    }
    let keys: Vec<String> = email_outbox::table
        .filter(email_outbox::kind.eq("charge_receipt"))
        .filter(email_outbox::to_address.eq(&b.address))
        .order(email_outbox::id.asc())
        .select(email_outbox::idempotency_key)
        .load(&mut b.app.conn().await)
        .await
        .unwrap();
    assert_eq!(
        keys,
        vec![
            format!("receipt:charge:{first}"),
            format!("receipt:charge:{second}")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_paid_invoice_gets_one_receipt_under_duplicated_and_reordered_webhooks() {
    let b = Billing::new("bill-receipt-pro").await;
    b.add_card("pm_card_visa").await;
    let sub = subscriptions::subscribe_pro(
        b.state.processor.as_ref(),
        &b.state.config.stripe.pro_price_id,
        &mut b.app.conn().await,
        &b.state.config.pricing,
        b.id,
    )
    .await
    .unwrap();
    // The first invoice (localstripe: no hosted page or PDF).
    let receipts = b.emails("invoice_receipt").await;
    assert_eq!(receipts.len(), 1, "{receipts:?}");
    assert!(receipts[0].contains("We received your payment of $599.00."));
    assert!(receipts[0].contains("RSOLV Pro subscription (one billing period)"));
    assert!(receipts[0].contains("http://127.0.0.1:3000/billing/history"));
    assert!(!receipts[0].contains("PDF"), "{}", receipts[0]);

    // A renewal: payment_succeeded before paid, each delivered twice.
    for (fixture, evt) in [
        ("invoice.payment_succeeded", "evt_it_rcpt_succ"),
        ("invoice.paid", "evt_it_rcpt_paid"),
        ("invoice.paid", "evt_it_rcpt_paid_again"),
        ("invoice.payment_succeeded", "evt_it_rcpt_succ_again"),
    ] {
        b.deliver(fixture, evt, |e| invoice_of(e, "in_it_rcpt_2", &sub.id))
            .await;
    }
    // An unsafe hosted link is never mailed.
    b.deliver("invoice.paid", "evt_it_rcpt_js", |e| {
        invoice_of(e, "in_it_rcpt_3", &sub.id);
        e["data"]["object"]["hosted_invoice_url"] = json!("javascript:alert(1)");
        e["data"]["object"]["invoice_pdf"] = json!("http://pay.example/x.pdf");
    })
    .await;
    let receipts = b.emails("invoice_receipt").await;
    assert_eq!(receipts.len(), 3, "{receipts:?}");
    let renewal = &receipts[1];
    assert!(
        renewal.contains("We received your payment of $599.00."),
        "{renewal}"
    );
    assert!(renewal.contains("Invoice: RSOLV-0001"), "{renewal}");
    assert!(renewal.contains("https://invoice.stripe.com/i/acct_test/test_RsFixture"));
    assert!(renewal
        .contains("Invoice PDF: https://pay.stripe.com/invoice/acct_test/test_RsFixture/pdf"));
    assert!(!receipts[2].contains("javascript:") && !receipts[2].contains("http://pay.example"));
    assert!(receipts[2].contains("http://127.0.0.1:3000/billing/history"));
    let keys: Vec<String> = email_outbox::table
        .filter(email_outbox::kind.eq("invoice_receipt"))
        .filter(email_outbox::to_address.eq(&b.address))
        .order(email_outbox::id.asc())
        .select(email_outbox::idempotency_key)
        .load(&mut b.app.conn().await)
        .await
        .unwrap();
    assert_eq!(
        keys[1..],
        [
            "receipt:invoice:in_it_rcpt_2",
            "receipt:invoice:in_it_rcpt_3"
        ]
    );
}

/// Localstripe's card that asks for 3-D Secure on every payment.
const SCA_CARD: &str = "4000002760003184";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_that_needs_authentication_waits_for_its_owner_then_is_paid_once() {
    let (b, browser) = Billing::portal("bill-sca").await;
    b.add_card_number(SCA_CARD).await;
    assert_eq!(b.balance().await, 10);
    b.fixes_ok(1..=10, "credit").await;
    b.fixes_ok(11..=11, "unpaid").await;
    b.run_jobs().await;

    // Neither paid nor declined: waiting for the customer, its
    // PaymentIntent kept, the card not marked, no decline email.
    let charge = b.charges().await[0].clone();
    assert_eq!(charge.status, ChargeStatus::RequiresAction);
    let pi = charge.stripe_payment_intent_id.clone().expect("kept");
    assert_eq!(b.fix_status(11).await, "unpaid", "never lost");
    assert!(b.customer().await.payment_failed_at.is_none());
    assert!(b.emails("charge_declined").await.is_empty());
    assert!(b.ledger("purchase").await.is_empty());
    let secret = b
        .stripe_get(&format!("/v1/payment_intents/{pi}"), &[])
        .await["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    // One email, with the page's link and no secret (stored or sent).
    let mails = b.emails("charge_requires_action").await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    let link = format!(
        "http://127.0.0.1:3000/billing/authenticate?charge={}",
        charge.id
    );
    assert!(mails[0].contains(&link), "{}", mails[0]);
    assert!(mails[0].contains("$29.00"), "{}", mails[0]);
    for stored in b.stored_notifications("charge_requires_action").await {
        assert!(
            !stored.contains(&secret) && !stored.contains("secret"),
            "{stored}"
        );
        assert!(stored.contains(&format!("charge_requires_action:{}", charge.id)));
    }
    // The job again: not retried blindly (same PaymentIntent, no email).
    rsolv_platform::server::stripe::charges::charge_job(&b.state, &json!({"charge_id": charge.id}))
        .await
        .unwrap();
    assert_eq!(b.charges().await[0].status, ChargeStatus::RequiresAction);
    assert_eq!(b.emails("charge_requires_action").await.len(), 1);
    assert_eq!(b.intents_of_charge(charge.id).await.len(), 1);

    // Not a decline: the Action's next fix is still charged, not refused.
    let (status, body) = b.fix(12).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["billing_status"], "unpaid", "{body}");

    // The dashboard and the billing page show a notice with the link.
    let (status, _, body) = b.app.server_fn(&browser, "portal/dashboard", &[]).await;
    assert_eq!(status, 200, "{body}");
    let notice = serde_json::from_str::<Value>(&body).unwrap()["notice"].clone();
    assert_eq!(
        notice["authentication_needed"][0]["charge_id"], charge.id,
        "{notice}"
    );
    assert_eq!(notice["payment_failed"], false);
    let billing_page = browser
        .get(b.app.url("/billing"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        billing_page.contains(&format!("/billing/authenticate?charge={}", charge.id)),
        "{billing_page}"
    );
    // The history lists the fix as waiting for the bank, with the way to
    // pay it now.
    let (status, _, body) = b
        .app
        .server_fn(&browser, "portal/billing/history", &[])
        .await;
    assert_eq!(status, 200, "{body}");
    let history = serde_json::from_str::<Value>(&body).unwrap();
    let waiting: Vec<&Value> = history["unpaid_fixes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["id"] == charge.fix_id)
        .collect();
    assert_eq!(waiting.len(), 1, "{history}");
    assert_eq!(waiting[0]["authenticate_charge"], charge.id, "{history}");
    assert!(
        waiting[0]["next"]
            .as_str()
            .unwrap()
            .contains("confirm the card payment"),
        "{history}"
    );
    // The page, rendered on the server: amount, purpose, the button, what
    // to do without JavaScript, and no secret.
    let page = browser
        .get(
            b.app
                .url(&format!("/billing/authenticate?charge={}", charge.id)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("$29.00"), "{html}");
    assert!(
        html.contains(&format!("RSOLV fix {}", charge.fix_id)),
        "{html}"
    );
    assert!(
        html.contains(r#"data-testid="authenticate-payment""#),
        "{html}"
    );
    assert!(html.contains("needs JavaScript"), "{html}");
    assert!(!html.contains(&secret), "no secret in the page");

    // Another customer: the same "not found" as a missing charge, no secret.
    let other = crate::authz::signed_in(&b.app, &email("bill-sca-other"), "Other").await;
    let id = charge.id.to_string();
    for endpoint in [
        "portal/billing/authenticate",
        "portal/billing/authenticate/begin",
        "portal/billing/authenticate/complete",
    ] {
        let theirs = b
            .app
            .server_fn(&other.browser, endpoint, &[("charge", &id)])
            .await;
        let missing = b
            .app
            .server_fn(&other.browser, endpoint, &[("charge", "987654321")])
            .await;
        assert_eq!(theirs.0, 404, "{endpoint}: {theirs:?}");
        assert_eq!((theirs.0, &theirs.2), (missing.0, &missing.2), "{endpoint}");
        assert!(!theirs.2.contains(&secret));
    }
    assert_eq!(b.charges().await[0].status, ChargeStatus::RequiresAction);

    // The owner gets the secret while the payment waits.
    let (status, _, body) = b
        .app
        .server_fn(
            &browser,
            "portal/billing/authenticate/begin",
            &[("charge", &id)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let auth: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(auth["client_secret"], secret.as_str());

    // The customer completes the bank's check (what Stripe.js does), then
    // the page's complete call books it: the fix charged, ledger exact, one
    // receipt; again (and the webhook after it) changes nothing.
    b.stripe_post(
        &format!("/v1/payment_intents/{pi}/_authenticate"),
        &[("client_secret", &secret), ("success", "true")],
    )
    .await;
    for _ in 0..2 {
        let (status, _, body) = b
            .app
            .server_fn(
                &browser,
                "portal/billing/authenticate/complete",
                &[("charge", &id)],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let done: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    b.deliver("payment_intent.succeeded", "evt_it_sca_paid", |e| {
        intent_of(e, &pi, charge.id, 2900)
    })
    .await;
    let paid = b.charges().await[0].clone();
    assert_eq!(paid.status, ChargeStatus::Succeeded);
    assert_eq!(paid.stripe_payment_intent_id.as_deref(), Some(pi.as_str()));
    assert_eq!(b.fix_status(11).await, "charged");
    assert_eq!(
        b.ledger("purchase").await,
        vec![(1, format!("purchase:charge:{}", charge.id))]
    );
    assert_eq!(b.balance().await, 0, "Σ ledger = balance");
    assert_eq!(b.emails("charge_receipt").await.len(), 1);
    assert!(
        b.app
            .server_fn(
                &browser,
                "portal/billing/authenticate/begin",
                &[("charge", &id)]
            )
            .await
            .0
            == 409
    );
    let html = browser
        .get(
            b.app
                .url(&format!("/billing/authenticate?charge={}", charge.id)),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(r#"data-testid="authentication-paid""#),
        "{html}"
    );

    // Fix 12's payment: the customer fails the bank's check. A clear
    // failed state: the charge failed with our words, the card marked, the
    // fix unpaid, the page says to add another card.
    b.run_jobs().await;
    let second = b.charges().await[1].clone();
    assert_eq!(second.status, ChargeStatus::RequiresAction);
    let pi2 = second.stripe_payment_intent_id.clone().unwrap();
    let id2 = second.id.to_string();
    let (status, _, body) = b
        .app
        .server_fn(
            &browser,
            "portal/billing/authenticate/begin",
            &[("charge", &id2)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let secret2 = serde_json::from_str::<Value>(&body).unwrap()["client_secret"]
        .as_str()
        .unwrap()
        .to_owned();
    b.stripe_post(
        &format!("/v1/payment_intents/{pi2}/_authenticate"),
        &[("client_secret", &secret2), ("success", "false")],
    )
    .await;
    let (status, _, body) = b
        .app
        .server_fn(
            &browser,
            "portal/billing/authenticate/complete",
            &[("charge", &id2)],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let done: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(done["status"], "failed", "{done}");
    assert!(
        done["message"]
            .as_str()
            .unwrap()
            .contains("add another card"),
        "{done}"
    );
    let failed = b.charges().await[1].clone();
    assert_eq!(failed.status, ChargeStatus::Failed);
    assert!(
        failed
            .failure_message
            .as_deref()
            .unwrap()
            .contains("3-D Secure"),
        "{failed:?}"
    );
    assert_eq!(b.fix_status(12).await, "unpaid");
    assert!(b.customer().await.payment_failed_at.is_some());
    assert_eq!(b.emails("charge_declined").await.len(), 1);
    assert_eq!(b.ledger("purchase").await.len(), 1, "nothing booked");
    assert_eq!(b.balance().await, 0);
    let html = browser
        .get(b.app.url(&format!("/billing/authenticate?charge={id2}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(r#"data-testid="authentication-failed""#),
        "{html}"
    );
    assert!(html.contains("Add another card"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_bank_check_fails_the_charge_through_the_webhook() {
    let b = Billing::new("bill-sca-webhook").await;
    b.add_card_number(SCA_CARD).await;
    b.fixes_ok(1..=10, "credit").await;
    b.fixes_ok(11..=11, "unpaid").await;
    b.run_jobs().await;
    let charge = b.charges().await[0].clone();
    assert_eq!(charge.status, ChargeStatus::RequiresAction);
    let pi = charge.stripe_payment_intent_id.clone().unwrap();
    // Stripe's own word on the off-session attempt leaves it waiting.
    b.deliver("payment_intent.payment_failed", "evt_it_sca_needs", |e| {
        intent_of(e, &pi, charge.id, 2900);
        e["data"]["object"]["last_payment_error"] =
            json!({"type": "card_error", "code": "authentication_required"});
    })
    .await;
    assert_eq!(b.charges().await[0].status, ChargeStatus::RequiresAction);
    // A failed bank check (the customer closed the page): a decline.
    b.deliver("payment_intent.payment_failed", "evt_it_sca_failed", |e| {
        intent_of(e, &pi, charge.id, 2900);
        e["data"]["object"]["last_payment_error"] = json!({
            "type": "card_error", "code": "payment_intent_authentication_failure"
        });
    })
    .await;
    let failed = b.charges().await[0].clone();
    assert_eq!(failed.status, ChargeStatus::Failed);
    assert!(b.customer().await.payment_failed_at.is_some());
    assert_eq!(b.emails("charge_declined").await.len(), 1);
    assert_eq!(b.emails("charge_requires_action").await.len(), 1);
    assert_eq!(b.fix_status(11).await, "unpaid");
    assert_eq!(b.balance().await, 0);
}
