//! The command connection every Redis backend shares, and the mapping of its errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fred::prelude::*;
use futures_util::{StreamExt, TryStreamExt};
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
            return retry_tryagain(|| {
                self.client
                    .eval(script.source.as_str(), keys.clone(), args.clone())
            })
            .await;
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

    /// One command (`cmd!("ZADD")` and its arguments, the key first, which routes it).
    pub(crate) async fn call<R: FromValue>(
        &self,
        name: &'static str,
        args: Vec<Value>,
    ) -> StateResult<R> {
        self.ensure_connected()?;
        retry_tryagain(|| {
            self.client.custom(
                fred::types::CustomCommand::new_static(
                    name,
                    fred::types::ClusterHash::FirstKey,
                    false,
                ),
                args.clone(),
            )
        })
        .await
    }

    /// The string values of `keys`: one `MGET` in the classic layout (every key under one tag on a
    /// Redis Cluster), one `GET` per key in the spread one (sent together, at most
    /// [`IN_FLIGHT`] at a time), since the keys sit on different slots there.
    pub(crate) async fn get_each(&self, keys: Vec<String>) -> StateResult<Vec<Option<String>>> {
        self.ensure_connected()?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if !self.keys.is_spread() {
            return self.client.mget(keys).await.map_err(|e| state_error(&e));
        }
        let gets: Vec<_> = keys
            .into_iter()
            .map(|key| async move {
                self.client
                    .get::<Option<String>, _>(key)
                    .await
                    .map_err(|e| state_error(&e))
            })
            .collect();
        each_limited(gets).await
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

/// Runs `futures`, at most [`IN_FLIGHT`] at a time, and returns their results in order (the
/// first error ends it). Take a `Vec`, built before the first await: a stream mapping a closure
/// to futures that borrow would be held across awaits, and the compiler then cannot prove the
/// caller's future `Send`.
pub(crate) async fn each_limited<T, F>(futures: Vec<F>) -> StateResult<Vec<T>>
where
    F: std::future::Future<Output = StateResult<T>>,
{
    futures_util::stream::iter(futures)
        .buffered(IN_FLIGHT)
        .try_collect()
        .await
}

/// How long a command that was not run because its slot is moving is sent again. Redis Cluster
/// refuses a command on several keys of a slot whose keys are half moved to another primary
/// (`TRYAGAIN`), without running it, until the move is over (a few milliseconds per room); and
/// fred gives up on a command whose redirections during the move used up its attempts ("Too
/// many failed write attempts", raised before it is written). Neither is retried by fred.
const TRYAGAIN_FOR: Duration = Duration::from_secs(2);

/// Whether `e` says the command was not run because its slot is moving (see [`TRYAGAIN_FOR`]),
/// including fred's redirection limit (`connect.rs`, `CLUSTER_REDIRECTIONS`): a redirected
/// command was not run by the node that redirected it.
fn not_run_during_a_move(e: &Error) -> bool {
    e.details().starts_with("TRYAGAIN")
        || e.details() == "Too many failed write attempts."
        || e.details() == "Too many redirections."
}

/// Runs `send` until it is not refused as [`not_run_during_a_move`], for at most
/// [`TRYAGAIN_FOR`], waiting 5 ms, then twice as long each time up to 100 ms, between attempts.
async fn retry_tryagain<R, F, Fut>(mut send: F) -> StateResult<R>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<R, Error>>,
{
    let give_up = tokio::time::Instant::now() + TRYAGAIN_FOR;
    let mut pause = Duration::from_millis(5);
    loop {
        match send().await {
            Err(e) if not_run_during_a_move(&e) => {
                if tokio::time::Instant::now() + pause > give_up {
                    return Err(state_error(&e));
                }
                tracing::debug!(error = %e, "slot being moved: sending the command again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            result => return result.map_err(|e| state_error(&e)),
        }
    }
}

/// Commands one cluster-wide step keeps in flight at once (a listing reading every bucket, a
/// purge walking a node's memberships): enough to fill the pipelines to every primary, few
/// enough that one step cannot queue thousands of commands behind the ones of other callers.
pub(crate) const IN_FLIGHT: usize = 64;

/// Keys `SCAN` examines per call: the keyspace holds a key or more per user, and every node
/// lists the live nodes every few seconds, so small pages meant hundreds of round trips (and
/// replies to every node) per listing.
const SCAN_PAGE: u32 = 1000;

/// A duration in whole milliseconds, at least 1 (Redis refuses a zero TTL).
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn refused() -> Error {
        Error::new(
            ErrorKind::Unknown,
            "TRYAGAIN Multiple keys request during rehashing of slot",
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_refused_during_a_move_is_sent_again_until_it_runs() {
        let calls = AtomicU32::new(0);
        let r: StateResult<u32> = retry_tryagain(|| async {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            if n < 3 { Err(refused()) } else { Ok(n) }
        })
        .await;
        assert_eq!(r.ok(), Some(3));
        let unsent = AtomicU32::new(0);
        let r: StateResult<u32> = retry_tryagain(|| async {
            if unsent.fetch_add(1, Ordering::Relaxed) == 0 {
                Err(Error::new(
                    ErrorKind::Unknown,
                    "Too many failed write attempts.",
                ))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(r.ok(), Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_after_a_bound_and_other_errors_are_not_retried() {
        let start = tokio::time::Instant::now();
        let calls = AtomicU32::new(0);
        let r: StateResult<()> = retry_tryagain(|| async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(refused())
        })
        .await;
        assert!(matches!(r, Err(StateError::Backend(_))), "{r:?}");
        assert!(start.elapsed() <= TRYAGAIN_FOR, "{:?}", start.elapsed());
        assert!(calls.load(Ordering::Relaxed) > 5);

        let once = AtomicU32::new(0);
        let r: StateResult<()> = retry_tryagain(|| async {
            once.fetch_add(1, Ordering::Relaxed);
            Err(Error::new(
                ErrorKind::Unknown,
                "ERR wrong number of arguments",
            ))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(once.load(Ordering::Relaxed), 1);
    }
}
