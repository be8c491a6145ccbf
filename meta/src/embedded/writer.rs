//! Group commit for the embedded engine: one thread owns redb's single
//! write transaction and packs every mutation waiting at the moment into
//! it, so concurrent writers share one fsync instead of queueing for one
//! each.
//!
//! Each mutation checks everything that can refuse it (missing bucket,
//! failed condition, ...) before its first write, so a refused mutation
//! leaves the shared transaction untouched. An internal error may strike
//! after writes; then the whole batch is abandoned and every mutation in
//! it fails, and nothing of it is committed.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use redb::{Database, WriteTransaction};
use tokio::sync::oneshot;

use crate::error::{MetaError, Result};

/// Most mutations per transaction: bounds the latency of the first one.
const MAX_BATCH: usize = 256;

trait Job: Send {
    fn run(self: Box<Self>, txn: &WriteTransaction) -> Box<dyn Done>;
    fn reject(self: Box<Self>, error: MetaError);
}

trait Done: Send {
    /// Whether this mutation failed in a way that may have left partial
    /// writes in the transaction.
    fn poisons(&self) -> bool;
    /// Delivers the result once the batch's fate is known.
    fn deliver(self: Box<Self>, batch: Result<(), String>);
}

struct Typed<T, F> {
    work: F,
    reply: oneshot::Sender<Result<T>>,
}

struct Outcome<T> {
    result: Result<T>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for Typed<T, F>
where
    T: Send + 'static,
    F: FnOnce(&WriteTransaction) -> Result<T> + Send + 'static,
{
    fn run(self: Box<Self>, txn: &WriteTransaction) -> Box<dyn Done> {
        let result = (self.work)(txn);
        Box::new(Outcome {
            result,
            reply: self.reply,
        })
    }

    fn reject(self: Box<Self>, error: MetaError) {
        let _ = self.reply.send(Err(error));
    }
}

impl<T: Send + 'static> Done for Outcome<T> {
    fn poisons(&self) -> bool {
        matches!(
            self.result,
            Err(MetaError::Internal(_) | MetaError::Unavailable(_))
        )
    }

    fn deliver(self: Box<Self>, batch: Result<(), String>) {
        let result = match (self.result, batch) {
            (Err(e), _) => Err(e),
            (Ok(value), Ok(())) => Ok(value),
            (Ok(_), Err(cause)) => Err(MetaError::Internal(format!(
                "the transaction was abandoned: {cause}"
            ))),
        };
        let _ = self.reply.send(result);
    }
}

/// The writer thread and the queue to it. Dropping it waits for the thread,
/// so the database file is closed when the last handle goes.
pub(super) struct GroupWriter {
    queue: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
}

impl GroupWriter {
    pub(super) fn start(db: Arc<Database>) -> Result<GroupWriter> {
        let (queue, jobs) = mpsc::channel::<Box<dyn Job>>();
        let thread = std::thread::Builder::new()
            .name("ferry-meta-writer".into())
            .spawn(move || run(&db, &jobs))
            .map_err(|e| MetaError::Internal(format!("cannot start the metadata writer: {e}")))?;
        Ok(GroupWriter {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Runs `work` inside a write transaction shared with whatever else is
    /// waiting, and returns once that transaction is durable (or abandoned).
    pub(super) async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Typed { work, reply });
        self.queue
            .as_ref()
            .ok_or_else(|| MetaError::Internal("the metadata writer has stopped".into()))?
            .send(job)
            .map_err(|_| MetaError::Internal("the metadata writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| MetaError::Internal("the metadata writer dropped a request".into()))?
    }
}

impl Drop for GroupWriter {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(db: &Database, jobs: &mpsc::Receiver<Box<dyn Job>>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let txn = match db.begin_write() {
            Ok(txn) => txn,
            Err(e) => {
                let cause = format!("redb: {e}");
                for job in batch {
                    job.reject(MetaError::Internal(cause.clone()));
                }
                continue;
            }
        };
        let mut done: Vec<Box<dyn Done>> = Vec::with_capacity(batch.len());
        let mut poisoned = None;
        let mut pending = batch.into_iter();
        for job in pending.by_ref() {
            let outcome = job.run(&txn);
            let poisons = outcome.poisons();
            done.push(outcome);
            if poisons {
                poisoned = Some("an earlier mutation in the batch failed".to_string());
                break;
            }
        }
        let fate = match poisoned {
            Some(cause) => {
                drop(txn); // aborts
                Err(cause)
            }
            None => txn.commit().map_err(|e| format!("commit failed: {e}")),
        };
        for outcome in done {
            outcome.deliver(fate.clone());
        }
        for job in pending {
            job.reject(MetaError::Internal(
                fate.clone()
                    .err()
                    .unwrap_or_else(|| "the batch was abandoned".into()),
            ));
        }
    }
}
