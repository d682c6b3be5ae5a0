//! Generative, model-based test of the money rules (issue 9, Scope 8).
//!
//! Random sequences of operations (fix reports by issue, by pull request or
//! both, through the phase store or the fix-attempt API, repeated and
//! racing; cards that work or decline; admin credit grants; job runs with a
//! lost processor answer; refunds) are applied to the real domain and router
//! on PostgreSQL with an in-memory payment processor ([`MemProcessor`],
//! Stripe-like idempotency: the same key gives back the same PaymentIntent).
//! After every operation the customer's rows are checked against the money
//! invariants; after a final drain of the job queue no fix may be left
//! unpaid while the customer could pay. One database for the whole run, a
//! new customer per case. `PROPTEST_CASES` overrides the case count (300).

use crate::harness::{email, leptos_options, stripe_config, TestDb};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestError, TestRunner};
use rsolv_platform::server::admin::customers::adjust_credits;
use rsolv_platform::server::admin::Admin;
use rsolv_platform::server::billing::ledger::ledger_sum;
use rsolv_platform::server::billing::payment_methods::{add_card, begin_card_setup, Consent};
use rsolv_platform::server::billing::ports::*;
use rsolv_platform::server::billing::refunds::{apply_refund, RefundOutcome, RefundSnapshot};
use rsolv_platform::server::db::schema::{charges, credit_ledger_entries, customers, fixes};
use rsolv_platform::server::http::router;
use rsolv_platform::server::jobs::run_until_idle;
use rsolv_platform::server::state::AppState;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const SHA: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

// --- The in-memory payment processor ------------------------------------------

/// A PaymentIntent the processor made, with the key and our charge id.
#[derive(Debug, Clone)]
struct Intent {
    key: String,
    charge: ProcessorCharge,
}

#[derive(Debug, Default)]
struct MemState {
    next: u64,
    /// (processor id, our customer id, email).
    customers: Vec<(String, i64, String)>,
    setups: HashMap<String, SetupIntentSnapshot>,
    /// Card id → (customer, declines?).
    cards: HashMap<String, (String, bool)>,
    intents: Vec<Intent>,
    /// The next creating call records its object, then answers
    /// `Unavailable` (a lost answer).
    lose_next_answer: bool,
}

/// Stripe-like enough for the charge flow; everything else `NotFound`.
#[derive(Debug, Default)]
struct MemProcessor {
    state: Mutex<MemState>,
}

impl MemProcessor {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the browser does with the card form: confirms SetupIntent
    /// `seti` with a new card that works or declines.
    fn confirm_setup(&self, seti: &str, declines: bool) {
        let mut s = self.lock();
        s.next += 1;
        let pm = format!("pm_mem_{}", s.next);
        let setup = s.setups.get_mut(seti).expect("setup intent");
        setup.status = SetupStatus::Succeeded;
        setup.payment_method = Some(pm.clone());
        let customer = setup.customer.clone().unwrap_or_default();
        s.cards.insert(pm, (customer, declines));
    }

    /// PaymentIntents per our charge id.
    fn intents_per_charge(&self) -> HashMap<i64, usize> {
        let mut per = HashMap::new();
        for i in &self.lock().intents {
            if let Some(id) = i.charge.charge_id {
                *per.entry(id).or_insert(0) += 1;
            }
        }
        per
    }

    fn find_intent(&self, pi: &str) -> Option<ProcessorCharge> {
        self.lock()
            .intents
            .iter()
            .find(|i| i.charge.id == pi)
            .map(|i| i.charge.clone())
    }
}

fn not_found<T>(what: &str) -> Result<T, ProcessorError> {
    Err(ProcessorError::NotFound(what.to_owned()))
}

fn answer(charge: ProcessorCharge) -> Result<ProcessorCharge, ProcessorError> {
    match &charge.status {
        ProcessorChargeStatus::Declined { code, decline_code } => Err(ProcessorError::Declined {
            code: code.clone(),
            decline_code: decline_code.clone(),
        }),
        _ => Ok(charge),
    }
}

#[async_trait]
impl PaymentProcessor for MemProcessor {
    async fn create_customer(
        &self,
        customer: &NewProcessorCustomer,
    ) -> Result<ProcessorCustomer, ProcessorError> {
        let mut s = self.lock();
        let id = match s.customers.iter().find(|c| c.1 == customer.customer_id) {
            Some(c) => c.0.clone(),
            None => {
                s.next += 1;
                let id = format!("cus_mem_{}", s.next);
                s.customers
                    .push((id.clone(), customer.customer_id, customer.email.clone()));
                id
            }
        };
        Ok(ProcessorCustomer {
            id,
            customer_id: Some(customer.customer_id),
            email: Some(customer.email.clone()),
        })
    }

    async fn find_customers(
        &self,
        customer_id: i64,
        email: &str,
    ) -> Result<Vec<ProcessorCustomer>, ProcessorError> {
        Ok(self
            .lock()
            .customers
            .iter()
            .filter(|c| c.1 == customer_id && c.2 == email)
            .map(|c| ProcessorCustomer {
                id: c.0.clone(),
                customer_id: Some(c.1),
                email: Some(c.2.clone()),
            })
            .collect())
    }

    async fn create_setup_intent(
        &self,
        customer: &str,
        _customer_id: i64,
        _idempotency_key: &str,
    ) -> Result<SetupIntentSnapshot, ProcessorError> {
        let mut s = self.lock();
        s.next += 1;
        let setup = SetupIntentSnapshot {
            id: format!("seti_mem_{}", s.next),
            client_secret: None,
            customer: Some(customer.to_owned()),
            status: SetupStatus::Other("requires_payment_method".into()),
            payment_method: None,
        };
        s.setups.insert(setup.id.clone(), setup.clone());
        Ok(setup)
    }

    async fn setup_intent(&self, id: &str) -> Result<SetupIntentSnapshot, ProcessorError> {
        match self.lock().setups.get(id) {
            Some(s) => Ok(s.clone()),
            None => not_found(id),
        }
    }

    async fn attach_payment_method(
        &self,
        payment_method: &str,
        customer: &str,
    ) -> Result<CardSnapshot, ProcessorError> {
        let s = self.lock();
        let Some((_, declines)) = s.cards.get(payment_method) else {
            return not_found(payment_method);
        };
        Ok(CardSnapshot {
            id: payment_method.to_owned(),
            customer: Some(customer.to_owned()),
            brand: Some("visa".into()),
            last4: Some(if *declines { "0002" } else { "4242" }.into()),
            exp_month: Some(12),
            exp_year: Some(2040),
        })
    }

    async fn detach_payment_method(&self, payment_method: &str) -> Result<(), ProcessorError> {
        not_found(payment_method)
    }

    async fn set_default_payment_method(
        &self,
        _customer: &str,
        _payment_method: &str,
    ) -> Result<(), ProcessorError> {
        Ok(())
    }

    async fn charge_off_session(
        &self,
        charge: &ChargeRequest,
    ) -> Result<ProcessorCharge, ProcessorError> {
        let mut s = self.lock();
        // Stripe: the same idempotency key answers the same PaymentIntent.
        if let Some(i) = s.intents.iter().find(|i| i.key == charge.idempotency_key) {
            return answer(i.charge.clone());
        }
        let declines = match s.cards.get(&charge.payment_method) {
            Some((_, declines)) => *declines,
            None => return not_found(&charge.payment_method),
        };
        s.next += 1;
        let made = ProcessorCharge {
            id: format!("pi_mem_{}", s.next),
            status: if declines {
                ProcessorChargeStatus::Declined {
                    code: Some("card_declined".into()),
                    decline_code: Some("generic_decline".into()),
                }
            } else {
                ProcessorChargeStatus::Succeeded
            },
            amount_cents: charge.amount_cents,
            currency: Some(charge.currency.clone()),
            charge_id: Some(charge.charge_id),
            customer: Some(charge.customer.clone()),
            created: Some(Utc::now()),
        };
        s.intents.push(Intent {
            key: charge.idempotency_key.clone(),
            charge: made.clone(),
        });
        if std::mem::take(&mut s.lose_next_answer) {
            return Err(ProcessorError::Unavailable("injected: answer lost".into()));
        }
        answer(made)
    }

    async fn find_charges(
        &self,
        customer: &str,
        charge_id: i64,
    ) -> Result<Vec<ProcessorCharge>, ProcessorError> {
        Ok(self
            .lock()
            .intents
            .iter()
            .filter(|i| {
                i.charge.charge_id == Some(charge_id)
                    && i.charge.customer.as_deref() == Some(customer)
            })
            .map(|i| i.charge.clone())
            .collect())
    }

    async fn payment_intent(&self, id: &str) -> Result<ProcessorCharge, ProcessorError> {
        match self.find_intent(id) {
            Some(c) => Ok(c),
            None => not_found(id),
        }
    }

    async fn create_invoice_item(
        &self,
        _item: &InvoiceItemRequest,
    ) -> Result<ProcessorInvoiceItem, ProcessorError> {
        Err(ProcessorError::Misconfigured(
            "no subscriptions in the model".into(),
        ))
    }

    async fn find_invoice_items(
        &self,
        _customer: &str,
        _charge_id: i64,
    ) -> Result<Vec<ProcessorInvoiceItem>, ProcessorError> {
        Ok(Vec::new())
    }

    async fn subscribe(
        &self,
        _request: &SubscribeRequest,
    ) -> Result<SubscriptionSnapshot, ProcessorError> {
        Err(ProcessorError::Misconfigured(
            "no subscriptions in the model".into(),
        ))
    }

    async fn cancel_subscription(
        &self,
        id: &str,
        _mode: CancelMode,
    ) -> Result<SubscriptionSnapshot, ProcessorError> {
        not_found(id)
    }

    async fn resume_subscription(&self, id: &str) -> Result<SubscriptionSnapshot, ProcessorError> {
        not_found(id)
    }

    async fn subscription(&self, id: &str) -> Result<SubscriptionSnapshot, ProcessorError> {
        not_found(id)
    }

    async fn invoice(&self, id: &str) -> Result<InvoiceSnapshot, ProcessorError> {
        not_found(id)
    }

    async fn list_invoices(
        &self,
        _customer: &str,
        _limit: u8,
    ) -> Result<Vec<InvoiceSnapshot>, ProcessorError> {
        Ok(Vec::new())
    }

    async fn payment_intents_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<ProcessorCharge>, ProcessorError> {
        Ok(self
            .lock()
            .intents
            .iter()
            .filter(|i| i.charge.created.is_some_and(|c| c >= since))
            .map(|i| i.charge.clone())
            .collect())
    }

    async fn invoices_since(
        &self,
        _since: DateTime<Utc>,
    ) -> Result<Vec<InvoiceSnapshot>, ProcessorError> {
        Ok(Vec::new())
    }
}

// --- Operations -------------------------------------------------------------------

/// Which numbers a report of fix `k` (issue `k`, pull request `100 + k`)
/// carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    IssueOnly,
    PrOnly,
    Both,
}

/// One report: fix `k` in 1..=3, its numbers, and whether it goes through
/// the phase store (`POST /api/v1/phases/store`, mitigation `fixed: true`)
/// or the fix-attempt API (`POST /api/v1/fix-attempts`). Issue-only reports
/// use the phase store, PR-only ones the fix-attempt API.
#[derive(Debug, Clone, Copy)]
struct Report {
    k: i64,
    how: How,
    via_phase: bool,
}

#[derive(Debug, Clone)]
enum Op {
    /// One report.
    Report(Report),
    /// The same report twice in a row.
    Duplicate(Report),
    /// Two reports at once (two requests, two connections).
    Race(Report, Report),
    /// A card is added (portal flow): working or declining.
    AddCard { declines: bool },
    /// An admin grants `n` credits.
    Grant { n: i64 },
    /// The job queue runs until idle; the first charge's answer may be lost.
    RunJobs { lose_first_answer: bool },
    /// The processor reports a full refund of the customer's `pick`-th
    /// succeeded charge (if any).
    Refund { pick: usize },
}

fn report_strategy() -> impl Strategy<Value = Report> {
    (
        1..=3i64,
        prop_oneof![Just(How::IssueOnly), Just(How::PrOnly), Just(How::Both)],
        any::<bool>(),
    )
        .prop_map(|(k, how, via_phase)| Report {
            k,
            how,
            via_phase: match how {
                How::IssueOnly => true,
                How::PrOnly => false,
                How::Both => via_phase,
            },
        })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => report_strategy().prop_map(Op::Report),
        1 => report_strategy().prop_map(Op::Duplicate),
        2 => (report_strategy(), report_strategy()).prop_map(|(a, b)| Op::Race(a, b)),
        2 => any::<bool>().prop_map(|declines| Op::AddCard { declines }),
        2 => (1..=3i64).prop_map(|n| Op::Grant { n }),
        3 => any::<bool>().prop_map(|lose_first_answer| Op::RunJobs { lose_first_answer }),
        1 => (0..3usize).prop_map(|pick| Op::Refund { pick }),
    ]
}

// --- The reference model ----------------------------------------------------------

/// What the reports of one fix identity left, as the identity rules of
/// `record_fix_in_tx` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Rows {
    #[default]
    None,
    /// One row known by its issue only.
    Issue,
    /// One row known by its pull request only.
    Pr,
    /// One row with both numbers.
    Linked,
    /// Two rows (issue-only and PR-only), not yet linked; or left apart by
    /// a merge because both carry a card charge.
    Two,
}

impl Rows {
    fn after(self, how: How) -> Rows {
        use Rows::*;
        match (self, how) {
            (Linked, _) | (_, How::Both) => Linked,
            (None, How::IssueOnly) | (Issue, How::IssueOnly) => Issue,
            (None, How::PrOnly) | (Pr, How::PrOnly) => Pr,
            (Issue, How::PrOnly) | (Pr, How::IssueOnly) | (Two, _) => Two,
        }
    }

    fn count(self) -> usize {
        match self {
            Rows::None => 0,
            Rows::Issue | Rows::Pr | Rows::Linked => 1,
            Rows::Two => 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Card {
    None,
    Working,
    Declining,
}

#[derive(Debug)]
struct Model {
    rows: [Rows; 4],
    /// The card added last (the default one).
    card: Card,
}

// --- The system under test ---------------------------------------------------------

struct Env {
    state: AppState,
    mem: Arc<MemProcessor>,
    base: String,
    client: reqwest::Client,
    db_url: String,
}

static CASE: AtomicU64 = AtomicU64::new(0);

impl Env {
    async fn onboard(&self) -> (i64, String) {
        let n = CASE.fetch_add(1, Ordering::SeqCst);
        let response = self
            .client
            .post(format!("{}/api/v1/customers/onboard", self.base))
            .json(&json!({"email": email(&format!("model{n}")), "name": "Model Customer", "source": "direct"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        (
            body["customer_id"].as_i64().unwrap(),
            body["api_key"].as_str().unwrap().to_owned(),
        )
    }

    async fn send(&self, key: &str, r: Report) -> (u16, Value) {
        let (issue, pr) = match r.how {
            How::IssueOnly => (Some(r.k), None),
            How::PrOnly => (None, Some(100 + r.k)),
            How::Both => (Some(r.k), Some(100 + r.k)),
        };
        let (path, body) = if r.via_phase {
            let mut data = json!({"fixed": true});
            if let Some(pr) = pr {
                data["prUrl"] = json!(format!("https://github.com/acme/api/pull/{pr}"));
            }
            (
                "/api/v1/phases/store",
                json!({"phase": "mitigation", "data": data, "repo": "acme/api",
                       "issueNumber": issue, "commitSha": SHA}),
            )
        } else {
            let mut body = json!({"github_org": "acme", "repo_name": "api"});
            if let Some(issue) = issue {
                body["issue_number"] = json!(issue);
            }
            if let Some(pr) = pr {
                body["pr_number"] = json!(pr);
            }
            ("/api/v1/fix-attempts", body)
        };
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("x-api-key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        assert!(
            matches!(status, 200 | 201 | 402),
            "report {r:?}: {status} {value}"
        );
        (status, value)
    }

    async fn conn(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.db_url).await.unwrap()
    }

    async fn run_jobs(&self) {
        run_until_idle(&self.state).await.expect("job queue");
    }

    /// Makes every waiting job due now (as time passing would: retries
    /// after a lost answer wait for their backoff).
    async fn make_jobs_due(&self, conn: &mut AsyncPgConnection) {
        diesel::sql_query("UPDATE jobs SET run_at = now() WHERE run_at > now()")
            .execute(conn)
            .await
            .unwrap();
    }
}

/// The customer's rows as the checks need them.
struct Snapshot {
    balance: i64,
    ledger_sum: i64,
    payment_failed: bool,
    /// (id, issue, pr, billing status).
    fixes: Vec<(i64, Option<i64>, Option<i64>, String)>,
    /// (kind, idempotency key).
    ledger: Vec<(String, String)>,
    /// (id, fix id, status, payment intent, amount cents).
    charges: Vec<(i64, i64, String, Option<String>, i64)>,
}

async fn snapshot(conn: &mut AsyncPgConnection, customer_id: i64) -> Snapshot {
    let (balance, failed_at): (i64, Option<DateTime<Utc>>) = customers::table
        .find(customer_id)
        .select((customers::credit_balance, customers::payment_failed_at))
        .first(conn)
        .await
        .unwrap();
    Snapshot {
        balance,
        ledger_sum: ledger_sum(conn, customer_id).await.unwrap(),
        payment_failed: failed_at.is_some(),
        fixes: fixes::table
            .filter(fixes::customer_id.eq(customer_id))
            .order(fixes::id.asc())
            .select((
                fixes::id,
                fixes::issue_number,
                fixes::pr_number,
                fixes::billing_status,
            ))
            .load(conn)
            .await
            .unwrap(),
        ledger: credit_ledger_entries::table
            .filter(credit_ledger_entries::customer_id.eq(customer_id))
            .select((
                credit_ledger_entries::kind,
                credit_ledger_entries::idempotency_key,
            ))
            .load(conn)
            .await
            .unwrap(),
        charges: charges::table
            .filter(charges::customer_id.eq(customer_id))
            .order(charges::id.asc())
            .select((
                charges::id,
                charges::fix_id,
                charges::status,
                charges::stripe_payment_intent_id,
                charges::amount_cents,
            ))
            .load(conn)
            .await
            .unwrap(),
    }
}

impl Snapshot {
    fn rows_of(&self, k: i64) -> Vec<i64> {
        self.fixes
            .iter()
            .filter(|f| f.1 == Some(k) || f.2 == Some(100 + k))
            .map(|f| f.0)
            .collect()
    }

    fn live_charges(&self, fix_id: i64) -> usize {
        self.charges
            .iter()
            .filter(|c| c.1 == fix_id && c.2 != "failed")
            .count()
    }
}

/// Every invariant, after operation `step` (for the message).
fn check(s: &Snapshot, model: &mut Model, mem: &MemProcessor, step: &str) {
    assert_eq!(
        s.balance, s.ledger_sum,
        "{step}: cached balance differs from the ledger"
    );
    assert!(s.balance >= 0, "{step}: negative balance {}", s.balance);

    // One fix per identity, as the identity rules say.
    for k in 1..=3 {
        let rows = s.rows_of(k);
        let expected = model.rows[k as usize];
        if expected == Rows::Linked && rows.len() == 2 {
            // The documented exception: both rows carry a card charge (of
            // any status) and are left apart for an admin.
            assert!(
                rows.iter().all(|id| s.charges.iter().any(|c| c.1 == *id)),
                "{step}: fix {k} reported with both numbers is still two rows {rows:?} \
                 without card charges on both: {:?}",
                s.charges
            );
            model.rows[k as usize] = Rows::Two;
            continue;
        }
        assert_eq!(
            rows.len(),
            expected.count(),
            "{step}: fix {k} has rows {rows:?}, the model expects {expected:?}; fixes {:?}",
            s.fixes
        );
    }
    assert_eq!(
        s.fixes.len(),
        (1..=3).map(|k| s.rows_of(k).len()).sum::<usize>(),
        "{step}: a fix row belongs to no reported identity: {:?}",
        s.fixes
    );

    // Idempotency keys are unique per customer.
    let mut keys: HashMap<&str, usize> = HashMap::new();
    for (_, key) in &s.ledger {
        *keys.entry(key).or_insert(0) += 1;
    }
    assert!(
        keys.values().all(|n| *n == 1),
        "{step}: a ledger idempotency key is used twice: {:?}",
        s.ledger
    );

    let intents = mem.intents_per_charge();
    for (id, _, _, status) in &s.fixes {
        let consumed = s
            .ledger
            .iter()
            .filter(|(kind, key)| kind == "fix_consumed" && *key == format!("fix:{id}"))
            .count();
        let succeeded = s
            .charges
            .iter()
            .filter(|c| c.1 == *id && c.2 == "succeeded")
            .count();
        match status.as_str() {
            "credit" => {
                assert_eq!(consumed, 1, "{step}: credit fix {id} without its one debit");
                assert_eq!(succeeded, 0, "{step}: credit fix {id} was also charged");
            }
            "charged" => {
                assert_eq!(succeeded, 1, "{step}: charged fix {id}: {:?}", s.charges);
                assert_eq!(consumed, 1, "{step}: charged fix {id} without its debit");
            }
            _ => {}
        }
        assert!(
            s.live_charges(*id) <= 1,
            "{step}: fix {id} has more than one live charge: {:?}",
            s.charges
        );
    }
    for (charge_id, ..) in &s.charges {
        let n = intents.get(charge_id).copied().unwrap_or(0);
        assert!(
            n <= 1,
            "{step}: charge {charge_id} has {n} PaymentIntents at the processor"
        );
    }
}

async fn apply(env: &Env, customer_id: i64, key: &str, i: usize, op: &Op, model: &mut Model) {
    match op {
        Op::Report(r) => {
            env.send(key, *r).await;
            model.rows[r.k as usize] = model.rows[r.k as usize].after(r.how);
        }
        Op::Duplicate(r) => {
            env.send(key, *r).await;
            env.send(key, *r).await;
            model.rows[r.k as usize] = model.rows[r.k as usize].after(r.how);
        }
        Op::Race(a, b) => {
            tokio::join!(env.send(key, *a), env.send(key, *b));
            // Serialised by the customer's lock; the model's outcome is the
            // same in either order.
            model.rows[a.k as usize] = model.rows[a.k as usize].after(a.how);
            model.rows[b.k as usize] = model.rows[b.k as usize].after(b.how);
        }
        Op::AddCard { declines } => {
            let mut conn = env.conn().await;
            let setup = begin_card_setup(env.mem.as_ref(), &mut conn, customer_id)
                .await
                .expect("card setup");
            env.mem.confirm_setup(&setup.id, *declines);
            add_card(
                env.mem.as_ref(),
                &mut conn,
                &env.state.config.pricing,
                customer_id,
                &setup.id,
                &Consent {
                    given: true,
                    user_id: None,
                    ip: None,
                    user_agent: Some("model test".into()),
                },
            )
            .await
            .expect("add card");
            model.card = if *declines {
                Card::Declining
            } else {
                Card::Working
            };
        }
        Op::Grant { n } => {
            let mut conn = env.conn().await;
            adjust_credits(
                &mut conn,
                &env.state.config.pricing,
                &Admin::cli(),
                customer_id,
                *n,
                "model test grant",
                &format!("model-{customer_id}-{i}"),
            )
            .await
            .expect("admin grant");
        }
        Op::RunJobs { lose_first_answer } => {
            env.mem.lock().lose_next_answer = *lose_first_answer;
            env.run_jobs().await;
            env.mem.lock().lose_next_answer = false;
        }
        Op::Refund { pick } => {
            let mut conn = env.conn().await;
            let s = snapshot(&mut conn, customer_id).await;
            let paid: Vec<_> = s
                .charges
                .iter()
                .filter(|c| c.2 == "succeeded" && c.3.is_some())
                .collect();
            if let Some((_, _, _, Some(pi), amount)) = paid.get(*pick).map(|c| (*c).clone()) {
                let refund = RefundSnapshot {
                    processor_charge_id: format!("ch_{pi}"),
                    payment_intent_id: Some(pi.clone()),
                    amount_cents: amount,
                    amount_refunded_cents: amount,
                };
                let outcome = conn
                    .transaction(async |c| apply_refund(c, &refund).await)
                    .await
                    .expect("refund");
                assert!(
                    matches!(outcome, RefundOutcome::Refunded { .. }),
                    "{outcome:?}"
                );
            }
        }
    }
}

async fn run_case(env: &Env, ops: &[Op]) {
    let (customer_id, key) = env.onboard().await;
    env.run_jobs().await; // the processor's Customer
    let mut model = Model {
        rows: [Rows::None; 4],
        card: Card::None,
    };
    let mut conn = env.conn().await;
    for (i, op) in ops.iter().enumerate() {
        apply(env, customer_id, &key, i, op, &mut model).await;
        let s = snapshot(&mut conn, customer_id).await;
        check(&s, &mut model, &env.mem, &format!("after op {i} {op:?}"));
    }
    // The drain: every job runs, retries included.
    for _ in 0..2 {
        env.make_jobs_due(&mut conn).await;
        env.run_jobs().await;
    }
    let s = snapshot(&mut conn, customer_id).await;
    check(&s, &mut model, &env.mem, "after the drain");
    let can_pay = s.balance > 0 || (model.card == Card::Working && !s.payment_failed);
    let unpaid: Vec<_> = s.fixes.iter().filter(|f| f.3 == "unpaid").collect();
    assert!(
        !can_pay || unpaid.is_empty(),
        "after the drain: fixes {unpaid:?} unpaid although the customer can pay \
         (balance {}, card {:?}, payment failed {}); charges {:?}",
        s.balance,
        model.card,
        s.payment_failed,
        s.charges
    );
}

#[test]
fn money_invariants_hold_for_random_operation_sequences() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let db = runtime.block_on(TestDb::new());
    let mem = Arc::new(MemProcessor::default());
    let env = runtime.block_on(async {
        // No free credits, so fixes beyond grants go to the card; the key
        // only lets the Stripe-calling jobs be claimed (calls go to `mem`).
        let config = stripe_config(
            &db.url,
            "http://127.0.0.1:9",
            &[
                ("PRICING_TRIAL_CREDITS", "0"),
                ("PRICING_BILLING_BONUS_CREDITS", "0"),
                ("RATE_LIMIT_ACTION_PER_HOUR", "1000000"),
                ("RATE_LIMIT_SIGNUPS_PER_MINUTE", "1000000"),
            ],
        );
        let processor: Arc<dyn PaymentProcessor> = mem.clone();
        let state = AppState::new(config, leptos_options(), processor).expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app =
            router(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Env {
            state,
            mem: mem.clone(),
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            db_url: db.url.clone(),
        }
    });
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let config = ProptestConfig {
        cases,
        max_shrink_iters: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let started = std::time::Instant::now();
    let mut runner = TestRunner::new(config);
    let result = runner.run(&prop::collection::vec(op_strategy(), 1..25), |ops| {
        runtime.block_on(run_case(&env, &ops));
        Ok(())
    });
    eprintln!(
        "model test: {cases} cases in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, ops)) => {
            panic!("{reason}\nminimal failing operation sequence:\n{ops:#?}")
        }
        Err(TestError::Abort(reason)) => panic!("aborted: {reason}"),
    }
    drop(env);
    runtime.shutdown_background();
    drop(db);
}
