//! Bodies without a length (a PUT with `Transfer-Encoding: chunked`), read
//! to their end before s3s sees them: in memory up to [`IN_MEMORY`], in
//! an unlinked temporary file beyond, at most `max_put_size` each.
//!
//! What spooling costs a node is bounded: at most `max_spools` bodies are
//! collected at once, and all of them together hold at most
//! `max_spool_bytes` (memory and disk). A body is admitted before a byte
//! of it is read, and refused with 503 SlowDown when every slot is taken
//! or the budget is spent; one that outgrows what is left of the budget
//! is refused as it arrives. What a spooled body holds is released when
//! the request is done with it.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use s3s::{S3Error, s3_error};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics as m;

/// Bodies up to this size are held in memory; larger ones go to a file.
const IN_MEMORY: usize = 8 << 20;

/// Where bodies without a length wait, and how many and how much of them
/// a node takes at once.
#[derive(Clone, Debug)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Largest body (`server.max_put_size`).
    pub max_size: u64,
    /// Bodies collected at once (`server.max_spools`).
    pub max_spools: usize,
    /// Bytes all of them may hold together (`server.max_spool_bytes`).
    pub max_bytes: u64,
}

pub struct Spool {
    dir: PathBuf,
    max_size: u64,
    slots: Arc<Semaphore>,
    /// One permit per byte.
    budget: Arc<Semaphore>,
}

/// What one body being spooled holds: its slot and the bytes it took of
/// the budget. Dropped with the body.
pub struct Slot {
    _slot: OwnedSemaphorePermit,
    bytes: Option<OwnedSemaphorePermit>,
}

impl Slot {
    /// Takes `len` more bytes of `budget`, or says the budget is spent.
    fn take(&mut self, budget: &Arc<Semaphore>, len: usize) -> Result<(), S3Error> {
        let n = u32::try_from(len).map_err(|_| spent())?;
        let permit = budget.clone().try_acquire_many_owned(n).map_err(|_| {
            metrics::counter!(m::SPOOL_REFUSED, "reason" => "budget").increment(1);
            spent()
        })?;
        metrics::gauge!(m::SPOOL_BYTES).increment(len as f64);
        metrics::counter!(m::SPOOL_RECEIVED).increment(len as u64);
        match &mut self.bytes {
            Some(held) => held.merge(permit),
            None => self.bytes = Some(permit),
        }
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!(m::SPOOL_BODIES).decrement(1.0);
        if let Some(bytes) = &self.bytes {
            metrics::gauge!(m::SPOOL_BYTES).decrement(bytes.num_permits() as f64);
        }
    }
}

fn busy() -> S3Error {
    s3_error!(
        SlowDown,
        "Too many uploads without a Content-Length are in progress; retry, or send a Content-Length"
    )
}

fn spent() -> S3Error {
    s3_error!(
        SlowDown,
        "Uploads without a Content-Length hold all the space this node gives them; retry, or send a Content-Length"
    )
}

fn too_large(max: u64) -> S3Error {
    s3_error!(
        EntityTooLarge,
        "Your upload exceeds the maximum allowed size of {max} bytes"
    )
}

fn spool_error(e: std::io::Error) -> S3Error {
    crate::error::internal(format!("spooling a body without a length: {e}"))
}

/// Where a body is being collected.
enum Held {
    Memory(BytesMut),
    File(tokio::fs::File),
}

impl Spool {
    pub fn new(config: SpoolConfig) -> Spool {
        let budget = usize::try_from(config.max_bytes)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Spool {
            dir: config.dir,
            max_size: config.max_size,
            slots: Arc::new(Semaphore::new(config.max_spools)),
            budget: Arc::new(Semaphore::new(budget)),
        }
    }

    /// A slot for one more body, before any of it is read; SlowDown when
    /// every slot is taken or the budget is spent.
    pub fn admit(&self) -> Result<Slot, S3Error> {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            metrics::counter!(m::SPOOL_REFUSED, "reason" => "busy").increment(1);
            return Err(busy());
        };
        metrics::gauge!(m::SPOOL_BODIES).increment(1.0);
        let slot = Slot {
            _slot: slot,
            bytes: None,
        };
        if self.budget.available_permits() == 0 {
            metrics::counter!(m::SPOOL_REFUSED, "reason" => "budget").increment(1);
            return Err(spent());
        }
        Ok(slot)
    }

    /// Reads the body of `request` to its end and hands the request on
    /// with its Content-Length; `slot` goes with the body.
    pub async fn collect(
        &self,
        request: http::Request<s3s::Body>,
        mut slot: Slot,
    ) -> Result<http::Request<s3s::Body>, S3Error> {
        let (mut parts, mut body) = request.into_parts();
        let mut held = Held::Memory(BytesMut::new());
        let mut len: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                s3_error!(
                    IncompleteBody,
                    "The request body ended early or failed: {e}"
                )
            })?;
            len += chunk.len() as u64;
            if len > self.max_size {
                return Err(too_large(self.max_size));
            }
            slot.take(&self.budget, chunk.len())?;
            held = self.hold(held, &chunk).await?;
        }
        let body = match held {
            Held::Memory(bytes) => with_slot(
                futures::stream::iter([Ok::<_, std::io::Error>(bytes.freeze())]),
                slot,
            ),
            Held::File(mut file) => {
                file.flush().await.map_err(spool_error)?;
                file.rewind().await.map_err(spool_error)?;
                with_slot(tokio_util::io::ReaderStream::new(file), slot)
            }
        };
        parts.headers.remove(http::header::TRANSFER_ENCODING);
        parts
            .headers
            .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
        Ok(http::Request::from_parts(parts, body))
    }

    async fn hold(&self, held: Held, chunk: &Bytes) -> Result<Held, S3Error> {
        match held {
            Held::Memory(mut bytes) if bytes.len() + chunk.len() <= IN_MEMORY => {
                bytes.extend_from_slice(chunk);
                Ok(Held::Memory(bytes))
            }
            Held::Memory(bytes) => {
                // Unlinked at once: nothing is left behind, whatever happens.
                let file = tempfile::tempfile_in(&self.dir).map_err(spool_error)?;
                let mut file = tokio::fs::File::from_std(file);
                file.write_all(&bytes).await.map_err(spool_error)?;
                file.write_all(chunk).await.map_err(spool_error)?;
                Ok(Held::File(file))
            }
            Held::File(mut file) => {
                file.write_all(chunk).await.map_err(spool_error)?;
                Ok(Held::File(file))
            }
        }
    }
}

/// A body over `stream` that keeps `slot` until it is dropped.
fn with_slot<S>(stream: S, slot: Slot) -> s3s::Body
where
    S: futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
{
    let stream = stream.map(move |chunk| {
        let _held = &slot;
        chunk
    });
    s3s::Body::from(s3s::dto::StreamingBlob::wrap(
        sync_wrapper::SyncStream::new(stream),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool(dir: &std::path::Path, max_spools: usize, max_bytes: u64) -> Spool {
        Spool::new(SpoolConfig {
            dir: dir.to_path_buf(),
            max_size: 1 << 30,
            max_spools,
            max_bytes,
        })
    }

    /// A PUT whose body of `len` bytes comes in 64 KiB chunks, with no
    /// length known in advance.
    fn unsized_put(len: usize) -> http::Request<s3s::Body> {
        let chunks: Vec<std::io::Result<Bytes>> = vec![0u8; len]
            .chunks(64 << 10)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let body = s3s::Body::from(s3s::dto::StreamingBlob::wrap(
            sync_wrapper::SyncStream::new(futures::stream::iter(chunks)),
        ));
        http::Request::builder()
            .method("PUT")
            .uri("/b/k")
            .body(body)
            .expect("request")
    }

    fn code(result: Result<impl Sized, S3Error>) -> String {
        match result {
            Ok(_) => "ok".to_string(),
            Err(e) => e.code().as_str().to_string(),
        }
    }

    #[tokio::test]
    async fn a_body_beyond_the_slots_is_refused_until_one_is_done() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = spool(dir.path(), 1, 1 << 30);
        let first = spool.admit().expect("a free slot");
        assert_eq!(code(spool.admit()), "SlowDown");
        let request = spool
            .collect(unsized_put(100_000), first)
            .await
            .expect("collected");
        assert_eq!(
            request.headers()[http::header::CONTENT_LENGTH],
            "100000",
            "handed on with its length"
        );
        assert_eq!(
            code(spool.admit()),
            "SlowDown",
            "the body still holds its slot"
        );
        drop(request);
        assert_eq!(code(spool.admit()), "ok");
    }

    #[tokio::test]
    async fn bodies_share_one_byte_budget() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = spool(dir.path(), 4, 1 << 20);
        let held = spool
            .collect(unsized_put(1 << 20), spool.admit().expect("slot"))
            .await
            .expect("within the budget");
        // The budget is spent: refused before a byte is read.
        assert_eq!(code(spool.admit()), "SlowDown");
        drop(held);
        // A body larger than the whole budget is refused as it arrives.
        let slot = spool.admit().expect("slot");
        assert_eq!(
            code(spool.collect(unsized_put((1 << 20) + 1), slot).await),
            "SlowDown"
        );
        // And what it had taken is given back.
        let slot = spool.admit().expect("slot");
        assert_eq!(code(spool.collect(unsized_put(1 << 20), slot).await), "ok");
    }
}
