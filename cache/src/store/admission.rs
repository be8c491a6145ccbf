//! Admission of reads to one store: at most `max_requests` in flight and
//! at most `bytes_per_sec` requested, handed out strictly by priority
//! (demand reads, then readahead, then warm-up; first come first served
//! within one priority), so a cold fleet does not set off a throttling
//! storm and background work never delays a client.
//!
//! The priority of a read travels in a task-local ([`with_priority`]);
//! code that does not set one reads at [`ReadPriority::Demand`]. A
//! task-local does not cross `tokio::spawn` (nor foyer's fetch task):
//! capture [`current_priority`] before spawning and wrap the spawned
//! future again.
//!
//! The byte rate is a token bucket holding up to one second of rate, full
//! at the start. A read may start when the bucket holds its bytes, or
//! when the bucket is full for a read larger than it; either way all its
//! bytes are taken, so a large read leaves a debt the next reads pay for.
//!
//! The bucket is hand-written rather than taken from `governor`: with
//! strict priority only the head of the queue may ever spend the budget,
//! so the crate would only contribute the bucket's arithmetic, and
//! governor (0.10) refuses a batch larger than its burst outright
//! (`InsufficientCapacity`, no debt), counts cells in `u32` with a whole
//! nanosecond per cell (a byte at 200 MiB/s is 4.77 ns, so per-byte cells
//! would be off by up to 20%), and runs on its own clock rather than
//! tokio's, which the paused-time tests below need.

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Who a store read is for. Ordered by precedence: `Demand` is the
/// highest, so `ReadPriority::Demand > ReadPriority::Warmup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ReadPriority {
    /// A client is waiting for these bytes.
    #[default]
    Demand,
    /// Prefetch ahead of a sequential reader.
    Readahead,
    /// Filling the cache ahead of any request.
    Warmup,
}

impl ReadPriority {
    fn rank(self) -> u8 {
        match self {
            ReadPriority::Demand => 2,
            ReadPriority::Readahead => 1,
            ReadPriority::Warmup => 0,
        }
    }

    /// The value of the `priority` metric label.
    pub fn label(self) -> &'static str {
        match self {
            ReadPriority::Demand => "demand",
            ReadPriority::Readahead => "readahead",
            ReadPriority::Warmup => "warmup",
        }
    }
}

impl Ord for ReadPriority {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.rank().cmp(&other.rank())
    }
}

impl PartialOrd for ReadPriority {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ReadPriority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

tokio::task_local! {
    static PRIORITY: ReadPriority;
}

/// Runs `f` with store reads made inside it (in this task) at `priority`.
pub async fn with_priority<F: Future>(priority: ReadPriority, f: F) -> F::Output {
    PRIORITY.scope(priority, f).await
}

/// The priority set by the innermost [`with_priority`] around the caller,
/// or `Demand` outside any.
pub fn current_priority() -> ReadPriority {
    PRIORITY.try_with(|p| *p).unwrap_or_default()
}

/// Admission to one store. Cheap to clone: clones share the limits.
#[derive(Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

struct Inner {
    /// 0: no cap.
    max_requests: usize,
    state: Mutex<State>,
}

struct State {
    in_use: usize,
    /// Waiters, highest priority first, then in arrival order.
    queue: BTreeMap<(Reverse<ReadPriority>, u64), Queued>,
    next_seq: u64,
    bucket: Option<Bucket>,
    /// The waiter that is to sleep until the bucket can pay for it (the
    /// head of the queue when last told).
    timer: Option<u64>,
}

struct Queued {
    bytes: u64,
    ticket: Arc<Ticket>,
}

/// A queued waiter's side: woken when granted or when it is to keep the
/// rate timer. `granted` is only read and written under the state lock.
#[derive(Default)]
struct Ticket {
    notify: Notify,
    granted: AtomicBool,
}

impl Admission {
    /// `max_requests`: reads in flight at most (0: no cap).
    /// `bytes_per_sec`: bytes requested per second at most (`None` or 0:
    /// no limit), with a burst of one second of rate.
    pub fn new(max_requests: usize, bytes_per_sec: Option<u64>) -> Admission {
        Admission {
            inner: Arc::new(Inner {
                max_requests,
                state: Mutex::new(State {
                    in_use: 0,
                    queue: BTreeMap::new(),
                    next_seq: 0,
                    bucket: bytes_per_sec
                        .filter(|&rate| rate > 0)
                        .map(|rate| Bucket::new(rate, Instant::now())),
                    timer: None,
                }),
            }),
        }
    }

    /// Reads in flight (permits not yet dropped).
    pub fn in_use(&self) -> usize {
        self.inner.lock().in_use
    }

    /// Waiters queued for admission.
    pub fn queued(&self) -> usize {
        self.inner.lock().queue.len()
    }

    /// Waits for a request slot and for `bytes` of byte budget, behind
    /// every waiter of higher priority and every earlier waiter of the same
    /// priority. Cancellation-safe: dropping the future gives back
    /// whatever it was granted and lets the next waiter through.
    pub async fn acquire(&self, priority: ReadPriority, bytes: u64) -> AdmissionPermit {
        let (key, ticket) = {
            let mut state = self.inner.lock();
            if state.queue.is_empty()
                && self.inner.slot_free(&state)
                && state
                    .bucket
                    .as_mut()
                    .is_none_or(|b| b.wait(bytes, Instant::now()).is_none())
            {
                state.grant(bytes);
                return self.permit();
            }
            let seq = state.next_seq;
            state.next_seq += 1;
            let key = (Reverse(priority), seq);
            let ticket = Arc::new(Ticket::default());
            state.queue.insert(
                key,
                Queued {
                    bytes,
                    ticket: ticket.clone(),
                },
            );
            (key, ticket)
        };
        let mut waiting = Waiting {
            inner: &self.inner,
            key,
            ticket,
            bytes,
            admitted: false,
        };
        loop {
            let timer = {
                let mut state = self.inner.lock();
                let blocked = self.inner.dispatch(&mut state, Some(key.1));
                if waiting.ticket.granted.load(Ordering::Relaxed) {
                    waiting.admitted = true;
                    return self.permit();
                }
                blocked.filter(|(head, _)| *head == key.1).map(|(_, at)| at)
            };
            match timer {
                Some(at) => {
                    tokio::select! {
                        () = waiting.ticket.notify.notified() => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => waiting.ticket.notify.notified().await,
            }
        }
    }

    /// Charges `bytes` already requested to the byte budget, as a debt
    /// later reads pay: for a read whose length was not known up front.
    pub fn charge(&self, bytes: u64) {
        if let Some(bucket) = self.inner.lock().bucket.as_mut() {
            bucket.refill(Instant::now());
            bucket.take(bytes);
        }
    }

    fn permit(&self) -> AdmissionPermit {
        AdmissionPermit {
            inner: self.inner.clone(),
        }
    }
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.lock();
        f.debug_struct("Admission")
            .field("max_requests", &self.inner.max_requests)
            .field("bytes_per_sec", &state.bucket.as_ref().map(|b| b.rate))
            .field("in_use", &state.in_use)
            .field("queued", &state.queue.len())
            .finish()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent between statements, so a panic elsewhere
        // while holding the lock leaves nothing half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn slot_free(&self, state: &State) -> bool {
        self.max_requests == 0 || state.in_use < self.max_requests
    }

    /// Grants queued waiters in order while a slot is free and the bucket
    /// can pay for the head. When the bucket stops the head, returns the
    /// head's sequence number and when it can be paid for, and makes sure
    /// that waiter keeps the timer: tells it, unless it is `caller`. When
    /// no slot is free nobody keeps the timer: the next release tells the
    /// head again.
    fn dispatch(&self, state: &mut State, caller: Option<u64>) -> Option<(u64, Instant)> {
        let now = Instant::now();
        loop {
            if !self.slot_free(state) {
                state.timer = None;
                return None;
            }
            let head = state.queue.first_entry()?;
            let bytes = head.get().bytes;
            let seq = head.key().1;
            if let Some(wait) = state.bucket.as_mut().and_then(|b| b.wait(bytes, now)) {
                if state.timer != Some(seq) {
                    state.timer = Some(seq);
                    if caller != Some(seq) {
                        head.get().ticket.notify.notify_one();
                    }
                }
                return Some((seq, now + wait));
            }
            let queued = head.remove();
            if state.timer == Some(seq) {
                state.timer = None;
            }
            state.grant(bytes);
            queued.ticket.granted.store(true, Ordering::Relaxed);
            queued.ticket.notify.notify_one();
        }
    }

    fn release(&self, state: &mut State) {
        state.in_use = state.in_use.saturating_sub(1);
        self.dispatch(state, None);
    }
}

impl State {
    fn grant(&mut self, bytes: u64) {
        self.in_use += 1;
        if let Some(bucket) = self.bucket.as_mut() {
            bucket.take(bytes);
        }
    }
}

/// Takes a queued waiter out of the queue, or gives back what it was
/// granted, if its `acquire` is dropped before it returns.
struct Waiting<'a> {
    inner: &'a Inner,
    key: (Reverse<ReadPriority>, u64),
    ticket: Arc<Ticket>,
    bytes: u64,
    admitted: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.admitted {
            return;
        }
        let mut state = self.inner.lock();
        if state.timer == Some(self.key.1) {
            state.timer = None;
        }
        if self.ticket.granted.load(Ordering::Relaxed) {
            // Granted but never returned: no request was made. The head may
            // now be paid for sooner than it was told: tell it again.
            if let Some(bucket) = state.bucket.as_mut() {
                bucket.refund(self.bytes);
                state.timer = None;
            }
            self.inner.release(&mut state);
        } else {
            state.queue.remove(&self.key);
            // The head may have changed: let the next one through or give
            // it the timer.
            self.inner.dispatch(&mut state, None);
        }
    }
}

/// One request slot (and the bytes paid for), held until dropped.
pub struct AdmissionPermit {
    inner: Arc<Inner>,
}

impl Drop for AdmissionPermit {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        self.inner.release(&mut state);
    }
}

impl fmt::Debug for AdmissionPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdmissionPermit")
    }
}

/// Bytes × 10⁹ per byte, so refills are exact in whole nanoseconds.
const SCALE: i128 = 1_000_000_000;

/// A token bucket of bytes, holding up to one second of rate; the level
/// goes below zero when a read larger than what is held is let through.
struct Bucket {
    rate: u64,
    /// Bytes × [`SCALE`] held; negative is debt.
    level: i128,
    capacity: i128,
    at: Instant,
}

impl Bucket {
    fn new(rate: u64, now: Instant) -> Bucket {
        let capacity = i128::from(rate) * SCALE;
        Bucket {
            rate,
            level: capacity,
            capacity,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_nanos();
        if elapsed == 0 {
            return;
        }
        self.at = now;
        let added =
            i128::try_from(elapsed.saturating_mul(u128::from(self.rate))).unwrap_or(i128::MAX);
        self.level = self.level.saturating_add(added).min(self.capacity);
    }

    /// How long until a read of `bytes` may start: when the bucket holds
    /// them, or is full for a read larger than it. `None`: now.
    fn wait(&mut self, bytes: u64, now: Instant) -> Option<Duration> {
        self.refill(now);
        let need = i128::from(bytes.min(self.rate)) * SCALE;
        if self.level >= need {
            return None;
        }
        let short = u128::try_from(need - self.level).unwrap_or(u128::MAX);
        let nanos = short.div_ceil(u128::from(self.rate));
        Some(Duration::from_nanos(
            u64::try_from(nanos).unwrap_or(u64::MAX),
        ))
    }

    fn take(&mut self, bytes: u64) {
        self.level = self.level.saturating_sub(i128::from(bytes) * SCALE);
    }

    fn refund(&mut self, bytes: u64) {
        self.level = self
            .level
            .saturating_add(i128::from(bytes) * SCALE)
            .min(self.capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::poll;
    use std::pin::Pin;
    use std::task::Poll;

    const MIB: u64 = 1 << 20;

    type Acquiring = Pin<Box<dyn Future<Output = AdmissionPermit> + Send>>;

    /// An acquire polled once, so it is queued now (arrival order is the
    /// order of these calls).
    async fn queued(admission: &Admission, priority: ReadPriority, bytes: u64) -> Acquiring {
        let admission = admission.clone();
        let mut fut: Acquiring = Box::pin(async move { admission.acquire(priority, bytes).await });
        assert!(poll!(&mut fut).is_pending(), "{priority} was let through");
        fut
    }

    #[test]
    fn demand_is_the_highest_priority() {
        assert!(ReadPriority::Demand > ReadPriority::Readahead);
        assert!(ReadPriority::Readahead > ReadPriority::Warmup);
        assert_eq!(ReadPriority::default(), ReadPriority::Demand);
    }

    #[tokio::test]
    async fn the_task_local_priority_defaults_to_demand_and_nests() {
        assert_eq!(current_priority(), ReadPriority::Demand);
        let seen = with_priority(ReadPriority::Warmup, async {
            let outer = current_priority();
            let inner = with_priority(ReadPriority::Readahead, async { current_priority() }).await;
            (outer, inner, current_priority())
        })
        .await;
        assert_eq!(
            seen,
            (
                ReadPriority::Warmup,
                ReadPriority::Readahead,
                ReadPriority::Warmup
            )
        );
        assert_eq!(current_priority(), ReadPriority::Demand);
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_highest_priority_waiter() {
        let admission = Admission::new(1, None);
        let held = admission.acquire(ReadPriority::Demand, 0).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for priority in [
            ReadPriority::Warmup,
            ReadPriority::Readahead,
            ReadPriority::Demand,
        ] {
            let waiter = queued(&admission, priority, 0).await;
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                let permit = waiter.await;
                // Reported while the only slot is held, so the reports
                // come in the order the slot was granted.
                tx.send(priority).expect("receiver alive");
                drop(permit);
            }));
        }
        drop(tx);
        assert_eq!(admission.queued(), 3);
        drop(held);
        let mut order = Vec::new();
        while let Some(priority) = rx.recv().await {
            order.push(priority);
        }
        assert_eq!(
            order,
            [
                ReadPriority::Demand,
                ReadPriority::Readahead,
                ReadPriority::Warmup
            ]
        );
        for task in tasks {
            task.await.expect("waiter");
        }
        assert_eq!(admission.in_use(), 0);
    }

    #[tokio::test]
    async fn the_same_priority_is_first_come_first_served() {
        let admission = Admission::new(1, None);
        let held = admission.acquire(ReadPriority::Demand, 0).await;
        let mut first = queued(&admission, ReadPriority::Readahead, 0).await;
        let mut second = queued(&admission, ReadPriority::Readahead, 0).await;
        drop(held);
        assert!(poll!(&mut second).is_pending());
        let Poll::Ready(permit) = poll!(&mut first) else {
            panic!("the first waiter was not granted the slot");
        };
        drop(permit);
        assert!(poll!(&mut second).is_ready());
    }

    #[tokio::test]
    async fn a_dropped_waiter_leaks_nothing() {
        let admission = Admission::new(1, None);
        let held = admission.acquire(ReadPriority::Demand, 0).await;

        // Dropped while queued.
        let cancelled = queued(&admission, ReadPriority::Demand, 0).await;
        let mut next = queued(&admission, ReadPriority::Warmup, 0).await;
        drop(cancelled);
        assert_eq!(admission.queued(), 1);
        drop(held);
        let Poll::Ready(permit) = poll!(&mut next) else {
            panic!("the slot did not pass the dropped waiter");
        };

        // Dropped after being granted, before it was polled again.
        let granted_unseen = queued(&admission, ReadPriority::Demand, 0).await;
        let mut last = queued(&admission, ReadPriority::Warmup, 0).await;
        drop(permit);
        assert_eq!(admission.in_use(), 1, "granted to the demand waiter");
        drop(granted_unseen);
        let Poll::Ready(permit) = poll!(&mut last) else {
            panic!("a granted but dropped waiter kept the slot");
        };
        drop(permit);
        assert_eq!((admission.in_use(), admission.queued()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn the_byte_rate_holds_with_a_one_second_burst() {
        let admission = Admission::new(0, Some(MIB));
        let started = Instant::now();
        for _ in 0..4 {
            drop(admission.acquire(ReadPriority::Demand, MIB).await);
        }
        let elapsed = started.elapsed();
        assert!(
            (Duration::from_millis(2900)..=Duration::from_millis(4100)).contains(&elapsed),
            "4 MiB at 1 MiB/s after a 1 MiB burst took {elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_larger_than_the_burst_passes_and_leaves_a_debt() {
        let admission = Admission::new(0, Some(MIB));
        let started = Instant::now();
        drop(admission.acquire(ReadPriority::Demand, 4 * MIB).await);
        assert!(
            started.elapsed() < Duration::from_millis(1),
            "waits for a full bucket only"
        );
        drop(admission.acquire(ReadPriority::Demand, 1).await);
        let elapsed = started.elapsed();
        assert!(
            (Duration::from_millis(2900)..=Duration::from_millis(4100)).contains(&elapsed),
            "the 3 MiB debt took {elapsed:?} to pay"
        );
        // A charge after the fact is a debt too.
        let started = Instant::now();
        admission.charge(2 * MIB);
        drop(admission.acquire(ReadPriority::Demand, 1).await);
        assert!(started.elapsed() >= Duration::from_millis(1900));
    }

    #[tokio::test(start_paused = true)]
    async fn priority_orders_waiters_blocked_on_the_byte_rate() {
        let admission = Admission::new(0, Some(MIB));
        let started = Instant::now();
        drop(admission.acquire(ReadPriority::Demand, MIB).await);
        let warmup = queued(&admission, ReadPriority::Warmup, MIB).await;
        let demand = queued(&admission, ReadPriority::Demand, MIB).await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let tasks: Vec<_> = [
            (ReadPriority::Warmup, warmup),
            (ReadPriority::Demand, demand),
        ]
        .into_iter()
        .map(|(priority, waiter)| {
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = waiter.await;
                tx.send((priority, started.elapsed()))
                    .expect("receiver alive");
            })
        })
        .collect();
        drop(tx);
        let (first, at_first) = rx.recv().await.expect("first grant");
        let (second, at_second) = rx.recv().await.expect("second grant");
        assert_eq!(
            (first, second),
            (ReadPriority::Demand, ReadPriority::Warmup)
        );
        assert!(at_first >= Duration::from_millis(900), "{at_first:?}");
        assert!(at_second >= Duration::from_millis(1900), "{at_second:?}");
        for task in tasks {
            task.await.expect("waiter");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_timer_keeper_hands_the_timer_on() {
        let admission = Admission::new(0, Some(MIB));
        drop(admission.acquire(ReadPriority::Demand, MIB).await);
        // The head keeps the rate timer; the one behind it only waits.
        let head = queued(&admission, ReadPriority::Demand, MIB).await;
        let behind = queued(&admission, ReadPriority::Warmup, MIB).await;
        drop(head);
        let started = Instant::now();
        drop(behind.await);
        assert!(started.elapsed() <= Duration::from_millis(1100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_keeper_that_finds_no_slot_is_told_again() {
        let admission = Admission::new(1, Some(MIB));
        let started = Instant::now();
        drop(admission.acquire(ReadPriority::Demand, MIB).await);
        // The warm-up waits for the bucket (until 1 s) and keeps the timer.
        let warmup = queued(&admission, ReadPriority::Warmup, MIB).await;
        // A demand read of no known length overtakes it, takes the only
        // slot, and is charged 2 MiB once answered.
        let demand = admission.acquire(ReadPriority::Demand, 0).await;
        admission.charge(2 * MIB);
        let task = tokio::spawn(async move {
            drop(warmup.await);
            Instant::now()
        });
        // Virtual time: the warm-up wakes at 1 s and finds no slot free.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        drop(demand);
        let granted_at = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("the warm-up was never told the slot is free")
            .expect("waiter");
        let waited = granted_at - started;
        assert!(
            (Duration::from_millis(2900)..=Duration::from_millis(3100)).contains(&waited),
            "{waited:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_waiters_never_exceed_the_cap() {
        let admission = Admission::new(3, None);
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let now = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let (admission, peak, now) = (admission.clone(), peak.clone(), now.clone());
                let priority = [
                    ReadPriority::Demand,
                    ReadPriority::Readahead,
                    ReadPriority::Warmup,
                ][i % 3];
                tokio::spawn(async move {
                    let _permit = admission.acquire(priority, 0).await;
                    let in_flight = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(in_flight, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    now.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("waiter");
        }
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert_eq!((admission.in_use(), admission.queued()), (0, 0));
    }
}
