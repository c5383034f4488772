//! Keeping track of a fred connection: whether it is up, how often it came back, and the
//! control channel's subscription after each reconnect of the pub/sub connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::prelude::*;
use tokio::sync::{broadcast, watch};

use crate::keys;

/// fred 10.1's own resubscription is broken (it sends empty SUBSCRIBE lists), so the control
/// channel is subscribed again by hand after every reconnect.
pub(super) async fn resubscribe_on_reconnect(
    subscriber: SubscriberClient,
    mut reconnects: watch::Receiver<u64>,
    done: watch::Sender<u64>,
) {
    while reconnects.changed().await.is_ok() {
        match subscriber.subscribe(keys::CONTROL_CHANNEL).await {
            Ok(()) => {
                tracing::info!("resubscribed to the control channel after a reconnect");
                done.send_modify(|n| *n += 1);
            }
            Err(e) => tracing::error!(error = %e, "resubscribing to the control channel failed"),
        }
    }
}

/// Keeps `up` in step with one fred connection and counts its reconnections.
///
/// fred reports a lost connection on its error channel at once, but its client state stays
/// "connected" until the first reconnection attempt (after the policy's delay); commands sent in
/// between would wait for the full command timeout. So `up` drops on the error and rises again
/// when fred's state has visibly left "connected" (from then on fred's state is accurate), on a
/// reconnect, or after a short grace when the error did not cost the connection.
pub(super) async fn track_link<C>(client: C, up: Arc<AtomicBool>, reconnects: watch::Sender<u64>)
where
    C: ClientLike + EventInterface,
{
    let mut errors = client.error_rx();
    let mut reconnected = client.reconnect_rx();
    loop {
        tokio::select! {
            err = errors.recv() => match err {
                Ok((e, _)) => {
                    tracing::warn!(error = %e, "Redis connection error");
                    up.store(false, Ordering::Release);
                    let grace = tokio::time::sleep(Duration::from_millis(500));
                    tokio::pin!(grace);
                    loop {
                        tokio::select! {
                            () = &mut grace => break,
                            r = reconnected.recv() => {
                                if !matches!(r, Err(broadcast::error::RecvError::Closed)) {
                                    tracing::info!("reconnected to Redis");
                                    reconnects.send_modify(|n| *n += 1);
                                }
                                break;
                            }
                            () = tokio::time::sleep(Duration::from_millis(20)) => {
                                if !client.is_connected() {
                                    break;
                                }
                            }
                        }
                    }
                    up.store(true, Ordering::Release);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            r = reconnected.recv() => match r {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    tracing::info!("reconnected to Redis");
                    reconnects.send_modify(|n| *n += 1);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}
