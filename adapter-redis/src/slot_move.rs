//! Publishing through a Redis Cluster slot's move: a command Redis did not run because the
//! slot was moving is sent again, for a bounded time, so a publish is not lost to the move.

use std::future::Future;
use std::time::Duration;

use crate::error::AdapterError;

/// Whether `e` says the command was not run because its slot is moving on a Redis Cluster:
/// `TRYAGAIN`, or fred giving up on a command whose `MOVED`/`ASK` redirections used its attempts
/// ("Too many failed write attempts.", raised before the command is written). Either way Redis
/// did not run it, so sending it again publishes it once.
fn not_run_during_a_move(e: &AdapterError) -> bool {
    match e {
        AdapterError::Redis(e) => {
            e.details().starts_with("TRYAGAIN") || e.details() == "Too many failed write attempts."
        }
        _ => false,
    }
}

/// Runs `send` until it is not refused as [`not_run_during_a_move`] or `give_up` comes,
/// waiting 5 ms, then twice as long each time up to 100 ms, between attempts: a slot's move
/// ends within milliseconds once its keys are across, and a publish must not be lost to it.
pub(crate) async fn resend_while_moving<F, Fut>(
    give_up: tokio::time::Instant,
    mut send: F,
) -> Result<(), AdapterError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), AdapterError>>,
{
    let mut pause = Duration::from_millis(5);
    loop {
        match send().await {
            Err(e)
                if not_run_during_a_move(&e) && tokio::time::Instant::now() + pause < give_up =>
            {
                tracing::debug!(error = %e, "slot being moved: publishing again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn refused(details: &'static str) -> AdapterError {
        AdapterError::Redis(fred::error::Error::new(
            fred::error::ErrorKind::Unknown,
            details,
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn a_publish_refused_during_a_slot_move_is_sent_again_until_it_runs() {
        let give_up = tokio::time::Instant::now() + Duration::from_secs(5);
        let calls = AtomicU32::new(0);
        let result = resend_while_moving(give_up, || async {
            match calls.fetch_add(1, Ordering::Relaxed) {
                0 => Err(refused("Too many failed write attempts.")),
                1 => Err(refused(
                    "TRYAGAIN Multiple keys request during rehashing of slot",
                )),
                _ => Ok(()),
            }
        })
        .await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(calls.load(Ordering::Relaxed), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn resends_stop_at_the_deadline_and_other_errors_are_not_resent() {
        let start = tokio::time::Instant::now();
        let give_up = start + Duration::from_secs(1);
        let result = resend_while_moving(give_up, || async {
            Err(refused("Too many failed write attempts."))
        })
        .await;
        assert!(matches!(result, Err(AdapterError::Redis(_))), "{result:?}");
        assert!(tokio::time::Instant::now() <= give_up);

        let calls = AtomicU32::new(0);
        let result = resend_while_moving(give_up, || async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(refused("ERR unknown command"))
        })
        .await;
        assert!(matches!(result, Err(AdapterError::Redis(_))), "{result:?}");
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        let calls = AtomicU32::new(0);
        let result = resend_while_moving(give_up, || async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(AdapterError::NotConnected)
        })
        .await;
        assert!(
            matches!(result, Err(AdapterError::NotConnected)),
            "{result:?}"
        );
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }
}
