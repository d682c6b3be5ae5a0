//! [`SyncedLimiter`]: the fixed windows of [`super::check`], counted in
//! memory by each instance and synced to the shared counters in batches.

use super::{add_hits, decide, stored_bucket, Counted, Decision};
use crate::server::db::DbPool;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Shards of the in-memory map (one `std::sync::Mutex` each, held only for
/// the arithmetic of one hit, never across an `.await`).
const SHARDS: usize = 16;

/// A rate limiter for high-volume buckets (the Action API's per-key
/// budget), counting in memory per instance and syncing to PostgreSQL.
///
/// **How it counts.** Same windows as [`super::check`]: fixed, anchored at
/// the bucket's first hit, in `rate_limit_counters` shared by every
/// instance. Each instance keeps, per bucket, the global count as last
/// read from the database (`synced`) and the hits it counted since
/// (`pending`, plus those in a sync not yet answered); a hit is decided
/// on `synced + unsynced local hits`, under a mutex, with no I/O. A
/// background task ([`SyncedLimiter::spawn_syncer`]) runs [`flush`] every
/// `RATE_LIMIT_SYNC_MILLIS` (default 200 ms): ONE statement adds every
/// bucket's local delta to its shared counter (opening a new window where
/// the stored one ended) and returns the totals, which become the new
/// `synced`. A hit is counted against the database at once, exactly as
/// [`super::check`] does, when the instance's view of its bucket cannot
/// be trusted: the first hit the instance sees, the first after the
/// window ended, and the first after the view went stale (not synced for
/// two intervals, i.e. the bucket was idle here); concurrent hits on that
/// bucket wait for that one statement. So one instance alone counts
/// exactly, refused hits included.
///
/// **Error bound.** With `N` instances on one database and sync interval
/// `T`, a bucket admits at most `limit + (N − 1) × h` hits per window,
/// where `h` is the most hits one instance admits for that bucket within
/// `3 T`: an instance decides on a view at most `2 T` old (older views
/// are refreshed first, see above), and another instance's hits reach the
/// database at most `T` after they were admitted. Under-counting does not
/// happen while syncs succeed; a sync that fails is retried with its hits
/// at the next tick (a statement that failed after committing counts its
/// hits twice, the safe direction). At a window's end, hits of the ended
/// window not yet synced are dropped with it, or, when their sync reaches
/// the database after the window ended there, counted in the next window
/// (the safe direction). E.g. 3 instances,
/// 200 ms, one key at 100 requests/s per instance: at most
/// 2 × 60 = 120 hits over its limit per hour (the default limit of 500
/// per hour is never passed by more than (N − 1) × the few requests one
/// Action run makes in 600 ms).
///
/// **Shutdown.** Call [`flush`] after the last request was answered
/// (`serve` does, after draining), so no counted hit is lost.
///
/// Clones share the state. Bucket names follow [`super::check`]'s rules
/// (never a secret; one window per bucket).
///
/// [`flush`]: SyncedLimiter::flush
#[derive(Clone)]
pub struct SyncedLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Vec<Mutex<HashMap<String, Counter>>>,
    pool: DbPool,
    interval: Duration,
    /// One flush at a time (the syncer and a shutdown flush).
    flushing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for SyncedLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncedLimiter")
            .field("interval", &self.inner.interval)
            .finish_non_exhaustive()
    }
}

impl SyncedLimiter {
    /// A limiter over `pool`'s `rate_limit_counters`, synced every
    /// `interval` once [`SyncedLimiter::spawn_syncer`] runs.
    pub fn new(pool: DbPool, interval: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
                pool,
                interval: interval.max(Duration::from_millis(1)),
                flushing: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Starts the background sync on the current Tokio runtime (none: does
    /// nothing): [`SyncedLimiter::flush`] every interval, failures logged
    /// and retried at the next tick. It ends once every clone of the
    /// limiter is dropped.
    pub fn spawn_syncer(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let interval = self.inner.interval;
        runtime.spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let limiter = SyncedLimiter { inner };
                if let Err(error) = limiter.flush().await {
                    tracing::warn!(%error, "rate-limit counts not synced; retrying at the next tick");
                }
            }
        });
    }

    /// Counts one hit on `bucket` and decides it: at most `limit` hits per
    /// `window`, across instances within the bound above.
    ///
    /// Errors: the pool's or the database's message, when the hit had to
    /// be counted against the database (see above) and that failed.
    pub async fn hit(
        &self,
        bucket: &str,
        limit: u32,
        window: Duration,
    ) -> Result<Decision, String> {
        let bucket = stored_bucket(bucket).into_owned();
        let shard = &self.inner.shards[shard_of(&bucket)];
        let stale_after = self.inner.interval * 2;
        loop {
            let hit = {
                let mut map = lock(shard);
                let now = Instant::now();
                if !map.contains_key(&bucket) {
                    map.insert(bucket.clone(), Counter::new(window, now));
                }
                let Some(counter) = map.get_mut(&bucket) else {
                    continue;
                };
                match counter.hit(now, limit, stale_after) {
                    Hit::Decided(decision) => return Ok(decision),
                    Hit::Wait(receiver) => Err(receiver),
                    Hit::Load => {
                        let (sender, receiver) = watch::channel(());
                        counter.loading = Some(receiver);
                        Ok(sender)
                    }
                }
            };
            match hit {
                Ok(loader) => return self.load(shard, &bucket, limit, window, loader).await,
                // Ok or Err (the loader is gone): look again.
                Err(mut receiver) => {
                    let _ = receiver.changed().await;
                }
            }
        }
    }

    /// Counts one hit against the database at once and adopts the
    /// bucket's stored count; `loader` is dropped at the end, which wakes
    /// the hits waiting on it (also when this future is dropped early).
    async fn load(
        &self,
        shard: &Mutex<HashMap<String, Counter>>,
        bucket: &str,
        limit: u32,
        window: Duration,
        loader: watch::Sender<()>,
    ) -> Result<Decision, String> {
        let sent = Instant::now();
        let result = async {
            let mut conn = self.inner.pool.get().await.map_err(|e| e.to_string())?;
            add_hits(&mut conn, &[(bucket.to_owned(), window, 1)])
                .await
                .map_err(|e| e.to_string())?
                .pop()
                .ok_or_else(|| "the rate-limit upsert returned no row".to_owned())
        }
        .await;
        let mut map = lock(shard);
        let counter = map
            .entry(bucket.to_owned())
            .or_insert_with(|| Counter::new(window, sent));
        counter.loading = None;
        drop(loader);
        let counted = result?;
        counter.adopt(sent, &counted);
        let count = counter.synced + counter.in_flight + counter.pending;
        Ok(decide(
            limit,
            count.max(counted.hits),
            secs_until(counter.expires, Instant::now()),
        ))
    }

    /// Adds every bucket's unsynced hits to the shared counters and reads
    /// the totals back, in one statement (none when nothing is pending);
    /// drops buckets whose view has ended or gone stale with nothing
    /// pending. Returns how many buckets were synced.
    ///
    /// Errors: the pool's or the database's message; the hits stay pending
    /// for the next flush.
    pub async fn flush(&self) -> Result<usize, String> {
        let _one_at_a_time = self.inner.flushing.lock().await;
        let now = Instant::now();
        let stale_after = self.inner.interval * 2;
        // (bucket, window, hits taken, the counter's generation)
        let mut batch: Vec<(String, Duration, i64)> = Vec::new();
        let mut generations: HashMap<String, u64> = HashMap::new();
        for shard in &self.inner.shards {
            let mut map = lock(shard);
            map.retain(|_, counter| !counter.idle(now, stale_after));
            for (bucket, counter) in map.iter_mut() {
                if let Some(taken) = counter.take() {
                    batch.push((bucket.clone(), counter.window, taken));
                    generations.insert(bucket.clone(), counter.generation);
                }
            }
        }
        if batch.is_empty() {
            return Ok(0);
        }
        batch.sort_by(|a, b| a.0.cmp(&b.0));
        let sent = Instant::now();
        let result = async {
            let mut conn = self.inner.pool.get().await.map_err(|e| e.to_string())?;
            add_hits(&mut conn, &batch).await.map_err(|e| e.to_string())
        }
        .await;
        match result {
            Ok(rows) => {
                let by_bucket: HashMap<&str, &Counted> =
                    rows.iter().map(|c| (c.bucket.as_str(), c)).collect();
                for (bucket, _, taken) in &batch {
                    let mut map = lock(&self.inner.shards[shard_of(bucket)]);
                    if let Some(counter) = map.get_mut(bucket) {
                        counter.acknowledge(
                            generations[bucket],
                            *taken,
                            sent,
                            by_bucket.get(bucket.as_str()).copied(),
                        );
                    }
                }
                Ok(batch.len())
            }
            Err(error) => {
                for (bucket, _, taken) in &batch {
                    let mut map = lock(&self.inner.shards[shard_of(bucket)]);
                    if let Some(counter) = map.get_mut(bucket) {
                        counter.fail(generations[bucket], *taken);
                    }
                }
                Err(error)
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The critical sections do arithmetic only; a panic there leaves the
    // counts usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn shard_of(bucket: &str) -> usize {
    let mut hasher = DefaultHasher::new();
    bucket.hash(&mut hasher);
    (hasher.finish() % SHARDS as u64) as usize
}

/// Whole seconds from `now` to `at`, rounded up, at least 1.
fn secs_until(at: Instant, now: Instant) -> i64 {
    let left = at.saturating_duration_since(now).as_secs_f64().ceil() as i64;
    left.max(1)
}

/// What [`Counter::hit`] says to do with a hit.
#[derive(Debug)]
enum Hit {
    /// Decided in memory (and counted as pending).
    Decided(Decision),
    /// Another hit is counting against the database: wait for it, then
    /// look again.
    Wait(watch::Receiver<()>),
    /// Count this hit against the database (the caller marks the counter
    /// as loading).
    Load,
}

/// One bucket's state on this instance: the in-memory logic, no I/O.
#[derive(Debug)]
struct Counter {
    /// The bucket's window length.
    window: Duration,
    /// The window's end as this instance knows it (never later than the
    /// database's: computed from the remaining time the database reported,
    /// counted from when the statement was sent).
    expires: Instant,
    /// The stored `expires_at` (seconds since the epoch) of the window
    /// `synced` belongs to: which of two answers is the newer window.
    expires_epoch: f64,
    /// The global count as last read from the database.
    synced: i64,
    /// When `synced` was read (the statement's send time); `None` before
    /// the first read.
    synced_at: Option<Instant>,
    /// Hits counted here since the last flush took the pending ones.
    pending: i64,
    /// Hits taken by a flush that has not answered yet.
    in_flight: i64,
    /// Bumped when the instance sees the window end: answers about the
    /// previous window's hits no longer apply.
    generation: u64,
    /// Set while a hit counts against the database; others wait on it.
    loading: Option<watch::Receiver<()>>,
}

impl Counter {
    fn new(window: Duration, now: Instant) -> Self {
        Self {
            window,
            expires: now,
            expires_epoch: f64::NEG_INFINITY,
            synced: 0,
            synced_at: None,
            pending: 0,
            in_flight: 0,
            generation: 0,
            loading: None,
        }
    }

    /// Decides a hit at `now` in memory if the view can be trusted (loaded,
    /// window not ended, synced within `stale_after`).
    fn hit(&mut self, now: Instant, limit: u32, stale_after: Duration) -> Hit {
        if let Some(receiver) = &self.loading {
            if receiver.has_changed().is_ok() {
                return Hit::Wait(receiver.clone());
            }
            // The loading hit was dropped midway: take over.
            self.loading = None;
        }
        if self.synced_at.is_some() && now >= self.expires {
            // The window ended: what was counted in it no longer matters.
            self.generation += 1;
            self.synced = 0;
            self.pending = 0;
            self.in_flight = 0;
            self.synced_at = None;
        }
        match self.synced_at {
            Some(at) if now.saturating_duration_since(at) <= stale_after => {
                self.pending += 1;
                let count = self.synced + self.in_flight + self.pending;
                Hit::Decided(decide(limit, count, secs_until(self.expires, now)))
            }
            _ => Hit::Load,
        }
    }

    /// Takes the pending hits for a flush, if any.
    fn take(&mut self) -> Option<i64> {
        if self.pending == 0 {
            return None;
        }
        let taken = self.pending;
        self.pending = 0;
        self.in_flight += taken;
        Some(taken)
    }

    /// Adopts a count read at `sent`: a newer window replaces the view, the
    /// same window raises it (counts only grow within a window), an older
    /// one is ignored.
    fn adopt(&mut self, sent: Instant, counted: &Counted) {
        let remaining = Duration::from_secs_f64(counted.remaining_secs.max(0.0));
        if counted.expires_epoch > self.expires_epoch {
            self.expires_epoch = counted.expires_epoch;
            self.synced = counted.hits;
            self.expires = sent + remaining;
        } else if counted.expires_epoch == self.expires_epoch {
            self.synced = self.synced.max(counted.hits);
        } else {
            return;
        }
        self.synced_at = Some(self.synced_at.map_or(sent, |at| at.max(sent)));
    }

    /// A flush that took `taken` hits in `generation` was answered with
    /// `counted` (which includes them).
    ///
    /// Hits taken before the instance saw their window end were dropped
    /// from the counter then; the count is adopted all the same (the
    /// database may have put them in the new window: counted, the safe
    /// direction).
    fn acknowledge(
        &mut self,
        generation: u64,
        taken: i64,
        sent: Instant,
        counted: Option<&Counted>,
    ) {
        if generation == self.generation {
            self.in_flight -= taken;
        }
        if let Some(counted) = counted {
            self.adopt(sent, counted);
        }
    }

    /// A flush that took `taken` hits in `generation` failed: they are
    /// pending again.
    fn fail(&mut self, generation: u64, taken: i64) {
        if generation != self.generation {
            return;
        }
        self.in_flight -= taken;
        self.pending += taken;
    }

    /// Nothing to sync and nothing worth keeping: the window ended or the
    /// view went stale (the next hit reads the database anyway).
    fn idle(&self, now: Instant, stale_after: Duration) -> bool {
        self.pending == 0
            && self.in_flight == 0
            && self.loading.is_none()
            && (now >= self.expires
                || self
                    .synced_at
                    .is_none_or(|at| now.saturating_duration_since(at) > stale_after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counted(hits: i64, expires_epoch: f64, remaining_secs: f64) -> Counted {
        Counted {
            bucket: "b".to_owned(),
            hits,
            expires_epoch,
            remaining_secs,
        }
    }

    /// Steps of one instance's life, against a model database that other
    /// instances also write to.
    #[derive(Debug, Clone)]
    enum Step {
        Hit,
        FlushBegin,
        FlushEnd { ok: bool },
        Others(i64),
        Advance { millis: u64 },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => Just(Step::Hit),
            2 => Just(Step::FlushBegin),
            2 => any::<bool>().prop_map(|ok| Step::FlushEnd { ok }),
            1 => (0i64..5).prop_map(Step::Others),
            1 => (0u64..700).prop_map(|millis| Step::Advance { millis }),
        ]
    }

    /// The reference model, by totals: the database's count of its current
    /// window; this instance's hits not yet in it; what the last read
    /// returned and when. A decision counts `last_read + unsynced`; a view
    /// older than two intervals, or a window that ended, is read again by
    /// counting the hit in the database.
    #[derive(Debug)]
    struct Model {
        db: i64,
        window_end: Option<Instant>,
        epoch: f64,
        unsynced: i64,
        last_read: i64,
        last_read_at: Option<Instant>,
        /// The flush in progress: (hits it took, the window it took them in).
        flush: Option<(i64, f64)>,
    }

    impl Model {
        fn read(&mut self, at: Instant) -> Counted {
            self.last_read = self.db;
            self.last_read_at = Some(self.last_read_at.map_or(at, |t| t.max(at)));
            let left = self.window_end.unwrap().saturating_duration_since(at);
            counted(self.db, self.epoch, left.as_secs_f64())
        }

        /// The database opens a window at `now` if it has none open.
        fn open_window(&mut self, now: Instant, window: Duration) {
            if self.window_end.is_none_or(|end| now >= end) {
                self.window_end = Some(now + window);
                self.epoch += 10.0;
                self.db = 0;
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The in-memory counter against the reference model: every
        /// decision, and every hit either in the database or pending.
        #[test]
        fn the_counter_decides_as_the_model_and_loses_no_hit(
            limit in 1u32..30,
            steps in proptest::collection::vec(step(), 1..150),
        ) {
            let stale_after = Duration::from_millis(400);
            // Half a millisecond off the steps' grid: no step lands on a
            // window's end, which the counter knows to the nanosecond.
            let window = Duration::from_micros(2_000_500);
            let mut now = Instant::now();
            let mut counter = Counter::new(window, now);
            let mut taken_generation = 0u64;
            let mut model = Model {
                db: 0,
                window_end: None,
                epoch: 0.0,
                unsynced: 0,
                last_read: 0,
                last_read_at: None,
                flush: None,
            };

            for step in steps {
                match step {
                    Step::Hit => {
                        let ended = model.window_end.is_none_or(|end| now >= end);
                        let stale = model
                            .last_read_at
                            .is_none_or(|at| now.duration_since(at) > stale_after);
                        match counter.hit(now, limit, stale_after) {
                            Hit::Decided(decision) => {
                                prop_assert!(!ended && !stale);
                                model.unsynced += 1;
                                let count = model.last_read + model.unsynced;
                                let reset = secs_until(model.window_end.unwrap(), now);
                                prop_assert_eq!(decision, decide(limit, count, reset));
                            }
                            Hit::Load => {
                                prop_assert!(ended || stale);
                                if ended {
                                    // What was counted in the ended window is dropped.
                                    model.unsynced = 0;
                                }
                                model.open_window(now, window);
                                model.db += 1;
                                let read = model.read(now);
                                counter.adopt(now, &read);
                                let count = counter.synced + counter.in_flight + counter.pending;
                                prop_assert_eq!(count, model.db + model.unsynced);
                            }
                            Hit::Wait(_) => prop_assert!(false, "nothing is loading"),
                        }
                    }
                    Step::FlushBegin => {
                        if model.flush.is_none() {
                            if let Some(taken) = counter.take() {
                                prop_assert_eq!(taken, model.unsynced);
                                taken_generation = counter.generation;
                                model.flush = Some((taken, model.epoch));
                            }
                        }
                    }
                    Step::FlushEnd { ok } => {
                        if let Some((taken, _)) = model.flush.take() {
                            if ok {
                                // The statement runs now: in the open window,
                                // or a new one.
                                model.open_window(now, window);
                                model.db += taken;
                                if taken_generation == counter.generation {
                                    model.unsynced -= taken;
                                }
                                let read = model.read(now);
                                counter.acknowledge(taken_generation, taken, now, Some(&read));
                            } else {
                                // Pending again: still unsynced in the model.
                                counter.fail(taken_generation, taken);
                            }
                        }
                    }
                    Step::Others(n) => {
                        if model.window_end.is_some_and(|end| now < end) {
                            model.db += n;
                        }
                    }
                    Step::Advance { millis } => now += Duration::from_millis(millis),
                }
                // No hit lost: every one of this instance's hits of the
                // window is in the database or held for the next flush.
                prop_assert_eq!(counter.pending + counter.in_flight, model.unsynced);
                prop_assert!(counter.pending >= 0 && counter.in_flight >= 0);
            }
        }
    }

    #[test]
    fn one_instance_counts_exactly_and_refuses_over_the_limit() {
        let now = Instant::now();
        let stale_after = Duration::from_millis(400);
        let mut counter = Counter::new(Duration::from_secs(60), now);
        assert!(matches!(counter.hit(now, 3, stale_after), Hit::Load));
        counter.adopt(now, &counted(1, 100.0, 60.0));
        let decisions: Vec<Decision> = (0..3)
            .map(|_| match counter.hit(now, 3, stale_after) {
                Hit::Decided(d) => d,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            decisions
                .iter()
                .map(|d| (d.allowed, d.remaining))
                .collect::<Vec<_>>(),
            vec![(true, 1), (true, 0), (false, 0)]
        );
        assert_eq!(decisions[2].reset_after_secs, 60);
        // Stale after two intervals without a sync; a new window after its end.
        let later = now + Duration::from_millis(401);
        assert!(matches!(counter.hit(later, 3, stale_after), Hit::Load));
        let ended = now + Duration::from_secs(61);
        let mut counter = Counter::new(Duration::from_secs(60), now);
        counter.adopt(now, &counted(1, 100.0, 60.0));
        assert!(matches!(counter.hit(ended, 3, stale_after), Hit::Load));
        assert_eq!((counter.synced, counter.pending), (0, 0));
    }
}
