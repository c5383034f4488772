//! Requests every other node must answer (`fetchSockets`, `allRooms`, `serverCount`, ...):
//! publish once on the namespace's request channel, then collect one answer per peer until all
//! answered or the request timeout passed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::Gathered;
use crate::adapter::deadline_in;
use crate::connection::Shared;
use crate::error::{AdapterError, MissingResponses};
use crate::metrics::inc;
use crate::namespace::NsCore;
use crate::wire::{Request, Response};

impl NsCore {
    /// Other nodes subscribed to this namespace's request channel.
    pub(crate) async fn remote_server_count(&self, shared: &Shared) -> Result<usize, AdapterError> {
        let n = shared.numsub(self.count_channel()).await?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX).saturating_sub(1))
    }

    /// Publishes the request `build` makes from this node's uid and a fresh request id, and
    /// collects one answer per other node, de-duplicated per responder uid, until all arrived
    /// or the request timeout passed.
    pub(crate) async fn gather(
        self: &Arc<Self>,
        shared: &Shared,
        operation: &'static str,
        build: impl FnOnce(String, String) -> Request,
    ) -> Result<Gathered<Vec<Response>>, AdapterError> {
        let expected = self.remote_server_count(shared).await?;
        if expected == 0 {
            return Ok(Gathered {
                value: Vec::new(),
                missing: None,
            });
        }
        let (guard, mut rx) = self.register(&shared.config)?;
        let request = build(self.uid.clone(), guard.id.clone());
        let (channel, bytes) = self.request_out(request)?;
        shared.publish(channel, bytes).await?;
        let started = Instant::now();
        let deadline = deadline_in(shared.config.request_timeout);
        let (answers, answered) = collect_answers(&mut rx, expected, deadline).await;
        drop(guard);
        let missing = (answers.len() < expected).then(|| {
            inc(&shared.metrics.request_timeouts);
            let silent_peers: Vec<String> = self
                .recent_rust_peers()
                .into_iter()
                .filter(|p| !answered.contains(p))
                .collect();
            let missing = MissingResponses {
                operation,
                expected,
                received: answers.len(),
                silent_peers,
                waited: started.elapsed(),
            };
            tracing::warn!(nsp = %self.nsp, %missing, "cluster request incomplete");
            missing
        });
        Ok(Gathered {
            value: answers,
            missing,
        })
    }
}

/// One answer per responder (de-duplicated by the uid this adapter's peers sign with; Node
/// peers do not sign) until `expected` answered, the senders are gone or `deadline` passed.
async fn collect_answers(
    rx: &mut mpsc::Receiver<Response>,
    expected: usize,
    deadline: tokio::time::Instant,
) -> (Vec<Response>, HashSet<String>) {
    let mut answers = Vec::with_capacity(expected);
    let mut answered: HashSet<String> = HashSet::new();
    while answers.len() < expected {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(resp)) => {
                if let Some(uid) = &resp.uid
                    && !answered.insert(uid.clone())
                {
                    continue;
                }
                answers.push(resp);
            }
            Ok(None) | Err(_) => break,
        }
    }
    (answers, answered)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;

    fn answer(uid: Option<&str>) -> Response {
        let uid = uid.map(|u| format!(r#","uid":"{u}""#)).unwrap_or_default();
        Response::decode(format!(r#"{{"requestId":"r","rooms":[]{uid}}}"#).as_bytes()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_stalls_the_collection_exactly_until_the_deadline() {
        let (tx, mut rx) = mpsc::channel(8);
        let start = Instant::now();
        let timeout = Duration::from_millis(1500);
        tx.send(answer(Some("peer-a"))).await.unwrap();
        // The same peer twice counts once; the second expected peer never answers.
        tx.send(answer(Some("peer-a"))).await.unwrap();
        let (answers, answered) = collect_answers(&mut rx, 2, start + timeout).await;
        assert_eq!(answers.len(), 1);
        assert_eq!(answered, HashSet::from(["peer-a".to_owned()]));
        assert_eq!(start.elapsed(), timeout);
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn the_collection_ends_as_soon_as_every_peer_answered() {
        let (tx, mut rx) = mpsc::channel(8);
        let start = Instant::now();
        tx.send(answer(Some("peer-a"))).await.unwrap();
        // Node peers do not sign their answers: each counts.
        tx.send(answer(None)).await.unwrap();
        let (answers, _) = collect_answers(&mut rx, 2, start + Duration::from_secs(60)).await;
        assert_eq!(answers.len(), 2);
        assert_eq!(start.elapsed(), Duration::ZERO);
        drop(tx);
    }
}
