//! Faults for tests (the `testing` feature; never in a production build):
//! a store that goes down or gets slow while in use, or whose reads fail
//! after some bytes (a store dying mid-stream).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use object_store::{GetResult, Result};

use super::decorator::{Read, ReadDecorator, map_body};

/// Faults a test can switch on and off while a store is in use.
#[derive(Debug, Default)]
pub struct Faults {
    /// Every read fails while set.
    pub down: AtomicBool,
    /// Added to every request, in milliseconds.
    pub extra_delay_ms: AtomicU64,
}

/// A store obeying `faults`, and failing every read after `fail_after`
/// bytes when set.
#[derive(Debug, Default)]
pub struct Faulty {
    pub faults: Arc<Faults>,
    pub fail_after: Option<u64>,
}

#[async_trait]
impl ReadDecorator for Faulty {
    async fn before_request(&self) {
        let extra = self.faults.extra_delay_ms.load(Ordering::Relaxed);
        if extra > 0 {
            tokio::time::sleep(Duration::from_millis(extra)).await;
        }
    }

    async fn get_opts(&self, read: Read<'_>) -> Result<GetResult> {
        if self.faults.down.load(Ordering::Relaxed) {
            return Err(object_store::Error::Generic {
                store: "test",
                source: "the store is down (test fault)".into(),
            });
        }
        let result = read.pass_on().await?;
        let Some(limit) = self.fail_after else {
            return Ok(result);
        };
        let mut seen = 0u64;
        Ok(map_body(result, move |chunk| {
            let chunk = chunk?;
            seen += chunk.len() as u64;
            if seen > limit {
                return Err(object_store::Error::Generic {
                    store: "faulty",
                    source: "injected read failure".into(),
                });
            }
            Ok(chunk)
        }))
    }
}
