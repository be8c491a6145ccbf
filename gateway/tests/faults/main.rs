//! The fault matrix: three real `ferry serve` nodes sharing a Redis of
//! their own (AOF, fsynced on every write) for metadata and membership,
//! their data store a real S3 server (s3s-fs) behind a fault proxy, the
//! network between one of them and its peers through a link proxy, and a
//! mirror region (one gateway) following them through another link
//! proxy. For each fault, 64 readers load models through two of the nodes
//! (safetensors headers, 16 MiB ranges, whole objects, every byte
//! checked) and a writer uploads, while the fault is injected and after
//! it is removed. Each phase uploads two models: the readers load the
//! first before the fault and switch to the second, never read yet, the
//! moment it is injected, so the fault meets a cold rollout (blocks
//! fetched from owners and the store) as well as warm reads. (Faults of
//! a disk must meet cached pages: those phases read the first model
//! throughout, after n0 read it onto its disk.)
//!
//! Counted per fault: GETs that succeeded, GETs that failed visibly (an
//! S3 error or an aborted body), GETs that returned wrong or short bytes
//! (must be none, ever), the p99 and worst stall (the longest wait for
//! the next bytes within one GET), and how long failures went on after
//! the fault was removed. Every write acknowledged during a fault is read
//! back byte for byte afterwards, through the node that did not take it.
//! When the mirror's source was unreachable, the mirror must catch up
//! afterwards with nothing missing (it lists what the source lists, ETags
//! equal, and serves every acknowledged write) and nothing applied twice
//! (records applied equal positions advanced; no resync).
//!
//! Pass rules: a node killed or stopped, the store failing one request in
//! ten, a Redis stall shorter than the metadata timeout (3 s), a disk
//! failing or full (the disk tier is a cache: what it cannot give is read
//! from outside) and the mirror's source unreachable fail no GET; the
//! other faults fail only visibly. Every phase ends with the cluster
//! reading again. The table's last column shows what the fault did; where
//! a count can prove it was real (the proxy failed, dropped or delayed
//! requests, the link cut connections, the node counted disk errors or
//! found its disk full, the mirror heard nothing from its source), the
//! test asserts it.
//!
//! The test prints the matrix as a Markdown table. `FERRY_FAULT_SECONDS`
//! (default 4) is how long the load runs before each fault and after it;
//! `benches/faults.sh` runs the long form and keeps the table. It needs
//! root (n1's cache folder is a tmpfs the test mounts) and libfiu
//! (`fiu-utils`: n0's disk errors); `tests/run.sh` checks for both.

#[path = "../common/mod.rs"]
mod common;
mod disk;
mod load;
mod rig;

use std::time::{Duration, Instant};

use load::Tally;
use rig::Rig;

const MIB: usize = 1 << 20;
const BUCKET: &str = "models";

/// A fault: how it is injected and removed, and whether GETs may fail.
#[derive(Clone, Copy)]
pub enum Fault {
    NodeKilled,
    NodeStopped,
    StoreFailing,
    StoreOutage,
    StoreSlow,
    RedisRestarted,
    RedisStalledShort,
    RedisStalled,
    CacheCorrupted,
    DiskFailing,
    DiskFull,
    LinkDegraded,
    SourceUnreachable,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::NodeKilled => "a cache node killed -9, restarted after 5 s",
            Fault::NodeStopped => "a cache node SIGSTOPped for 10 s",
            Fault::StoreFailing => "the store failing 10 % of requests for 10 s",
            Fault::StoreOutage => "a 5 s store outage",
            Fault::StoreSlow => "the store answering in 2 s for 10 s",
            Fault::RedisRestarted => "Redis killed -9 and restarted",
            Fault::RedisStalledShort => "Redis SIGSTOPped for 2 s",
            Fault::RedisStalled => "Redis SIGSTOPped for 5 s",
            Fault::CacheCorrupted => {
                "a serving node's disk cache files overwritten in 256 places each"
            }
            Fault::DiskFailing => {
                "a serving node's disk failing (EIO on every read and write) for 10 s"
            }
            Fault::DiskFull => "a serving node's cache disk full for 10 s",
            Fault::SourceUnreachable => {
                "a mirror region's source unreachable (a silent link) for 30 s, a third of the readers on the mirror"
            }
            Fault::LinkDegraded => {
                "the network to a node slow (50 ms a chunk) and lossy (1 connection in 10 cut) for 10 s"
            }
        }
    }

    /// Whether the pass rule allows failed GETs (visible ones only).
    fn may_fail_gets(self) -> bool {
        matches!(
            self,
            Fault::StoreOutage
                | Fault::StoreSlow
                | Fault::RedisRestarted
                | Fault::RedisStalled
                | Fault::CacheCorrupted
                | Fault::LinkDegraded
        )
    }
}

/// One line of the matrix.
pub struct Row {
    fault: Fault,
    ok: u64,
    failed: u64,
    wrong: u64,
    p99_stall: Duration,
    worst_stall: Duration,
    /// Failures after the fault was removed: until when.
    recovery: Option<Duration>,
    writes_ok: u64,
    writes_failed: u64,
    lost: Vec<String>,
    /// What else the phase's checks found wrong.
    broken: Vec<String>,
    examples: Vec<String>,
    /// What shows the fault was real.
    evidence: String,
}

impl Row {
    pub fn of(
        fault: Fault,
        tally: &Tally,
        removed: Instant,
        lost: Vec<String>,
        broken: Vec<String>,
        evidence: String,
    ) -> Row {
        let mut stalls = tally.stalls.clone();
        stalls.sort();
        let p99 = stalls
            .get((stalls.len() * 99 / 100).min(stalls.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default();
        Row {
            fault,
            ok: tally.ok,
            failed: tally.failed,
            wrong: tally.wrong,
            p99_stall: p99,
            worst_stall: stalls.last().copied().unwrap_or_default(),
            recovery: tally
                .last_failure
                .map(|last| last.saturating_duration_since(removed)),
            writes_ok: tally.writes_ok,
            writes_failed: tally.writes_failed,
            lost,
            broken,
            examples: tally.examples.clone(),
            evidence,
        }
    }

    fn markdown(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {:.2} s | {:.2} s | {} | {} / {} | {} | {} |",
            self.fault.name(),
            self.ok,
            self.failed,
            self.wrong,
            self.p99_stall.as_secs_f64(),
            self.worst_stall.as_secs_f64(),
            match self.recovery {
                None => "no failures".to_string(),
                Some(d) => format!("{:.1} s", d.as_secs_f64()),
            },
            self.writes_ok,
            self.writes_failed,
            self.lost.len(),
            self.evidence,
        )
    }

    /// What breaks the pass rule, if anything.
    fn broken(&self) -> Option<String> {
        let mut why = Vec::new();
        if self.wrong > 0 {
            why.push(format!("{} GETs returned wrong or short bytes", self.wrong));
        }
        if !self.lost.is_empty() {
            why.push(format!("acknowledged writes lost: {:?}", self.lost));
        }
        why.extend(self.broken.iter().cloned());
        if self.failed > 0 && !self.fault.may_fail_gets() {
            why.push(format!("{} GETs failed", self.failed));
        }
        (!why.is_empty()).then(|| {
            format!(
                "{}: {} (first: {:?})",
                self.fault.name(),
                why.join("; "),
                self.examples
            )
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_survives_each_fault_of_the_matrix() {
    let load = Duration::from_secs(
        std::env::var("FERRY_FAULT_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(4),
    );
    let mut rig = Rig::start().await;
    let faults = [
        Fault::NodeKilled,
        Fault::NodeStopped,
        Fault::StoreFailing,
        Fault::StoreOutage,
        Fault::StoreSlow,
        Fault::RedisRestarted,
        Fault::RedisStalledShort,
        Fault::RedisStalled,
        Fault::LinkDegraded,
        Fault::CacheCorrupted,
        Fault::DiskFailing,
        Fault::DiskFull,
        Fault::SourceUnreachable,
    ];
    let mut rows = Vec::new();
    for (phase, fault) in faults.into_iter().enumerate() {
        let row = rig.phase(phase, fault, load).await;
        eprintln!("{}", row.markdown());
        rows.push(row);
    }
    let mut table = String::from(
        "| fault | GETs ok | GETs failed (visibly) | wrong or short | p99 stall | worst stall | failures until, after removal | writes ok / failed | acknowledged writes lost | the fault, seen |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in &rows {
        table.push_str(&row.markdown());
        table.push('\n');
    }
    println!("{table}");
    if let Ok(path) = std::env::var("FERRY_FAULT_REPORT") {
        std::fs::write(&path, &table).expect("write the report");
    }
    let broken: Vec<String> = rows.iter().filter_map(Row::broken).collect();
    assert!(broken.is_empty(), "{}\n{table}", broken.join("\n"));
}
