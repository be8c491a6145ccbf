//! Background workers under supervision: a worker that panics is logged,
//! counted (`ferry_worker_panics_total`), reported on `/health` while it
//! waits to restart, and started again after a backoff, so a bug in the
//! collector or the mirror's follower does not silently end it for the
//! life of the process.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::metrics::WORKER_PANICS;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A worker that ran this long before it panicked was healthy: its backoff
/// starts over from the first step.
const HEALTHY_RUN: Duration = Duration::from_secs(300);

/// What the node's workers went through, for `/health`.
#[derive(Default)]
pub struct Workers {
    by_name: Mutex<BTreeMap<String, WorkerState>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerState {
    pub panics: u64,
    pub last_panic: Option<String>,
    /// Panicked and waiting for its backoff before it runs again.
    pub restarting: bool,
}

impl Workers {
    /// Notes that `name` panicked with `message` and will run again.
    pub fn panicked(&self, name: &str, message: String) {
        if let Ok(mut by_name) = self.by_name.lock() {
            let state = by_name.entry(name.to_string()).or_default();
            state.panics += 1;
            state.last_panic = Some(message);
            state.restarting = true;
        }
    }

    /// Notes that `name` runs again.
    pub fn restarted(&self, name: &str) {
        if let Ok(mut by_name) = self.by_name.lock()
            && let Some(state) = by_name.get_mut(name)
        {
            state.restarting = false;
        }
    }

    pub fn state(&self, name: &str) -> Option<WorkerState> {
        self.by_name.lock().ok()?.get(name).cloned()
    }

    /// Why the node is unhealthy: a worker not running now, after a panic.
    pub fn down(&self) -> Option<String> {
        let by_name = self.by_name.lock().ok()?;
        by_name
            .iter()
            .find(|(_, s)| s.restarting)
            .map(|(name, s)| describe(name, s))
    }

    /// One line per worker that ever panicked (all running again).
    pub fn history(&self) -> Vec<String> {
        self.by_name
            .lock()
            .map(|by_name| by_name.iter().map(|(n, s)| describe(n, s)).collect())
            .unwrap_or_default()
    }
}

fn describe(name: &str, state: &WorkerState) -> String {
    format!(
        "worker {name} panicked {} time(s){}; last: {}",
        state.panics,
        if state.restarting {
            ", restarting"
        } else {
            ", running again"
        },
        state.last_panic.as_deref().unwrap_or("?")
    )
}

/// Runs the worker `start` makes until it ends (at `stop`); each time it
/// panics, starts a new one after a growing backoff.
pub async fn supervise<F, Fut>(
    name: String,
    workers: Arc<Workers>,
    stop: CancellationToken,
    start: F,
) where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut backoff = FIRST_BACKOFF;
    // At 0 from the start, so an alert on its increase sees the first panic.
    metrics::counter!(WORKER_PANICS, "worker" => name.clone()).increment(0);
    loop {
        let started = Instant::now();
        let ended = tokio::spawn(start()).await;
        let Err(failure) = ended else {
            return;
        };
        if !failure.is_panic() {
            return;
        }
        if started.elapsed() > HEALTHY_RUN {
            backoff = FIRST_BACKOFF;
        }
        let message = panic_message(failure.into_panic());
        tracing::error!(worker = %name, panic = %message, backoff_ms = backoff.as_millis() as u64, "background worker panicked; it starts again after the backoff");
        metrics::counter!(WORKER_PANICS, "worker" => name.clone()).increment(1);
        workers.panicked(&name, message);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        workers.restarted(&name);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload.downcast::<&'static str>().map_or_else(
            |_| "a panic without a message".to_string(),
            |m| m.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A worker that panics on its first two runs is started a third time,
    /// and the panics are on record; at `stop` the supervisor returns.
    #[tokio::test(start_paused = true)]
    async fn a_panicking_worker_is_started_again() {
        let workers = Arc::new(Workers::default());
        let stop = CancellationToken::new();
        let runs = Arc::new(AtomicUsize::new(0));
        let (third, mut third_started) = tokio::sync::mpsc::unbounded_channel();
        let supervisor = tokio::spawn(supervise(
            "collector".into(),
            workers.clone(),
            stop.clone(),
            {
                let (runs, stop) = (runs.clone(), stop.clone());
                move || {
                    let (runs, stop, third) = (runs.clone(), stop.clone(), third.clone());
                    async move {
                        let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                        if run <= 2 {
                            panic!("collector bug number {run}");
                        }
                        let _ = third.send(());
                        stop.cancelled().await;
                    }
                }
            },
        ));
        third_started.recv().await.expect("a third run");
        let state = workers.state("collector").expect("on record");
        assert_eq!(state.panics, 2);
        assert_eq!(state.last_panic.as_deref(), Some("collector bug number 2"));
        assert!(!state.restarting);
        assert_eq!(workers.down(), None, "running again: healthy");
        assert_eq!(workers.history().len(), 1);
        stop.cancel();
        supervisor.await.expect("the supervisor ends at stop");
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_worker_waiting_to_restart_makes_the_node_unhealthy() {
        let workers = Workers::default();
        assert_eq!(workers.down(), None);
        workers.panicked("follower", "boom".into());
        let down = workers.down().expect("down");
        assert!(down.contains("follower") && down.contains("boom"), "{down}");
        workers.restarted("follower");
        assert_eq!(workers.down(), None);
    }
}
