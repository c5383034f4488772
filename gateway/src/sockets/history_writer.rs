//! Message history appends, several in flight, in the order they were queued.
//!
//! A room message is stored before it is broadcast. Awaiting each append in the sender's event
//! order allowed one message per state-backend round trip per socket: with 3 nodes on Redis, a
//! busy publisher's backlog then went out one message at a time and every receiver paid one
//! socket write per message (the benchmark's cluster fan-out saturated at half the offered load).
//! Here the handler queues its append and lets the socket's next event start; the appends go
//! out in queue order on the backend's connection, so history keeps arrival order, and each
//! broadcast still waits for its own append (see `actions::messages::store_then_broadcast`).

use std::sync::Arc;

use cluster::{History, HistoryScope, StateError, StateResult};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::tasks::Tasks;

/// Appends waiting to be sent. When full, a handler waits for room (back-pressure on that
/// socket's events); nothing is dropped.
const QUEUE: usize = 1024;

/// Appends sent and not answered yet.
const IN_FLIGHT: usize = 256;

/// The node's history writer: one task, started with the namespaces.
#[derive(Debug, Clone)]
pub struct HistoryWriter {
    queue: mpsc::Sender<Append>,
}

#[derive(Debug)]
struct Append {
    scope: HistoryScope,
    message: Value,
    done: oneshot::Sender<StateResult<()>>,
}

/// The answer of one queued append.
#[derive(Debug)]
pub struct Stored(oneshot::Receiver<StateResult<()>>);

impl Stored {
    /// Waits until the message is stored (or refused by the backend).
    pub async fn wait(self) -> StateResult<()> {
        self.0
            .await
            .unwrap_or_else(|_| Err(StateError::Unavailable("history writer stopped".into())))
    }
}

impl HistoryWriter {
    /// Starts the writer over `history`, tracked by `tasks`; it stops when every handle is
    /// dropped, or when `tasks` are cancelled (after the appends already sent are answered).
    pub fn start(history: Arc<dyn History>, tasks: &Tasks) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tasks.spawn(run(rx, history, tasks.cancelled()));
        Self { queue }
    }

    /// Queues `message` for `scope`. Appends queued one after the other reach the backend in
    /// that order.
    pub async fn append(&self, scope: HistoryScope, message: Value) -> Stored {
        let (done, answer) = oneshot::channel();
        let append = Append {
            scope,
            message,
            done,
        };
        if let Err(mpsc::error::SendError(append)) = self.queue.send(append).await {
            let _ = append.done.send(Err(StateError::Unavailable(
                "history writer stopped".into(),
            )));
        }
        Stored(answer)
    }
}

async fn run(
    mut queue: mpsc::Receiver<Append>,
    history: Arc<dyn History>,
    cancelled: CancellationToken,
) {
    let mut in_flight = FuturesOrdered::new();
    let mut open = true;
    while open || !in_flight.is_empty() {
        tokio::select! {
            // First, so a newly queued append gets its first poll (which sends the command)
            // before the next one is taken: the backend sees them in queue order.
            biased;
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            () = cancelled.cancelled(), if open => open = false,
            item = queue.recv(), if open && in_flight.len() < IN_FLIGHT => match item {
                Some(Append { scope, message, done }) => {
                    let history = Arc::clone(&history);
                    in_flight.push_back(async move {
                        let _ = done.send(history.append(&scope, message).await);
                    });
                }
                None => open = false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn appends_are_stored_in_queue_order_and_answered() {
        let history: Arc<dyn History> = Arc::new(cluster::memory::MemoryHistory::new(100));
        let writer = HistoryWriter::start(Arc::clone(&history), &Tasks::default());
        let scope = HistoryScope::Room("r".into());
        let mut answers = Vec::new();
        for i in 0..50 {
            answers.push(writer.append(scope.clone(), json!({ "n": i })).await);
        }
        for answer in answers {
            answer.wait().await.unwrap();
        }
        let stored = history.recent(&scope, 100).await.unwrap();
        let order: Vec<i64> = stored.iter().map(|m| m["n"].as_i64().unwrap()).collect();
        assert_eq!(order, (0..50).collect::<Vec<_>>());
    }

    /// Records the order in which appends reach it, answers later ones sooner, and refuses
    /// message 3.
    #[derive(Debug, Default)]
    struct SlowBackend {
        arrived: std::sync::Mutex<Vec<i64>>,
    }

    #[async_trait::async_trait]
    impl History for SlowBackend {
        async fn append(&self, _: &HistoryScope, message: Value) -> StateResult<()> {
            let n = message["n"].as_i64().unwrap();
            self.arrived.lock().unwrap().push(n);
            tokio::time::sleep(std::time::Duration::from_millis(100 - 10 * n as u64)).await;
            if n == 3 {
                return Err(StateError::Unavailable("refused".into()));
            }
            Ok(())
        }

        async fn newest(
            &self,
            _: &HistoryScope,
            _: std::num::NonZeroUsize,
        ) -> StateResult<Vec<Value>> {
            Ok(Vec::new())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn appends_overlap_reach_the_backend_in_order_and_each_gets_its_own_answer() {
        let backend = Arc::new(SlowBackend::default());
        let writer =
            HistoryWriter::start(Arc::clone(&backend) as Arc<dyn History>, &Tasks::default());
        let scope = HistoryScope::Room("r".into());
        let mut answers = Vec::new();
        for n in 0..8 {
            answers.push(writer.append(scope.clone(), json!({ "n": n })).await);
        }
        let started = tokio::time::Instant::now();
        let results: Vec<bool> =
            futures_util::future::join_all(answers.into_iter().map(Stored::wait))
                .await
                .into_iter()
                .map(|r| r.is_ok())
                .collect();
        assert_eq!(*backend.arrived.lock().unwrap(), (0..8).collect::<Vec<_>>());
        assert_eq!(results, [true, true, true, false, true, true, true, true]);
        // In flight together: the slowest (100 ms), not the sum (540 ms).
        assert!(started.elapsed() < std::time::Duration::from_millis(200));
    }
}
