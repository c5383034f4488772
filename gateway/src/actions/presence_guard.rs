//! Presence of sockets that never entered `/`.
//!
//! Presence is recorded before the CONNECT ack. If the ack then cannot be sent (transport gone),
//! socketioxide drops the socket without calling its disconnect handler; a check some seconds
//! after admission removes the record such a socket would otherwise leave behind. The checks
//! wait in [`PresenceChecks`](crate::sockets::presence_checks::PresenceChecks).

use std::sync::{Arc, Weak};

use socketioxide::socket::Sid;
use tokio::time::Instant;

use crate::protocol::names::MAIN;
use crate::sockets::presence_checks::{ADMISSION_GUARD, Check};
use crate::sockets::{Session, Shared};

/// Starts the task that runs the checks; it ends when `shared` is dropped or the node's tasks
/// are cancelled.
pub fn start(shared: &Arc<Shared>) {
    shared.tasks.spawn(run(Arc::downgrade(shared)));
}

/// Schedules the check of socket `sid` of `/`, admitted with `session`.
pub fn watch(shared: &Arc<Shared>, sid: Sid, session: &Session) {
    if let Err(check) = shared
        .presence_checks
        .push(Check::of_admitted(sid, session))
    {
        tracing::debug!(socket = %sid, "presence guard queue full: checking in a task");
        let owned = Arc::clone(shared);
        let cancelled = shared.tasks.cancelled();
        shared.tasks.spawn(async move {
            tokio::select! {
                () = tokio::time::sleep_until(check.due) => run_check(&owned, check).await,
                () = cancelled.cancelled() => {}
            }
        });
    }
}

async fn run(shared: Weak<Shared>) {
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let (due_checks, next_due) = strong.presence_checks.take_due(Instant::now());
        for check in due_checks {
            run_check(&strong, check).await;
        }
        // No strong reference is held while waiting; the timeout lets the loop see that the
        // node stopped.
        let queued = strong.presence_checks.queued();
        let cancelled = strong.tasks.cancelled();
        drop(strong);
        let wait = async {
            match next_due {
                Some(due) => tokio::time::sleep_until(due).await,
                None => {
                    let _ = tokio::time::timeout(ADMISSION_GUARD, queued.notified()).await;
                }
            }
        };
        tokio::select! {
            () = wait => {}
            () = cancelled.cancelled() => return,
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
    super::presence::forget(shared, &check.session, &check.sid.to_string()).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::Parser;
    use cluster::OnlineSocket;
    use socketioxide::SocketIo;

    use std::time::Duration;

    use super::*;
    use crate::app::App;
    use crate::auth::Identity;
    use crate::config::{Cli, Config};
    use crate::sockets::presence_checks::MAX_QUEUED;

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
        crate::namespaces::register(&io, &app).await.unwrap()
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
        watch(shared, sid, &session);
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
        assert!(shared.presence_checks.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn checks_past_the_queue_bound_still_run() {
        let shared = node().await;
        let (_, entered) = admitted(&shared, "entered").await;
        entered.mark_connected();
        while shared.presence_checks.len() < MAX_QUEUED {
            let check = Check::of_admitted(Sid::new(), &entered);
            shared.presence_checks.push(check).unwrap();
        }
        let (lost, _) = admitted(&shared, "lost").await;
        assert_eq!(shared.presence_checks.len(), MAX_QUEUED);

        let deadline = Instant::now() + ADMISSION_GUARD * 2;
        while online_sockets(&shared).await.contains(&lost.to_string()) {
            assert!(Instant::now() < deadline, "the overflowing check never ran");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
