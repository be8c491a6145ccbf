//! One connection for both ways Redis is deployed: a standalone server,
//! through the connection manager (which reconnects after a loss), or a
//! Redis Cluster, through the cluster client (which follows slots as they
//! move). A caller that keeps all its keys under one hash tag (see
//! [`super::keys`]) has them in one slot, so its scripts and MULTI/EXEC
//! pipelines run on the one node that owns them.
//!
//! The metadata engine and cluster membership both connect through here.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::error::{MetaError, Result};

/// A connection to a standalone Redis or to a Redis Cluster. Cheap to
/// clone; clones share the connection.
#[derive(Clone)]
pub enum Connection {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    /// Connects to `url`: a standalone Redis, or with `cluster` any one node
    /// of a Redis Cluster. Every call on the connection (and connecting
    /// itself, twice over) has `timeout` as its deadline, and a lost
    /// connection is retried once, briefly: while Redis is down a call fails
    /// fast and the next one tries again.
    pub async fn open(url: &str, cluster: bool, timeout: Duration) -> Result<Connection> {
        let shown = super::redact(url);
        if cluster {
            let client = ClusterClient::builder([url])
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(1)
                .build()
                .map_err(|e| MetaError::Internal(format!("invalid redis url {shown}: {e}")))?;
            let what = format!("the redis cluster at {shown}");
            connect_within(&what, timeout, client.get_async_connection())
                .await
                .map(Connection::Cluster)
        } else {
            let client = redis::Client::open(url)
                .map_err(|e| MetaError::Internal(format!("invalid redis url {shown}: {e}")))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_millis(500));
            let what = format!("redis at {shown}");
            connect_within(
                &what,
                timeout,
                ConnectionManager::new_with_config(client, config),
            )
            .await
            .map(Connection::Standalone)
        }
    }
}

/// The connection `connecting` makes to `what` within twice `timeout`,
/// or why there is none.
async fn connect_within<C, E: std::fmt::Display>(
    what: &str,
    timeout: Duration,
    connecting: impl std::future::Future<Output = std::result::Result<C, E>>,
) -> Result<C> {
    match tokio::time::timeout(timeout * 2, connecting).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(MetaError::Unavailable(format!(
            "cannot connect to {what}: {e}"
        ))),
        Err(_) => Err(MetaError::Unavailable(format!(
            "{what} did not answer within {timeout:?}"
        ))),
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Standalone(conn) => conn.req_packed_command(cmd),
            Connection::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Standalone(conn) => conn.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Standalone(conn) => conn.get_db(),
            Connection::Cluster(conn) => conn.get_db(),
        }
    }
}
