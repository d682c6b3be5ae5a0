//! Group commit of fix reports (issue 13): concurrent reports of one
//! customer's fixes are recorded together, under one hold of the
//! customer's lock and one commit (usually a single statement: see
//! [`record_fixes_batch`]), instead of queueing one by one behind that lock
//! (each holding it for its statements and its commit's flush).
//!
//! Within one process, each customer with reports in flight has one
//! drainer task. A report joins the customer's queue (starting the drainer
//! if none runs) and waits for its own answer. The drainer takes what is
//! queued (at most [`MAX_BATCH`] reports), records it with
//! [`record_fixes_batch`] and answers each report after the commit, so an
//! answer without error means the fix is committed. Reports arriving
//! meanwhile form the next batch. The rules are those of
//! [`record_fix_in_tx`](crate::server::billing::fixes::record_fix_in_tx),
//! applied in a sequential order (see [`record_fixes_batch`]); processes
//! do not share queues, and the customer's row lock still serialises
//! their batches and every other balance movement.

use crate::server::billing::fixes::{record_fix, record_fixes_batch, Fix, FixReport};
use crate::server::billing::notifications::EmailLinks;
use crate::server::billing::pricing::PricingCatalog;
use crate::server::billing::BillingError;
use crate::server::db::DbPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// The most reports recorded by one transaction.
pub const MAX_BATCH: usize = 64;

/// One queued report and where its answer goes.
struct Queued {
    report: FixReport,
    answer: oneshot::Sender<Result<Fix, BillingError>>,
}

/// Customers with a drainer running, and their queued reports.
type Queues = Arc<Mutex<HashMap<i64, Vec<Queued>>>>;

/// Records fix reports with group commit per customer (see the module
/// docs). Cheap to clone; clones share the queues.
#[derive(Clone)]
pub struct FixRecorder {
    pool: DbPool,
    queues: Queues,
}

impl FixRecorder {
    /// A recorder taking its connections from `pool`.
    pub fn new(pool: DbPool) -> Self {
        Self {
            pool,
            queues: Arc::default(),
        }
    }

    /// Records `report` for `customer_id` as
    /// [`record_fix`] does (same outcome, same errors), batched with the
    /// customer's concurrent reports. Answers after the batch's commit.
    /// The recording goes on when the caller stops waiting (the work is
    /// the drainer's), so a report is never left half done.
    ///
    /// Errors: as [`record_fix`]; [`BillingError::Pool`] when no
    /// connection can be had or the drainer failed before answering.
    pub async fn record(
        &self,
        pricing: &PricingCatalog,
        links: &EmailLinks,
        customer_id: i64,
        report: FixReport,
    ) -> Result<Fix, BillingError> {
        let (answer, receive) = oneshot::channel();
        let start = {
            let mut queues = lock(&self.queues);
            match queues.get_mut(&customer_id) {
                Some(queue) => {
                    queue.push(Queued { report, answer });
                    false
                }
                None => {
                    queues.insert(customer_id, vec![Queued { report, answer }]);
                    true
                }
            }
        };
        if start {
            let drainer = Drainer {
                pool: self.pool.clone(),
                queues: self.queues.clone(),
                pricing: pricing.clone(),
                links: links.clone(),
                customer_id,
            };
            tokio::spawn(drainer.run());
        }
        receive
            .await
            .unwrap_or_else(|_| Err(BillingError::Pool("fix recorder stopped".into())))
    }
}

fn lock(queues: &Queues) -> std::sync::MutexGuard<'_, HashMap<i64, Vec<Queued>>> {
    // A panic while holding the lock leaves the map consistent (every
    // critical section is a single insert, push, take or remove).
    queues
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The one task recording a customer's queued reports.
struct Drainer {
    pool: DbPool,
    queues: Queues,
    pricing: PricingCatalog,
    links: EmailLinks,
    customer_id: i64,
}

impl Drainer {
    async fn run(self) {
        // Whatever happens (even a panic), the customer's entry goes: its
        // queued answers are dropped (their waiters get an error) and the
        // next report starts a new drainer.
        let mut guard = Unregister {
            queues: self.queues.clone(),
            customer_id: self.customer_id,
            armed: true,
        };
        loop {
            let batch: Vec<Queued> = {
                let mut queues = lock(&self.queues);
                let Some(queue) = queues.get_mut(&self.customer_id) else {
                    guard.armed = false;
                    return;
                };
                if queue.is_empty() {
                    // Under the lock: a report queued after this starts
                    // a new drainer, which the guard must not unregister.
                    queues.remove(&self.customer_id);
                    guard.armed = false;
                    return;
                }
                let take = queue.len().min(MAX_BATCH);
                queue.drain(..take).collect()
            };
            self.record(batch).await;
        }
    }

    /// Records one batch and answers each of its reports.
    async fn record(&self, batch: Vec<Queued>) {
        let (reports, answers): (Vec<FixReport>, Vec<_>) =
            batch.into_iter().map(|q| (q.report, q.answer)).unzip();
        let mut conn = match self.pool.get().await {
            Ok(conn) => conn,
            Err(e) => {
                for answer in answers {
                    let _ = answer.send(Err(BillingError::Pool(e.to_string())));
                }
                return;
            }
        };
        match record_fixes_batch(
            &mut conn,
            &self.pricing,
            self.customer_id,
            &reports,
            &self.links,
        )
        .await
        {
            Ok(results) => {
                for (answer, result) in answers.into_iter().zip(results) {
                    let _ = answer.send(result);
                }
            }
            Err(error) => {
                // Each report on its own, so one report's failure is only
                // its own (a report the batch committed is found again:
                // reports are idempotent).
                tracing::warn!(customer_id = self.customer_id, error = %error, reports = reports.len(), "fix batch failed; recording its reports one by one");
                for (answer, report) in answers.into_iter().zip(&reports) {
                    let one = record_fix(
                        &mut conn,
                        &self.pricing,
                        self.customer_id,
                        report,
                        &self.links,
                    )
                    .await;
                    let _ = answer.send(one);
                }
            }
        }
    }
}

/// Removes the customer's queue when the drainer ends early (a panic),
/// unless the drainer already did (`armed` false).
struct Unregister {
    queues: Queues,
    customer_id: i64,
    armed: bool,
}

impl Drop for Unregister {
    fn drop(&mut self) {
        if self.armed {
            lock(&self.queues).remove(&self.customer_id);
        }
    }
}
