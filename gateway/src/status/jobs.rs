//! Long jobs started through the admin API (warm-ups, checks, evictions,
//! imports): what runs now with its progress, and how the last ones ended,
//! for the status page. A job is named by what it is, never by the bucket
//! or prefix it works on (the page is readable without a login).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// Finished jobs kept for the page.
const FINISHED_KEPT: usize = 8;

/// One job as the page shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub id: u64,
    /// `warm-up`, `check`, `evict` or `import`.
    pub kind: String,
    /// A configuration name (the imported store), or empty.
    pub name: String,
    pub started_ms: i64,
    pub updated_ms: i64,
    /// Objects and bytes done, and in all (0: not known yet).
    pub objects: u64,
    pub objects_total: u64,
    pub bytes: u64,
    pub bytes_total: u64,
    pub failures: u64,
    /// Set when it ended: `done`, `refused` or `stopped` (its client left
    /// or the node stopped).
    pub outcome: Option<String>,
    /// A line saying what it did, once it ended.
    pub summary: Option<String>,
}

#[derive(Default)]
struct Book {
    next_id: u64,
    running: BTreeMap<u64, JobStatus>,
    finished: VecDeque<JobStatus>,
}

/// The node's long jobs.
#[derive(Default)]
pub struct Jobs {
    book: Mutex<Book>,
}

impl Jobs {
    /// Records a job starting; it ends when the handle says so or drops.
    pub fn start(self: &Arc<Self>, kind: &str, name: &str) -> JobHandle {
        let now = ferry_meta::now_millis();
        let mut book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        book.next_id += 1;
        let id = book.next_id;
        book.running.insert(
            id,
            JobStatus {
                id,
                kind: kind.to_string(),
                name: name.to_string(),
                started_ms: now,
                updated_ms: now,
                ..JobStatus::default()
            },
        );
        JobHandle {
            jobs: self.clone(),
            id,
            ended: false,
        }
    }

    /// The running jobs, then the finished ones, newest first.
    pub fn list(&self) -> Vec<JobStatus> {
        let book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        book.running
            .values()
            .rev()
            .chain(book.finished.iter())
            .cloned()
            .collect()
    }

    fn update(&self, id: u64, change: impl FnOnce(&mut JobStatus)) {
        let mut book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(job) = book.running.get_mut(&id) {
            change(job);
            job.updated_ms = ferry_meta::now_millis();
        }
    }

    fn end(&self, id: u64, outcome: &str, summary: Option<String>) {
        let mut book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(mut job) = book.running.remove(&id) {
            job.outcome = Some(outcome.to_string());
            job.summary = summary;
            job.updated_ms = ferry_meta::now_millis();
            book.finished.push_front(job);
            book.finished.truncate(FINISHED_KEPT);
        }
    }
}

/// A running job's side of the book.
pub struct JobHandle {
    jobs: Arc<Jobs>,
    id: u64,
    ended: bool,
}

impl JobHandle {
    pub fn update(&self, change: impl FnOnce(&mut JobStatus)) {
        self.jobs.update(self.id, change);
    }

    pub fn end(mut self, outcome: &str, summary: Option<String>) {
        self.ended = true;
        self.jobs.end(self.id, outcome, summary);
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        if !self.ended {
            self.jobs.end(self.id, "stopped", None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_runs_then_ends_and_a_dropped_one_counts_as_stopped() {
        let jobs = Arc::new(Jobs::default());
        let first = jobs.start("warm-up", "");
        first.update(|j| {
            j.bytes = 5;
            j.bytes_total = 10;
        });
        let listed = jobs.list();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].bytes, listed[0].outcome.clone()), (5, None));
        first.end("done", Some("10 bytes".into()));
        drop(jobs.start("import", "models"));
        let listed = jobs.list();
        assert_eq!(listed[0].outcome.as_deref(), Some("stopped"));
        assert_eq!(listed[0].name, "models");
        assert_eq!(listed[1].summary.as_deref(), Some("10 bytes"));
        for n in 0..20 {
            jobs.start("check", "").end("done", Some(n.to_string()));
        }
        assert_eq!(jobs.list().len(), FINISHED_KEPT);
    }
}
