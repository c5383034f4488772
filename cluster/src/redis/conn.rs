//! The command connection every Redis backend shares, and the mapping of its errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fred::prelude::*;
use futures_util::TryStreamExt;
use serde::de::DeserializeOwned;

use super::scripts;
use crate::error::{StateError, StateResult};
use crate::keys::Keys;

/// The shared command connection and key names every backend uses.
#[derive(Clone, Debug)]
pub(crate) struct Conn {
    pub(crate) client: Client,
    pub(crate) keys: Keys,
    /// False from the moment fred reports the connection lost until it is back (fred's own state
    /// still says "connected" while it waits before the first reconnection attempt).
    pub(crate) link_up: Arc<AtomicBool>,
}

/// Maps a fred error: anything that means "Redis did not answer" is `Unavailable`.
pub(crate) fn state_error(e: &Error) -> StateError {
    match e.kind() {
        ErrorKind::IO | ErrorKind::Timeout | ErrorKind::Canceled | ErrorKind::Routing => {
            StateError::Unavailable(e.to_string())
        }
        _ => StateError::Backend(e.to_string()),
    }
}

pub(crate) fn decode<T: DeserializeOwned>(json: &str) -> StateResult<T> {
    serde_json::from_str(json).map_err(|e| StateError::Corrupt(format!("{e}: {json}")))
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> StateResult<String> {
    serde_json::to_string(value).map_err(|e| StateError::Corrupt(e.to_string()))
}

impl Conn {
    /// Fails at once while the client is reconnecting, rather than queueing a command behind an
    /// outage; the command timeout covers a connection that looks up but does not answer.
    pub(crate) fn ensure_connected(&self) -> StateResult<()> {
        if self.client.is_connected() && self.link_up.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(StateError::refused_while_down(format_args!(
                "state: {:?}",
                self.client.state()
            )))
        }
    }

    pub(crate) async fn eval<R: FromValue>(
        &self,
        script: &'static scripts::Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> StateResult<R> {
        self.ensure_connected()?;
        let keys: Vec<Key> = keys.into_iter().map(Key::from).collect();
        let args: Vec<Value> = args.into_iter().map(Value::from).collect();
        if self.client.is_clustered() {
            // SCRIPT LOAD would have to reach every primary; EVAL needs no cache.
            return self
                .client
                .eval(script.source.as_str(), keys, args)
                .await
                .map_err(|e| state_error(&e));
        }
        let sha = match script.sha.get() {
            Some(sha) => sha.clone(),
            None => self.load_script(script).await?,
        };
        match self.client.evalsha(sha, keys.clone(), args.clone()).await {
            // Redis restarted (or ran SCRIPT FLUSH) and forgot the script.
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                let sha = self.load_script(script).await?;
                self.client
                    .evalsha(sha, keys, args)
                    .await
                    .map_err(|e| state_error(&e))
            }
            result => result.map_err(|e| state_error(&e)),
        }
    }

    async fn load_script(&self, script: &'static scripts::Script) -> StateResult<String> {
        let sha: String = self
            .client
            .script_load(script.source.as_str())
            .await
            .map_err(|e| state_error(&e))?;
        let _ = script.sha.set(sha.clone());
        Ok(sha)
    }

    /// Every key matching `pattern`, found with `SCAN` (on each primary of a Redis Cluster),
    /// [`SCAN_PAGE`] keys examined per call.
    pub(crate) async fn scan_keys(&self, pattern: &str) -> StateResult<Vec<String>> {
        self.ensure_connected()?;
        let keys: Vec<Key> = if self.client.is_clustered() {
            self.client
                .scan_cluster_buffered(pattern.to_owned(), Some(SCAN_PAGE), None)
                .try_collect()
                .await
        } else {
            self.client
                .scan_buffered(pattern.to_owned(), Some(SCAN_PAGE), None)
                .try_collect()
                .await
        }
        .map_err(|e| state_error(&e))?;
        Ok(keys
            .into_iter()
            .filter_map(|k| k.into_string())
            .collect::<Vec<_>>())
    }
}

/// Keys `SCAN` examines per call: the keyspace holds a key or more per user, and every node
/// lists the live nodes every few seconds, so small pages meant hundreds of round trips (and
/// replies to every node) per listing.
const SCAN_PAGE: u32 = 1000;

/// A duration in whole milliseconds, at least 1 (Redis refuses a zero TTL).
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}
