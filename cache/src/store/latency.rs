//! A fixed latency added to every request (`simulated_latency`): a 20 ms
//! object store on a laptop, for benchmarks. object_store's own throttle
//! wrapper cannot be used over local files.

use std::time::Duration;

use async_trait::async_trait;

use super::decorator::ReadDecorator;

#[derive(Debug)]
pub struct Latency(pub Duration);

#[async_trait]
impl ReadDecorator for Latency {
    async fn before_request(&self) {
        tokio::time::sleep(self.0).await;
    }
}
