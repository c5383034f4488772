//! Presence of sockets that never entered `/`.
//!
//! Presence is recorded before the CONNECT ack. If the ack then cannot be sent (transport gone),
//! socketioxide drops the socket without calling its disconnect handler; a check some seconds
//! after admission removes the record such a socket would otherwise leave behind.
//!
//! The checks wait in one queue served by one task rather than in a task per socket: a sleeping
//! task costs about 3 KiB, which every freshly connected client carried for the whole wait.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use socketioxide::socket::Sid;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{MAIN, Session, Shared, lock};

/// How long after admission a socket must have entered the namespace.
pub const ADMISSION_GUARD: Duration = Duration::from_secs(5);

/// Checks waiting in the queue at most. Past it (a connection burst beyond any configured rate
/// limit), a check waits in a task of its own instead: nothing is dropped.
const MAX_QUEUED: usize = 100_000;

/// The queue of pending checks, oldest first (all wait the same time, so also soonest first).
#[derive(Debug, Default)]
pub struct PresenceGuard {
    queue: Mutex<VecDeque<Check>>,
    queued: Arc<Notify>,
}

#[derive(Debug)]
struct Check {
    due: Instant,
    sid: Sid,
    session: Session,
}

impl PresenceGuard {
    /// Starts the task that runs the checks; it ends when `shared` is dropped.
    pub fn start(shared: &Arc<Shared>) {
        tokio::spawn(run(Arc::downgrade(shared)));
    }

    /// Schedules the check of socket `sid` of `/`, admitted with `session`.
    pub fn watch(shared: &Arc<Shared>, sid: Sid, session: &Session) {
        let check = Check {
            due: Instant::now() + ADMISSION_GUARD,
            sid,
            session: session.clone(),
        };
        let guard = &shared.presence_guard;
        let overflow = {
            let mut queue = lock(&guard.queue);
            if queue.len() < MAX_QUEUED {
                queue.push_back(check);
                None
            } else {
                Some(check)
            }
        };
        match overflow {
            None => guard.queued.notify_one(),
            Some(check) => {
                tracing::debug!(socket = %sid, "presence guard queue full: checking in a task");
                let shared = Arc::clone(shared);
                tokio::spawn(async move {
                    tokio::time::sleep_until(check.due).await;
                    run_check(&shared, check).await;
                });
            }
        }
    }
}

async fn run(shared: Weak<Shared>) {
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let (due_checks, next_due) = {
            let mut queue = lock(&strong.presence_guard.queue);
            let now = Instant::now();
            let ready = queue.iter().take_while(|c| c.due <= now).count();
            let due: Vec<Check> = queue.drain(..ready).collect();
            (due, queue.front().map(|c| c.due))
        };
        for check in due_checks {
            run_check(&strong, check).await;
        }
        // No strong reference is held while waiting. `notify_one` stores a permit, so a check
        // queued after the look above still wakes the wait on an empty queue; its timeout lets
        // the loop see that the node stopped.
        let queued = Arc::clone(&strong.presence_guard.queued);
        drop(strong);
        match next_due {
            Some(due) => tokio::time::sleep_until(due).await,
            None => {
                let _ = tokio::time::timeout(ADMISSION_GUARD, queued.notified()).await;
            }
        }
    }
}

async fn run_check(shared: &Shared, check: Check) {
    let present = shared
        .io
        .of(MAIN)
        .and_then(|op| op.get_socket(check.sid))
        .is_some();
    if check.session.was_connected() || present {
        return;
    }
    tracing::debug!(socket = %check.sid, "socket never entered /: removing its presence");
    super::main_ns::forget_presence(shared, &check.session, &check.sid.to_string()).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::Parser;
    use cluster::OnlineSocket;
    use socketioxide::SocketIo;

    use super::*;
    use crate::app::App;
    use crate::auth::Identity;
    use crate::config::{Cli, Config};

    async fn node() -> Arc<Shared> {
        let cli = Cli::try_parse_from(["gateway", "--dev"]).unwrap();
        let app = App::new(
            Config::from_args(cli.serve).unwrap(),
            cluster::memory::backends(10),
        )
        .unwrap();
        let (_layer, io) = SocketIo::builder()
            .with_state(Arc::clone(&app))
            .with_adapter::<crate::Adapter>(adapter_redis::RedisAdapterCtr::local())
            .build_layer();
        super::super::register(&io, &app).await.unwrap()
    }

    async fn admitted(shared: &Arc<Shared>, user: &str) -> (Sid, Session) {
        let sid = Sid::new();
        let identity = Identity {
            user_id: user.into(),
            username: user.into(),
            role: "user".into(),
        };
        let session = Session::new(identity, &shared.app);
        let online = OnlineSocket {
            user_id: user.into(),
            username: user.into(),
            socket_id: sid.to_string(),
            node_id: shared.app.server_id.clone(),
        };
        shared
            .app
            .backends
            .presence
            .socket_connected(online)
            .await
            .unwrap();
        PresenceGuard::watch(shared, sid, &session);
        (sid, session)
    }

    async fn online_sockets(shared: &Shared) -> Vec<String> {
        let online = shared.app.backends.presence.online().await.unwrap();
        online.into_iter().map(|s| s.socket_id).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn presence_of_a_socket_that_never_entered_goes_after_the_guard_time() {
        let shared = node().await;
        let (lost, _) = admitted(&shared, "lost").await;
        let (entered, session) = admitted(&shared, "entered").await;
        session.mark_connected();

        tokio::time::sleep(ADMISSION_GUARD / 2).await;
        let halfway = online_sockets(&shared).await;
        assert!(halfway.contains(&lost.to_string()), "removed too early");

        let deadline = Instant::now() + ADMISSION_GUARD * 2;
        while online_sockets(&shared).await.contains(&lost.to_string()) {
            assert!(
                Instant::now() < deadline,
                "presence of the lost socket stayed"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(online_sockets(&shared).await, [entered.to_string()]);
        assert!(lock(&shared.presence_guard.queue).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn checks_past_the_queue_bound_still_run() {
        let shared = node().await;
        let (_, entered) = admitted(&shared, "entered").await;
        entered.mark_connected();
        {
            let mut queue = lock(&shared.presence_guard.queue);
            while queue.len() < MAX_QUEUED {
                queue.push_back(Check {
                    due: Instant::now() + ADMISSION_GUARD,
                    sid: Sid::new(),
                    session: entered.clone(),
                });
            }
        }
        let (lost, _) = admitted(&shared, "lost").await;
        assert_eq!(lock(&shared.presence_guard.queue).len(), MAX_QUEUED);

        let deadline = Instant::now() + ADMISSION_GUARD * 2;
        while online_sockets(&shared).await.contains(&lost.to_string()) {
            assert!(Instant::now() < deadline, "the overflowing check never ran");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
