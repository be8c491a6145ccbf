//! The shape every store decorator shares: one concern around reads, and
//! optionally a step before every request, over an inner store. Each
//! concern is a [`ReadDecorator`] of its own file (admission, counting,
//! latency, test faults); [`Decorated`] is the one `ObjectStore` they all
//! run through, so each stays small enough to check alone. The order they
//! are stacked in is in `store::decorate`.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// One concern of a store's reads.
#[async_trait]
pub trait ReadDecorator: fmt::Debug + Send + Sync + 'static {
    /// Runs before every request that reaches the store: reads, writes,
    /// delimiter listings and copies.
    async fn before_request(&self) {}

    /// A read; by default passed on unchanged.
    async fn get_opts(&self, read: Read<'_>) -> Result<GetResult> {
        read.pass_on().await
    }
}

/// A read on its way to the inner store.
pub struct Read<'a> {
    pub inner: &'a dyn ObjectStore,
    pub location: &'a Path,
    pub options: GetOptions,
}

impl Read<'_> {
    /// Sends the read to the inner store.
    pub async fn pass_on(self) -> Result<GetResult> {
        self.inner.get_opts(self.location, self.options).await
    }
}

/// `result` with each chunk of its body passed through `each` (which may
/// also hold what must live as long as the body: a slot, a count).
pub(crate) fn map_body(
    result: GetResult,
    each: impl FnMut(Result<Bytes>) -> Result<Bytes> + Send + 'static,
) -> GetResult {
    let (meta, range, attributes) = (
        result.meta.clone(),
        result.range.clone(),
        result.attributes.clone(),
    );
    GetResult {
        payload: GetResultPayload::Stream(result.into_stream().map(each).boxed()),
        meta,
        range,
        attributes,
        extensions: Default::default(),
    }
}

/// `inner` read through `decorator`.
pub struct Decorated<D> {
    inner: Arc<dyn ObjectStore>,
    decorator: D,
}

/// Wraps `inner` in `decorator`.
pub fn decorate(
    inner: Arc<dyn ObjectStore>,
    decorator: impl ReadDecorator,
) -> Arc<dyn ObjectStore> {
    Arc::new(Decorated { inner, decorator })
}

impl<D: ReadDecorator> fmt::Debug for Decorated<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} over {:?}", self.decorator, self.inner)
    }
}

impl<D: ReadDecorator> fmt::Display for Decorated<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}({})", self.decorator, self.inner)
    }
}

#[async_trait]
impl<D: ReadDecorator> ObjectStore for Decorated<D> {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.decorator.before_request().await;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.decorator.before_request().await;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.decorator.before_request().await;
        let read = Read {
            inner: self.inner.as_ref(),
            location,
            options,
        };
        self.decorator.get_opts(read).await
    }

    /// One decorated read per range, so each is admitted and counted.
    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let mut out = Vec::with_capacity(ranges.len());
        for range in ranges {
            let options = GetOptions {
                range: Some(range.clone().into()),
                ..GetOptions::default()
            };
            out.push(self.get_opts(location, options).await?.bytes().await?);
        }
        Ok(out)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.decorator.before_request().await;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.decorator.before_request().await;
        self.inner.copy_opts(from, to, options).await
    }
}
