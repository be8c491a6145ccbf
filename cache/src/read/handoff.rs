//! A read's blocks handed to its client, with what each holds of the
//! in-flight budget released as the client takes it.
//!
//! A client that stops reading its socket stops taking blocks: without a
//! limit, its read would hold its blocks (and their share of the budget
//! every read on the node waits for) for as long as the connection stays
//! open. So the blocks go through a one-block channel fed by a task of
//! the read's own, and a block the client has not made room for within
//! `send_timeout` ends the read: the task stops, and every permit the
//! read holds, the one of the block waiting in the channel included, is
//! released. A client that comes back finds its body broken off (the
//! connection is aborted, never a short 200 that looks whole).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::mpsc;

use crate::error::{CacheError, Result};
use crate::metrics as m;

/// Whatever a block holds while it waits for its client (budget permits);
/// released when dropped.
pub(crate) type Holds = Box<dyn Send + Sync>;

/// A block's holds, which either the client (taking the block) or the
/// feeding task (giving up on the client) releases, whichever comes first.
type Revocable = Arc<Mutex<Option<Holds>>>;

fn release(holds: &Revocable) {
    if let Ok(mut slot) = holds.lock() {
        slot.take();
    }
}

/// Hands `blocks` to the client one at a time; see the module docs.
pub(crate) fn to_client(
    mut blocks: BoxStream<'static, Result<(Bytes, Holds)>>,
    send_timeout: Duration,
) -> BoxStream<'static, Result<Bytes>> {
    let (tx, rx) = mpsc::channel::<Result<(Bytes, Revocable)>>(1);
    let stalled = Arc::new(AtomicBool::new(false));
    let gave_up = stalled.clone();
    // Ends with the read: when its blocks end or fail, when the client
    // goes away, or when the client stalls past `send_timeout`.
    tokio::spawn(async move {
        let mut waiting: Option<Revocable> = None;
        loop {
            let next = tokio::select! {
                () = tx.closed() => return,
                next = blocks.next() => next,
            };
            let Some(item) = next else { return };
            let failed = item.is_err();
            let item = item.map(|(bytes, holds)| (bytes, Arc::new(Mutex::new(Some(holds)))));
            let holds = item.as_ref().ok().map(|(_, h)| h.clone());
            match tokio::time::timeout(send_timeout, tx.send(item)).await {
                Ok(Ok(())) => {}
                // The client went away.
                Ok(Err(_)) => return,
                Err(_) => {
                    gave_up.store(true, Ordering::Release);
                    if let Some(holds) = &waiting {
                        release(holds);
                    }
                    metrics::counter!(m::READS_STALLED).increment(1);
                    tracing::debug!(
                        ?send_timeout,
                        "a client stopped taking its blocks; its read ends"
                    );
                    return;
                }
            }
            if failed {
                return;
            }
            waiting = holds;
        }
    });
    stream::unfold((rx, stalled), move |(mut rx, stalled)| async move {
        match rx.recv().await {
            Some(Ok((bytes, holds))) => {
                release(&holds);
                Some((Ok(bytes), (rx, stalled)))
            }
            Some(Err(e)) => Some((Err(e), (rx, stalled))),
            None if stalled.swap(false, Ordering::AcqRel) => Some((
                Err(CacheError::ClientStalled { send_timeout }),
                (rx, stalled),
            )),
            None => None,
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Semaphore;

    fn blocks(budget: &Arc<Semaphore>, n: usize) -> BoxStream<'static, Result<(Bytes, Holds)>> {
        let budget = budget.clone();
        stream::iter(0..n)
            .then(move |i| {
                let budget = budget.clone();
                async move {
                    let permit = budget.acquire_owned().await.expect("open");
                    Ok((Bytes::from(vec![i as u8; 4]), Box::new(permit) as Holds))
                }
            })
            .boxed()
    }

    #[tokio::test]
    async fn a_prompt_client_gets_every_block_and_the_budget_back() {
        let budget = Arc::new(Semaphore::new(2));
        let mut read = to_client(blocks(&budget, 5), Duration::from_secs(60));
        let mut got = Vec::new();
        while let Some(block) = read.next().await {
            got.push(block.expect("block")[0]);
        }
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        assert_eq!(budget.available_permits(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_client_loses_its_read_and_what_it_held() {
        let budget = Arc::new(Semaphore::new(2));
        let mut read = to_client(blocks(&budget, 100), Duration::from_secs(5));
        assert_eq!(read.next().await.expect("first").expect("block")[0], 0);
        // The client takes nothing more. The clock is paused: it moves on
        // only when every task waits, so past this virtual minute the
        // feeding task has given up, whatever the machine's speed.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            budget.available_permits(),
            2,
            "both blocks' permits came back"
        );
        // The block left in the channel comes, then the read breaks off.
        assert!(read.next().await.expect("waiting block").is_ok());
        assert!(matches!(
            read.next().await,
            Some(Err(CacheError::ClientStalled { .. }))
        ));
        assert!(read.next().await.is_none());
    }
}
