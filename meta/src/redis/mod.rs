//! The Redis engine: one namespace shared by many gateways.
//!
//! Each mutating call is one Lua script (see [`scripts`]), so it is atomic
//! with its change-log record, blob reference counts and deletion-queue
//! records, and two gateways writing one key leave exactly one winner. Key
//! layout: see [`keys`]. Durability comes from Redis's AOF, which `open`
//! checks.
//!
//! Every call has a deadline; a lost connection or a missed deadline is
//! `MetaError::Unavailable`, and the connection manager reconnects on the
//! next call without reopening the engine.

mod connection;
mod keys;
mod scripts;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::{RedisError, ScriptInvocation, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use self::connection::Connection;
use self::keys::*;
use self::scripts::Scripts;
use crate::Meta;
use crate::error::{MetaError, Result};
use crate::types::*;

/// How long one Redis call may take before it is `Unavailable`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// At most this many keys and common prefixes per listing page, whatever the
/// query asks: a page is one script, and a script blocks Redis while it runs.
/// A shorter page is still a valid page (it says it is truncated).
const MAX_PAGE: usize = 10_000;

/// Entries (or blob reference counts) one step of a replica reset removes:
/// each step is one script, which blocks Redis while it runs.
const RESET_BATCH: usize = 1_000;

/// Uploads and parts DELETE_BUCKET aborts with the bucket in its one
/// script; a bucket whose uploads hold more has some aborted first.
const BUCKET_UPLOADS_BATCH: usize = 1_000;

/// Uploads aborted (one script each) before DELETE_BUCKET is tried again.
const ABORT_BATCH: usize = 100;

/// Rounds of aborting before a bucket whose uploads keep arriving is given up.
const DELETE_BUCKET_ROUNDS: usize = 1_000;

/// Handle to a Redis-backed namespace. Cheap to clone.
#[derive(Clone)]
pub struct RedisMeta {
    conn: Connection,
    keys: Arc<Keys>,
    scripts: Arc<Scripts>,
    timeout: Duration,
    /// The URL without its password, for messages.
    url: Arc<str>,
    /// Keys one listing script may read (see `listing`).
    list_read_budget: usize,
}

impl std::fmt::Debug for RedisMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisMeta")
            .field("url", &self.url)
            .field("keys", &self.keys)
            .finish()
    }
}

/// The URL with any password replaced, safe to log.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let shown = if user.is_empty() {
                "***".to_string()
            } else {
                format!("{user}:***")
            };
            format!("{scheme}://{shown}@{host}{path}")
        }
        None => url.to_string(),
    }
}

fn redis_err(e: RedisError) -> MetaError {
    use redis::{ErrorKind, ServerErrorKind};
    let transient = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            )
        )
        // Redis refuses writes it cannot persist (MISCONF), while a long
        // script runs (BUSY) or when out of memory (OOM); all may pass.
        || matches!(e.code(), Some("MISCONF" | "BUSY" | "OOM"));
    if transient {
        MetaError::Unavailable(format!("redis: {e}"))
    } else {
        MetaError::Internal(format!("redis: {e}"))
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(MetaError::internal)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| MetaError::Internal(format!("corrupt record: {e}")))
}

fn unexpected(what: &str, value: &Value) -> MetaError {
    MetaError::Internal(format!("unexpected reply from redis for {what}: {value:?}"))
}

fn bytes_of(value: Value, what: &str) -> Result<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Ok(bytes),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        other => Err(unexpected(what, &other)),
    }
}

fn opt_bytes_of(value: Value, what: &str) -> Result<Option<Vec<u8>>> {
    match value {
        Value::Nil => Ok(None),
        other => bytes_of(other, what).map(Some),
    }
}

fn int_of(value: Value, what: &str) -> Result<i64> {
    match value {
        Value::Int(n) => Ok(n),
        Value::BulkString(ref b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| unexpected(what, &value)),
        other => Err(unexpected(what, &other)),
    }
}

fn array_of(value: Value, what: &str) -> Result<Vec<Value>> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(unexpected(what, &other)),
    }
}

fn string_of(bytes: Vec<u8>, what: &str) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| MetaError::Internal(format!("corrupt {what}: {e}")))
}

/// A script's status and the rest of its reply.
fn status_of(value: Value, what: &str) -> Result<(String, std::vec::IntoIter<Value>)> {
    let mut items = array_of(value, what)?.into_iter();
    let status = items
        .next()
        .ok_or_else(|| MetaError::Internal(format!("empty reply for {what}")))?;
    let status = string_of(bytes_of(status, what)?, what)?;
    Ok((status, items))
}

/// Turns a script's error status into the error the trait promises.
fn status_error(status: &str, bucket: &str, key: &str, upload_id: &str) -> MetaError {
    match status {
        "nobucket" => MetaError::NoSuchBucket {
            bucket: bucket.into(),
        },
        "exists" => MetaError::BucketExists {
            bucket: bucket.into(),
        },
        "notempty" => MetaError::BucketNotEmpty {
            bucket: bucket.into(),
        },
        "nokey" => MetaError::NoSuchKey {
            bucket: bucket.into(),
            key: key.into(),
        },
        "precondition" => MetaError::PreconditionFailed {
            bucket: bucket.into(),
            key: key.into(),
        },
        "noupload" => MetaError::NoSuchUpload {
            bucket: bucket.into(),
            key: key.into(),
            upload_id: upload_id.into(),
        },
        other => MetaError::Internal(format!("unknown script status {other:?}")),
    }
}

fn next_value(items: &mut std::vec::IntoIter<Value>, what: &str) -> Result<Value> {
    items
        .next()
        .ok_or_else(|| MetaError::Internal(format!("short reply for {what}")))
}

/// `(kind, etag)` arguments of a precondition.
fn condition_args(condition: &Precondition) -> (&'static str, &str) {
    match condition {
        Precondition::None => ("none", ""),
        Precondition::IfAbsent => ("absent", ""),
        Precondition::IfExists => ("exists", ""),
        Precondition::IfMatch(etag) => ("match", etag.as_str()),
        Precondition::IfNoneMatch(etag) => ("nonematch", etag.as_str()),
    }
}

/// The common prefix `key` rolls up into, if any (as in `listing`).
fn common_prefix<'k>(key: &'k str, prefix: &str, delimiter: Option<&str>) -> Option<&'k str> {
    let delimiter = delimiter.filter(|d| !d.is_empty())?;
    let rest = key.get(prefix.len()..)?;
    let at = rest.find(delimiter)?;
    Some(&key[..prefix.len() + at + delimiter.len()])
}

/// Where a listing starts: the prefix, or past `start_after` (past its whole
/// group when it falls inside one), whichever is later.
fn list_start(query: &ListQuery) -> Vec<u8> {
    let mut from = query.prefix.as_bytes().to_vec();
    if let Some(after) = &query.start_after {
        let resume = match common_prefix(after, &query.prefix, query.delimiter.as_deref()) {
            Some(group) if after.starts_with(&query.prefix) => {
                let mut bound = group.as_bytes().to_vec();
                bound.push(0xFF);
                bound
            }
            _ => {
                let mut bound = after.as_bytes().to_vec();
                bound.push(0);
                bound
            }
        };
        if resume > from {
            from = resume;
        }
    }
    from
}

impl RedisMeta {
    /// Connects to `url` with keys under `{prefix}:`. Refuses a Redis without
    /// AOF persistence unless `allow_volatile`.
    pub async fn open(url: &str, prefix: &str, allow_volatile: bool) -> Result<RedisMeta> {
        Self::open_with_timeout(url, prefix, allow_volatile, DEFAULT_TIMEOUT).await
    }

    /// Connects to the Redis Cluster that `url` (any one of its nodes) is
    /// part of, with the prefix written as a hash tag so every key of the
    /// volume shares one slot (see [`keys`]). Persistence is checked as in
    /// [`RedisMeta::open`], on one node.
    pub async fn open_cluster(url: &str, prefix: &str, allow_volatile: bool) -> Result<RedisMeta> {
        let conn = Connection::open(url, true, DEFAULT_TIMEOUT).await?;
        RedisMeta::ready(
            conn,
            Keys::cluster(prefix),
            DEFAULT_TIMEOUT,
            url,
            allow_volatile,
        )
        .await
    }

    /// [`RedisMeta::open`] with a deadline for every Redis call other than the default.
    pub async fn open_with_timeout(
        url: &str,
        prefix: &str,
        allow_volatile: bool,
        timeout: Duration,
    ) -> Result<RedisMeta> {
        let conn = Connection::open(url, false, timeout).await?;
        RedisMeta::ready(conn, Keys::new(prefix), timeout, url, allow_volatile).await
    }

    /// The engine over `conn`, once its Redis is checked for persistence.
    async fn ready(
        conn: Connection,
        keys: Keys,
        timeout: Duration,
        url: &str,
        allow_volatile: bool,
    ) -> Result<RedisMeta> {
        let meta = RedisMeta {
            conn,
            keys: Arc::new(keys),
            scripts: Arc::new(Scripts::new()),
            timeout,
            url: redact(url).into(),
            list_read_budget: crate::LIST_READ_BUDGET,
        };
        meta.check_persistence(allow_volatile).await?;
        Ok(meta)
    }

    /// The same namespace with listing scripts that read at most `keys`
    /// keys each (at least 1); the default is [`crate::LIST_READ_BUDGET`].
    #[must_use]
    pub fn with_list_read_budget(mut self, keys: usize) -> RedisMeta {
        self.list_read_budget = keys.max(1);
        self
    }

    /// Refuses (or warns about) a Redis that would lose acknowledged writes
    /// on restart.
    async fn check_persistence(&self, allow_volatile: bool) -> Result<()> {
        let url = &self.url;
        let appendonly = match self.config_get("appendonly").await {
            Ok(value) => value,
            Err(MetaError::Internal(e)) => {
                // CONFIG is often disabled on managed Redis.
                tracing::warn!(
                    redis = %url,
                    error = %e,
                    "cannot read the persistence settings of redis (CONFIG GET refused); \
                     make sure it runs with appendonly yes and appendfsync everysec or always, \
                     or metadata may be lost on restart"
                );
                return Ok(());
            }
            Err(other) => return Err(other),
        };
        match appendonly.as_deref() {
            Some("yes") => {
                if let Ok(Some(fsync)) = self.config_get("appendfsync").await
                    && fsync == "no"
                {
                    tracing::warn!(
                        redis = %url,
                        "redis runs with appendfsync no: metadata written in the last seconds \
                         before a machine crash may be lost; prefer everysec or always"
                    );
                }
                Ok(())
            }
            Some(_) if !allow_volatile => Err(MetaError::Internal(format!(
                "redis at {url} has AOF persistence off (appendonly no), so a restart of redis would lose \
                 this volume's metadata. Enable it (appendonly yes with appendfsync everysec or always, \
                 in redis.conf or with CONFIG SET appendonly yes + CONFIG REWRITE), or set \
                 meta.allow_volatile_redis = true to accept losing metadata"
            ))),
            Some(_) => {
                tracing::warn!(
                    redis = %url,
                    "redis has AOF persistence off (appendonly no) and meta.allow_volatile_redis = true: \
                     a restart of redis loses this volume's metadata"
                );
                Ok(())
            }
            None => {
                tracing::warn!(redis = %url, "redis did not report appendonly; cannot check persistence");
                Ok(())
            }
        }
    }

    async fn config_get(&self, name: &str) -> Result<Option<String>> {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg(name);
        let reply: HashMap<String, String> = self.query(&cmd).await?;
        Ok(reply.get(name).cloned())
    }

    /// Runs `fut` with the call deadline.
    async fn deadline<T>(&self, fut: impl Future<Output = redis::RedisResult<T>>) -> Result<T> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(result) => result.map_err(redis_err),
            Err(_) => Err(MetaError::Unavailable(format!(
                "redis at {} did not answer within {:?}",
                self.url, self.timeout
            ))),
        }
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        let mut conn = self.conn.clone();
        self.deadline(cmd.query_async(&mut conn)).await
    }

    async fn query_pipe<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T> {
        let mut conn = self.conn.clone();
        self.deadline(pipe.query_async(&mut conn)).await
    }

    async fn invoke(&self, invocation: &ScriptInvocation<'_>) -> Result<Value> {
        let mut conn = self.conn.clone();
        self.deadline(invocation.invoke_async(&mut conn)).await
    }

    /// KEYS[1..9] of the scripts that write or remove an entry (PUT,
    /// COMPLETE_UPLOAD, DELETE, APPLY_PUT, APPLY_DELETE), in the order the
    /// scripts' `commit_keys()` names them.
    fn commit_keys<'i, 's>(
        &self,
        invocation: &'i mut ScriptInvocation<'s>,
        bucket: &str,
    ) -> &'i mut ScriptInvocation<'s> {
        let k = &self.keys;
        invocation
            .key(k.buckets())
            .key(k.keys(bucket))
            .key(k.entries(bucket))
            .key(k.layouts())
            .key(k.layout_blobs())
            .key(k.refs())
            .key(k.queue())
            .key(k.seq())
            .key(k.log())
    }

    /// ARGV[1..11] of the scripts that write an entry (PUT, COMPLETE_UPLOAD,
    /// APPLY_PUT), in the order the scripts' `commit_args()` names them.
    fn commit_args<'i, 's>(
        invocation: &'i mut ScriptInvocation<'s>,
        bucket: &str,
        key: &str,
        entry: &Entry,
        layout: &Layout,
        condition: &Precondition,
    ) -> Result<&'i mut ScriptInvocation<'s>> {
        let (kind, etag) = condition_args(condition);
        Ok(invocation
            .arg(bucket)
            .arg(key)
            .arg(kind)
            .arg(etag)
            .arg(encode(entry)?)
            .arg(&entry.id)
            .arg(encode(layout)?)
            .arg(blob_list(&layout.blobs()))
            .arg(now_millis())
            .arg(encode(&bucket)?)
            .arg(encode(&key)?))
    }

    fn put_outcome(
        &self,
        reply: Value,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<PutOutcome> {
        let (status, mut rest) = status_of(reply, "put")?;
        if status != "ok" {
            return Err(status_error(&status, bucket, key, upload_id));
        }
        let seq = int_of(next_value(&mut rest, "put")?, "put")?;
        let replaced = match opt_bytes_of(next_value(&mut rest, "put")?, "put")? {
            Some(bytes) => Some(decode(&bytes)?),
            None => None,
        };
        Ok(PutOutcome {
            seq: seq_of(seq)?,
            replaced,
        })
    }

    /// Rewrites `field` of `hash` with `edit` applied to its value, and
    /// logs `op`, as one compare-and-swap: a concurrent writer of the field
    /// makes it start over from the new value. `None` when the field is
    /// absent.
    async fn edit_field(
        &self,
        hash: String,
        field: &str,
        op: &ChangeOp,
        edit: impl Fn(&[u8]) -> Result<Vec<u8>>,
    ) -> Result<Option<Seq>> {
        const ATTEMPTS: usize = 16;
        for _ in 0..ATTEMPTS {
            let mut cmd = redis::cmd("HGET");
            cmd.arg(&hash).arg(field);
            let Some(old) = self.query::<Option<Vec<u8>>>(&cmd).await? else {
                return Ok(None);
            };
            let new = edit(&old)?;
            let mut invocation = self.scripts.swap_field.prepare_invoke();
            invocation
                .key(&hash)
                .key(self.keys.seq())
                .key(self.keys.log())
                .arg(field)
                .arg(old)
                .arg(new)
                .arg(now_millis())
                .arg(encode(op)?);
            let (status, mut rest) = status_of(self.invoke(&invocation).await?, "swap_field")?;
            match status.as_str() {
                "ok" => {
                    return Ok(Some(seq_of(int_of(
                        next_value(&mut rest, "swap_field")?,
                        "swap_field",
                    )?)?));
                }
                "changed" => continue,
                other => return Err(MetaError::Internal(format!("swap_field answered {other}"))),
            }
        }
        Err(MetaError::Unavailable(format!(
            "{field:?} kept changing under {ATTEMPTS} attempts to edit it"
        )))
    }

    /// KEYS[1..13] of the scripts that remove a bucket (DELETE_BUCKET,
    /// APPLY_DELETE_BUCKET, RESET_BUCKET), in the order the scripts'
    /// `bucket_removal_keys()` names them; the scripts that remove entries
    /// too add `layouts` and `layout_blobs` as KEYS[14..15].
    fn bucket_removal_keys<'i, 's>(
        &self,
        invocation: &'i mut ScriptInvocation<'s>,
        bucket: &str,
    ) -> &'i mut ScriptInvocation<'s> {
        let k = &self.keys;
        invocation
            .key(k.buckets())
            .key(k.keys(bucket))
            .key(k.entries(bucket))
            .key(k.uploads(bucket))
            .key(k.upload_records(bucket))
            .key(k.parts(bucket))
            .key(k.part_records(bucket))
            .key(k.part_blobs(bucket))
            .key(k.refs())
            .key(k.queue())
            .key(k.stale())
            .key(k.seq())
            .key(k.log())
    }

    /// The keys and arguments every `APPLY_*` script ends with, in the order
    /// the scripts' `replica_tail()` names them: the applied position, the
    /// replication jobs, the change's sequence number and the blobs to
    /// replicate.
    fn replica_tail<'i, 's>(
        &self,
        invocation: &'i mut ScriptInvocation<'s>,
        seq: Seq,
        replicate: &[BlobRef],
    ) -> &'i mut ScriptInvocation<'s> {
        let k = &self.keys;
        invocation
            .key(k.replica())
            .key(k.jobs())
            .key(k.next_job())
            .arg(seq)
            .arg(blob_list(replicate))
    }

    /// Resets one bucket of a replica, a batch of entries per script.
    async fn reset_bucket(&self, bucket: &str) -> Result<()> {
        let op = encode(&ChangeOp::DeleteBucket {
            bucket: bucket.into(),
        })?;
        loop {
            let mut invocation = self.scripts.reset_bucket.prepare_invoke();
            self.bucket_removal_keys(&mut invocation, bucket)
                // KEYS[14..15]: this script removes entries too.
                .key(self.keys.layouts())
                .key(self.keys.layout_blobs())
                .arg(bucket)
                .arg(now_millis())
                .arg(&op)
                .arg(RESET_BATCH);
            let reply = self.invoke(&invocation).await?;
            let mut rest = ok_or_status(reply, "reset_bucket", bucket, "", "")?;
            if int_of(next_value(&mut rest, "reset_bucket")?, "reset_bucket")? == 0 {
                return Ok(());
            }
        }
    }

    /// Aborts up to `ABORT_BATCH` uploads of a bucket, one script each
    /// (an upload holds at most 10,000 parts, by part number). An upload
    /// that ended meanwhile is no error.
    async fn abort_some_uploads(&self, bucket: &str) -> Result<()> {
        let page = self
            .list_uploads(
                bucket,
                &UploadQuery {
                    max: ABORT_BATCH,
                    ..UploadQuery::default()
                },
            )
            .await?;
        for upload in page.uploads {
            match self.abort_upload(bucket, &upload.key, &upload.id).await {
                Ok(()) | Err(MetaError::NoSuchUpload { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Values of `hash` for the members of `zset` in a lex range.
    async fn range(
        &self,
        zset: String,
        hash: String,
        min: &[u8],
        max: &[u8],
        limit: usize,
    ) -> Result<Vec<Vec<u8>>> {
        let mut invocation = self.scripts.range.prepare_invoke();
        invocation.key(zset).key(hash).arg(min).arg(max).arg(limit);
        let reply = self.invoke(&invocation).await?;
        array_of(reply, "range")?
            .into_iter()
            .map(|v| bytes_of(v, "range"))
            .collect()
    }
}

/// An ACL as the `APPLY_ACL` script sets it: empty for the default, which
/// serde leaves out of a record.
fn acl_json(acl: CannedAcl) -> Result<Vec<u8>> {
    if acl.is_private() {
        Ok(Vec::new())
    } else {
        encode(&acl)
    }
}

fn seq_of(n: i64) -> Result<Seq> {
    Seq::try_from(n).map_err(|_| MetaError::Internal(format!("negative sequence number {n}")))
}

fn ok_or_status(
    reply: Value,
    what: &str,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<std::vec::IntoIter<Value>> {
    let (status, rest) = status_of(reply, what)?;
    if status == "ok" {
        Ok(rest)
    } else {
        Err(status_error(&status, bucket, key, upload_id))
    }
}

#[async_trait::async_trait]
impl Meta for RedisMeta {
    // ---- Namespace: buckets -------------------------------------------------

    async fn create_bucket(&self, bucket: &str) -> Result<Seq> {
        self.restore_bucket(&BucketInfo::new(bucket)).await
    }

    async fn restore_bucket(&self, info: &BucketInfo) -> Result<Seq> {
        let bucket = info.name.as_str();
        let op = ChangeOp::CreateBucket {
            bucket: bucket.into(),
            acl: info.acl,
        };
        let k = &self.keys;
        let mut invocation = self.scripts.create_bucket.prepare_invoke();
        invocation
            .key(k.buckets())
            .key(k.seq())
            .key(k.log())
            .arg(bucket)
            .arg(encode(info)?)
            .arg(now_millis())
            .arg(encode(&op)?);
        let reply = self.invoke(&invocation).await?;
        let mut rest = ok_or_status(reply, "create_bucket", bucket, "", "")?;
        seq_of(int_of(
            next_value(&mut rest, "create_bucket")?,
            "create_bucket",
        )?)
    }

    async fn delete_bucket(&self, bucket: &str) -> Result<Seq> {
        let op = ChangeOp::DeleteBucket {
            bucket: bucket.into(),
        };
        let op = encode(&op)?;
        for _ in 0..DELETE_BUCKET_ROUNDS {
            let mut invocation = self.scripts.delete_bucket.prepare_invoke();
            self.bucket_removal_keys(&mut invocation, bucket)
                .arg(bucket)
                .arg(now_millis())
                .arg(&op)
                .arg(BUCKET_UPLOADS_BATCH);
            let (status, mut rest) = status_of(self.invoke(&invocation).await?, "delete_bucket")?;
            match status.as_str() {
                "ok" => {
                    return seq_of(int_of(
                        next_value(&mut rest, "delete_bucket")?,
                        "delete_bucket",
                    )?);
                }
                "busy" => self.abort_some_uploads(bucket).await?,
                other => return Err(status_error(other, bucket, "", "")),
            }
        }
        Err(MetaError::Unavailable(format!(
            "uploads kept arriving in bucket {bucket:?} while it was being deleted"
        )))
    }

    async fn bucket(&self, bucket: &str) -> Result<BucketInfo> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(self.keys.buckets()).arg(bucket);
        match self.query::<Option<Vec<u8>>>(&cmd).await? {
            Some(bytes) => decode(&bytes),
            None => Err(MetaError::NoSuchBucket {
                bucket: bucket.into(),
            }),
        }
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        let mut cmd = redis::cmd("HVALS");
        cmd.arg(self.keys.buckets());
        let values: Vec<Vec<u8>> = self.query(&cmd).await?;
        let mut out = values
            .iter()
            .map(|v| decode::<BucketInfo>(v))
            .collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        Ok(out)
    }

    async fn set_bucket_acl(&self, bucket: &str, acl: CannedAcl) -> Result<Seq> {
        let op = ChangeOp::SetBucketAcl {
            bucket: bucket.into(),
            acl,
        };
        self.edit_field(self.keys.buckets(), bucket, &op, |raw| {
            let mut info: BucketInfo = decode(raw)?;
            info.acl = acl;
            encode(&info)
        })
        .await?
        .ok_or_else(|| MetaError::NoSuchBucket {
            bucket: bucket.into(),
        })
    }

    // ---- Namespace: entries and listing -------------------------------------

    async fn head(&self, bucket: &str, key: &str) -> Result<Entry> {
        // The entry alone: the layout is never read here.
        let mut pipe = redis::pipe();
        pipe.hget(self.keys.entries(bucket), key)
            .hexists(self.keys.buckets(), bucket);
        let (entry, bucket_exists): (Option<Vec<u8>>, bool) = self.query_pipe(&pipe).await?;
        match entry {
            Some(bytes) => decode(&bytes),
            None if !bucket_exists => Err(MetaError::NoSuchBucket {
                bucket: bucket.into(),
            }),
            None => Err(MetaError::NoSuchKey {
                bucket: bucket.into(),
                key: key.into(),
            }),
        }
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<(Entry, Layout)> {
        let k = &self.keys;
        let mut invocation = self.scripts.get.prepare_invoke();
        invocation
            .key(k.buckets())
            .key(k.entries(bucket))
            .key(k.layouts())
            .arg(bucket)
            .arg(key);
        let reply = self.invoke(&invocation).await?;
        let mut rest = ok_or_status(reply, "get", bucket, key, "")?;
        let entry: Entry = decode(&bytes_of(next_value(&mut rest, "get")?, "get")?)?;
        let Some(layout) = opt_bytes_of(next_value(&mut rest, "get")?, "get")? else {
            return Err(MetaError::Internal(format!(
                "entry {} of {bucket}/{key} has no layout",
                entry.id
            )));
        };
        Ok((entry, decode(&layout)?))
    }

    async fn put(
        &self,
        bucket: &str,
        key: &str,
        entry: Entry,
        layout: Layout,
        condition: Precondition,
    ) -> Result<PutOutcome> {
        let mut invocation = self.scripts.put.prepare_invoke();
        self.commit_keys(&mut invocation, bucket);
        Self::commit_args(&mut invocation, bucket, key, &entry, &layout, &condition)?;
        let reply = self.invoke(&invocation).await?;
        self.put_outcome(reply, bucket, key, "")
    }

    async fn set_object_acl(&self, bucket: &str, key: &str, acl: CannedAcl) -> Result<Seq> {
        let op = ChangeOp::SetObjectAcl {
            bucket: bucket.into(),
            key: key.into(),
            acl,
        };
        let edited = self
            .edit_field(self.keys.entries(bucket), key, &op, |raw| {
                let mut entry: Entry = decode(raw)?;
                entry.acl = acl;
                encode(&entry)
            })
            .await?;
        match edited {
            Some(seq) => Ok(seq),
            None => {
                self.bucket(bucket).await?;
                Err(MetaError::NoSuchKey {
                    bucket: bucket.into(),
                    key: key.into(),
                })
            }
        }
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<Option<Entry>> {
        let op = ChangeOp::Delete {
            bucket: bucket.into(),
            key: key.into(),
        };
        let mut invocation = self.scripts.delete.prepare_invoke();
        // The same keys as a put's script (`commit_keys`).
        self.commit_keys(&mut invocation, bucket);
        invocation
            .arg(bucket)
            .arg(key)
            .arg(now_millis())
            .arg(encode(&op)?);
        let reply = self.invoke(&invocation).await?;
        let mut rest = ok_or_status(reply, "delete", bucket, key, "")?;
        match opt_bytes_of(next_value(&mut rest, "delete")?, "delete")? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    async fn list(&self, bucket: &str, query: &ListQuery) -> Result<ListPage> {
        let max = query.max.clamp(1, MAX_PAGE);
        let k = &self.keys;
        let mut invocation = self.scripts.list.prepare_invoke();
        invocation
            .key(k.buckets())
            .key(k.keys(bucket))
            .key(k.entries(bucket))
            .arg(bucket)
            .arg(&query.prefix)
            .arg(query.delimiter.as_deref().unwrap_or(""))
            .arg(list_start(query))
            .arg(lex_below_group(query.prefix.as_bytes()))
            .arg(max)
            .arg(self.list_read_budget);
        let reply = self.invoke(&invocation).await?;
        let mut rest = ok_or_status(reply, "list", bucket, "", "")?;
        let truncated = int_of(next_value(&mut rest, "list")?, "list")? != 0;
        let last = string_of(bytes_of(next_value(&mut rest, "list")?, "list")?, "key")?;
        let strings = |value: Value| -> Result<Vec<Vec<u8>>> {
            array_of(value, "list")?
                .into_iter()
                .map(|v| bytes_of(v, "list"))
                .collect()
        };
        let keys = strings(next_value(&mut rest, "list")?)?;
        let entries = strings(next_value(&mut rest, "list")?)?;
        let prefixes = strings(next_value(&mut rest, "list")?)?;
        if keys.len() != entries.len() {
            return Err(MetaError::Internal(
                "list: keys and entries differ in number".into(),
            ));
        }
        let mut page = ListPage {
            truncated,
            next_start_after: truncated.then_some(last),
            ..ListPage::default()
        };
        for (key, entry) in keys.into_iter().zip(entries) {
            page.entries.push((string_of(key, "key")?, decode(&entry)?));
        }
        for prefix in prefixes {
            page.common_prefixes.push(string_of(prefix, "key")?);
        }
        Ok(page)
    }

    // ---- Multipart uploads --------------------------------------------------

    async fn create_upload(&self, bucket: &str, upload: Upload) -> Result<()> {
        let k = &self.keys;
        let mut invocation = self.scripts.create_upload.prepare_invoke();
        invocation
            .key(k.buckets())
            .key(k.uploads(bucket))
            .key(k.upload_records(bucket))
            .key(k.stale())
            .arg(bucket)
            .arg(upload_member(&upload.key, &upload.id))
            .arg(encode(&upload)?)
            .arg(upload.initiated)
            .arg(stale_member(bucket, &upload.key, &upload.id));
        let reply = self.invoke(&invocation).await?;
        ok_or_status(reply, "create_upload", bucket, &upload.key, &upload.id)?;
        Ok(())
    }

    async fn upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<Upload> {
        let mut pipe = redis::pipe();
        pipe.hget(
            self.keys.upload_records(bucket),
            upload_member(key, upload_id),
        )
        .hexists(self.keys.buckets(), bucket);
        let (upload, bucket_exists): (Option<Vec<u8>>, bool) = self.query_pipe(&pipe).await?;
        match upload {
            Some(bytes) => decode(&bytes),
            None if !bucket_exists => Err(MetaError::NoSuchBucket {
                bucket: bucket.into(),
            }),
            None => Err(MetaError::NoSuchUpload {
                bucket: bucket.into(),
                key: key.into(),
                upload_id: upload_id.into(),
            }),
        }
    }

    async fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part: Part,
    ) -> Result<Option<Part>> {
        let k = &self.keys;
        let mut invocation = self.scripts.put_part.prepare_invoke();
        invocation
            .key(k.buckets())
            .key(k.upload_records(bucket))
            .key(k.parts(bucket))
            .key(k.part_records(bucket))
            .key(k.part_blobs(bucket))
            .key(k.refs())
            .key(k.queue())
            .arg(bucket)
            .arg(upload_member(key, upload_id))
            .arg(part_member(upload_id, part.number))
            .arg(encode(&part)?)
            .arg(blob_list(&part.blobs()))
            .arg(now_millis());
        let reply = self.invoke(&invocation).await?;
        let mut rest = ok_or_status(reply, "put_part", bucket, key, upload_id)?;
        match opt_bytes_of(next_value(&mut rest, "put_part")?, "put_part")? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        after: u32,
        max: usize,
    ) -> Result<(Vec<Part>, bool)> {
        self.upload(bucket, key, upload_id).await?;
        if after == u32::MAX {
            return Ok((Vec::new(), false));
        }
        let max = max.min(MAX_PAGE);
        let low = lex_from(&part_member(upload_id, after + 1));
        let (_, high) = parts_range(upload_id);
        let values = self
            .range(
                self.keys.parts(bucket),
                self.keys.part_records(bucket),
                &low,
                &high,
                max + 1,
            )
            .await?;
        let mut parts = values
            .iter()
            .map(|v| decode::<Part>(v))
            .collect::<Result<Vec<_>>>()?;
        let truncated = parts.len() > max;
        parts.truncate(max);
        Ok((parts, truncated))
    }

    async fn list_uploads(&self, bucket: &str, query: &UploadQuery) -> Result<UploadPage> {
        self.bucket(bucket).await?;
        let max = query.max.min(MAX_PAGE);
        let marker = match (&query.key_marker, &query.upload_id_marker) {
            (Some(key), Some(id)) => {
                // Strictly after that upload of the key.
                let mut m = upload_member(key, id);
                m.push(0);
                m
            }
            (Some(key), None) => {
                // After every upload of the key.
                let mut m = key.as_bytes().to_vec();
                m.push(0);
                m.push(0xFF);
                m
            }
            (None, _) => Vec::new(),
        };
        let start = marker.max(query.prefix.as_bytes().to_vec());
        let high = lex_below_group(query.prefix.as_bytes());
        let values = self
            .range(
                self.keys.uploads(bucket),
                self.keys.upload_records(bucket),
                &lex_from(&start),
                &high,
                max + 1,
            )
            .await?;
        let mut page = UploadPage::default();
        for value in values {
            let upload: Upload = decode(&value)?;
            if !upload.key.starts_with(&query.prefix) {
                continue;
            }
            if page.uploads.len() == max {
                page.truncated = true;
                break;
            }
            page.uploads.push(upload);
        }
        Ok(page)
    }

    async fn complete_upload(
        &self,
        bucket: &str,
        completion: Completion,
        entry: Entry,
        layout: Layout,
        condition: Precondition,
    ) -> Result<PutOutcome> {
        let k = &self.keys;
        let (key, upload_id) = (completion.key.as_str(), completion.upload_id.as_str());
        let mut invocation = self.scripts.complete_upload.prepare_invoke();
        // The commit's KEYS and ARGV, then the upload's: KEYS[10..16] and
        // ARGV[12..16].
        self.commit_keys(&mut invocation, bucket)
            .key(k.uploads(bucket))
            .key(k.upload_records(bucket))
            .key(k.parts(bucket))
            .key(k.part_records(bucket))
            .key(k.part_blobs(bucket))
            .key(k.stale())
            .key(k.completion(bucket, upload_id));
        Self::commit_args(&mut invocation, bucket, key, &entry, &layout, &condition)?
            .arg(upload_member(key, upload_id))
            .arg(upload_id)
            .arg(stale_member(bucket, key, upload_id))
            .arg(encode(&completion)?)
            .arg(completion.keep_until.max(1));
        let reply = self.invoke(&invocation).await?;
        self.put_outcome(reply, bucket, key, upload_id)
    }

    async fn completion(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<Option<Completion>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.keys.completion(bucket, upload_id));
        let Some(raw) = self.query::<Option<Vec<u8>>>(&cmd).await? else {
            return Ok(None);
        };
        let completion: Completion = decode(&raw)?;
        Ok((completion.key == key).then_some(completion))
    }

    async fn expire_completions(&self, _before: UnixMillis, _limit: usize) -> Result<usize> {
        // Completion records carry a Redis expiry (`PXAT keep_until`).
        Ok(0)
    }

    async fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        let k = &self.keys;
        let mut invocation = self.scripts.abort_upload.prepare_invoke();
        invocation
            .key(k.buckets())
            .key(k.uploads(bucket))
            .key(k.upload_records(bucket))
            .key(k.parts(bucket))
            .key(k.part_records(bucket))
            .key(k.part_blobs(bucket))
            .key(k.refs())
            .key(k.queue())
            .key(k.stale())
            .arg(bucket)
            .arg(upload_member(key, upload_id))
            .arg(upload_id)
            .arg(stale_member(bucket, key, upload_id))
            .arg(now_millis());
        let reply = self.invoke(&invocation).await?;
        ok_or_status(reply, "abort_upload", bucket, key, upload_id)?;
        Ok(())
    }

    async fn stale_uploads(
        &self,
        initiated_before: UnixMillis,
        limit: usize,
    ) -> Result<Vec<(String, Upload)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("ZRANGEBYSCORE");
        cmd.arg(self.keys.stale())
            .arg("-inf")
            .arg(initiated_before)
            .arg("LIMIT")
            .arg(0)
            .arg(limit.min(MAX_PAGE));
        let members: Vec<Vec<u8>> = self.query(&cmd).await?;
        let mut found = Vec::with_capacity(members.len());
        let mut pipe = redis::pipe();
        for member in &members {
            let (bucket, upload) = parse_stale_member(member)
                .ok_or_else(|| MetaError::Internal("corrupt stale-upload record".into()))?;
            pipe.hget(self.keys.upload_records(&bucket), upload);
            found.push(bucket);
        }
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let records: Vec<Option<Vec<u8>>> = self.query_pipe(&pipe).await?;
        let mut out = Vec::with_capacity(records.len());
        for (bucket, record) in found.into_iter().zip(records) {
            // Gone between the two reads: completed or aborted meanwhile.
            if let Some(bytes) = record {
                out.push((bucket, decode(&bytes)?));
            }
        }
        Ok(out)
    }

    // ---- Change log and feed ------------------------------------------------

    async fn changes_since(&self, after: Seq, limit: usize) -> Result<Vec<Change>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("ZRANGEBYSCORE");
        cmd.arg(self.keys.log())
            .arg(format!("({after}"))
            .arg("+inf")
            .arg("LIMIT")
            .arg(0)
            .arg(limit.min(MAX_PAGE));
        let records: Vec<Vec<u8>> = self.query(&cmd).await?;
        records.iter().map(|r| decode(r)).collect()
    }

    async fn last_seq(&self) -> Result<Seq> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.keys.seq());
        let seq: Option<u64> = self.query(&cmd).await?;
        Ok(seq.unwrap_or(0))
    }

    async fn trim_changes(&self, through: Seq) -> Result<u64> {
        let mut invocation = self.scripts.trim_log.prepare_invoke();
        invocation
            .key(self.keys.log())
            .key(self.keys.floor())
            .arg(through);
        let removed = int_of(self.invoke(&invocation).await?, "trim_changes")?;
        u64::try_from(removed)
            .map_err(|_| MetaError::Internal(format!("trim_changes removed {removed} records")))
    }

    async fn log_floor(&self) -> Result<Seq> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.keys.floor());
        let floor: Option<u64> = self.query(&cmd).await?;
        Ok(floor.unwrap_or(0))
    }

    // ---- Replica: mirrors, applied position, replication jobs ---------------

    async fn put_mirror(&self, record: &MirrorRecord) -> Result<()> {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(self.keys.mirrors())
            .arg(&record.name)
            .arg(encode(record)?);
        self.query::<()>(&cmd).await
    }

    async fn mirrors(&self) -> Result<Vec<MirrorRecord>> {
        let mut cmd = redis::cmd("HVALS");
        cmd.arg(self.keys.mirrors());
        let values: Vec<Vec<u8>> = self.query(&cmd).await?;
        let mut out = values
            .iter()
            .map(|v| decode::<MirrorRecord>(v))
            .collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        Ok(out)
    }

    async fn remove_mirror(&self, name: &str) -> Result<()> {
        let mut cmd = redis::cmd("HDEL");
        cmd.arg(self.keys.mirrors()).arg(name);
        self.query::<()>(&cmd).await
    }

    async fn replica_position(&self) -> Result<Option<Seq>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.keys.replica());
        self.query(&cmd).await
    }

    async fn apply(&self, change: Change, replicate: Vec<BlobRef>) -> Result<bool> {
        // One script per kind of op, each checking and moving the position
        // and queueing the jobs itself: the whole change is atomic.
        let k = &self.keys;
        let now = now_millis();
        let op = encode(&change.op)?;
        let mut invocation = match &change.op {
            ChangeOp::CreateBucket { bucket, acl } => {
                let info = BucketInfo {
                    name: bucket.clone(),
                    created: change.at,
                    acl: *acl,
                };
                let mut invocation = self.scripts.apply_create_bucket.prepare_invoke();
                invocation
                    .key(k.buckets())
                    .key(k.seq())
                    .key(k.log())
                    .arg(bucket)
                    .arg(encode(&info)?)
                    .arg(now)
                    .arg(&op);
                invocation
            }
            ChangeOp::DeleteBucket { bucket } => {
                let mut invocation = self.scripts.apply_delete_bucket.prepare_invoke();
                self.bucket_removal_keys(&mut invocation, bucket)
                    // KEYS[14..15]: this script removes entries too.
                    .key(k.layouts())
                    .key(k.layout_blobs())
                    .arg(bucket)
                    .arg(now)
                    .arg(&op);
                invocation
            }
            ChangeOp::Put {
                bucket,
                key,
                entry,
                layout,
            } => {
                let mut invocation = self.scripts.apply_put.prepare_invoke();
                self.commit_keys(&mut invocation, bucket);
                Self::commit_args(
                    &mut invocation,
                    bucket,
                    key,
                    entry,
                    layout,
                    &Precondition::None,
                )?;
                invocation
            }
            ChangeOp::Delete { bucket, key } => {
                let mut invocation = self.scripts.apply_delete.prepare_invoke();
                self.commit_keys(&mut invocation, bucket);
                invocation.arg(bucket).arg(key).arg(now).arg(&op);
                invocation
            }
            ChangeOp::SetBucketAcl { bucket, acl } => {
                let mut invocation = self.scripts.apply_acl.prepare_invoke();
                // `acl` is the last field of `BucketInfo`.
                invocation
                    .key(k.buckets())
                    .key(k.seq())
                    .key(k.log())
                    .arg(bucket)
                    .arg(acl_json(*acl)?)
                    .arg("")
                    .arg(now)
                    .arg(&op);
                invocation
            }
            ChangeOp::SetObjectAcl { bucket, key, acl } => {
                let mut invocation = self.scripts.apply_acl.prepare_invoke();
                // `Entry` declares `imported_from` right after `acl`.
                invocation
                    .key(k.entries(bucket))
                    .key(k.seq())
                    .key(k.log())
                    .arg(key)
                    .arg(acl_json(*acl)?)
                    .arg("imported_from")
                    .arg(now)
                    .arg(&op);
                invocation
            }
        };
        self.replica_tail(&mut invocation, change.seq, &replicate);
        let reply = self.invoke(&invocation).await?;
        let mut rest = ok_or_status(reply, "apply", "", "", "")?;
        Ok(int_of(next_value(&mut rest, "apply")?, "apply")? == 1)
    }

    async fn reset_replica(&self) -> Result<()> {
        // The position goes first: a crash part-way leaves none, so the
        // next start resyncs instead of following from a half-empty state.
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.keys.replica());
        self.query::<()>(&cmd).await?;
        let mut cmd = redis::cmd("HKEYS");
        cmd.arg(self.keys.buckets());
        let buckets: Vec<String> = self.query(&cmd).await?;
        for bucket in buckets {
            self.reset_bucket(&bucket).await?;
        }
        loop {
            let mut invocation = self.scripts.reset_refs.prepare_invoke();
            invocation
                .key(self.keys.refs())
                .key(self.keys.queue())
                .key(self.keys.layouts())
                .key(self.keys.layout_blobs())
                .key(self.keys.stale())
                .arg(now_millis())
                .arg(RESET_BATCH);
            let reply = self.invoke(&invocation).await?;
            let mut rest = ok_or_status(reply, "reset_refs", "", "", "")?;
            if int_of(next_value(&mut rest, "reset_refs")?, "reset_refs")? == 0 {
                return Ok(());
            }
        }
    }

    async fn set_replica_position(&self, seq: Seq) -> Result<()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.keys.replica()).arg(seq);
        self.query::<()>(&cmd).await
    }

    async fn queue_replication(&self, blobs: &[BlobRef]) -> Result<()> {
        if blobs.is_empty() {
            return Ok(());
        }
        let mut invocation = self.scripts.queue_jobs.prepare_invoke();
        invocation
            .key(self.keys.jobs())
            .key(self.keys.next_job())
            .arg(blob_list(blobs));
        let reply = self.invoke(&invocation).await?;
        ok_or_status(reply, "queue_replication", "", "", "")?;
        Ok(())
    }

    async fn replication_jobs(&self, after: u64, limit: usize) -> Result<Vec<ReplicationJob>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("ZRANGEBYSCORE");
        cmd.arg(self.keys.jobs())
            .arg(format!("({after}"))
            .arg("+inf")
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(0)
            .arg(limit.min(MAX_PAGE));
        let items: Vec<(Vec<u8>, f64)> = self.query(&cmd).await?;
        items
            .into_iter()
            .map(|(member, score)| {
                let blob = parse_blob_field(&member)
                    .ok_or_else(|| MetaError::Internal("corrupt replication job".into()))?;
                Ok(ReplicationJob {
                    // Ids come from INCR and stay far below 2^53: exact.
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    id: score as u64,
                    blob,
                })
            })
            .collect()
    }

    async fn finish_replication(&self, job: &ReplicationJob) -> Result<()> {
        let mut invocation = self.scripts.finish_job.prepare_invoke();
        invocation
            .key(self.keys.jobs())
            .arg(blob_field(&job.blob))
            .arg(job.id);
        let reply = self.invoke(&invocation).await?;
        ok_or_status(reply, "finish_replication", "", "", "")?;
        Ok(())
    }

    // ---- Blob references and the collector's deletion queue -----------------

    async fn queue_uncommitted(&self, blobs: &[BlobRef]) -> Result<()> {
        if blobs.is_empty() {
            return Ok(());
        }
        let mut invocation = self.scripts.queue_uncommitted.prepare_invoke();
        invocation
            .key(self.keys.refs())
            .key(self.keys.queue())
            .arg(now_millis());
        for blob in blobs {
            invocation.arg(blob_field(blob));
        }
        let reply = self.invoke(&invocation).await?;
        ok_or_status(reply, "queue_uncommitted", "", "", "")?;
        Ok(())
    }

    async fn due_deletions(
        &self,
        queued_before: UnixMillis,
        limit: usize,
    ) -> Result<Vec<QueuedBlob>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("ZRANGEBYSCORE");
        cmd.arg(self.keys.queue())
            .arg("-inf")
            .arg(queued_before)
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(0)
            .arg(limit.min(MAX_PAGE));
        let items: Vec<(Vec<u8>, f64)> = self.query(&cmd).await?;
        items
            .into_iter()
            .map(|(member, score)| {
                let blob = parse_blob_field(&member)
                    .ok_or_else(|| MetaError::Internal("corrupt deletion-queue record".into()))?;
                Ok(QueuedBlob {
                    blob,
                    // Millisecond times are exact in a double.
                    #[allow(clippy::cast_possible_truncation)]
                    queued_at: score as UnixMillis,
                    refs_when_queued: 0,
                })
            })
            .collect()
    }

    async fn claim_deletion(&self, blob: &QueuedBlob) -> Result<bool> {
        let mut invocation = self.scripts.claim_deletion.prepare_invoke();
        invocation
            .key(self.keys.refs())
            .key(self.keys.queue())
            .arg(blob_field(&blob.blob))
            .arg(blob.queued_at);
        let reply = self.invoke(&invocation).await?;
        Ok(int_of(reply, "claim_deletion")? == 1)
    }

    async fn blob_refs(&self, blob: &BlobRef) -> Result<u64> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(self.keys.refs()).arg(blob_field(blob));
        let refs: Option<i64> = self.query(&cmd).await?;
        Ok(refs.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
    }

    // ---- Leases -------------------------------------------------------------

    async fn try_lease(&self, name: &str, holder: &str, ttl_ms: u64) -> Result<bool> {
        let mut invocation = self.scripts.try_lease.prepare_invoke();
        invocation
            .key(self.keys.lease(name))
            .arg(holder)
            .arg(ttl_ms.max(1));
        let reply = self.invoke(&invocation).await?;
        Ok(int_of(reply, "try_lease")? == 1)
    }
}
