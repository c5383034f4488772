//! The one-shot read of the cluster's stats behind `gateway cluster-stats --redis-url URL`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use fred::prelude::*;

use super::config::ClusterError;
use super::conn::Conn;
use super::connect::{builder, connect_error, redact};
use crate::aggregate::ClusterStats;
use crate::keys::Keys;
use crate::nodes::RedisNodes;

/// Reads the cluster's stats once, for `gateway cluster-stats --redis-url URL`.
pub async fn fetch_cluster_stats(
    url: &str,
    timeout: Duration,
) -> Result<ClusterStats, ClusterError> {
    let b = builder(url, timeout, 16)?;
    let client = b.build().map_err(|e| connect_error(url, &e))?;
    let init = tokio::time::timeout(timeout, client.init()).await;
    match init {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(connect_error(url, &e)),
        Err(_) => {
            return Err(ClusterError::Connect {
                url: redact(url),
                reason: format!("no connection within {timeout:?}"),
            });
        }
    }
    let nodes = RedisNodes::new(
        Conn {
            client: client.clone(),
            keys: Keys::default(),
            link_up: Arc::new(AtomicBool::new(true)),
        },
        Duration::from_secs(60),
    );
    let stats = crate::aggregate::cluster_stats(&nodes).await;
    let _ = client.quit().await;
    Ok(stats?)
}
