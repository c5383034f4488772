//! In-memory backends for a single node, assembled. Each lives beside its trait
//! ([`crate::rooms`], [`crate::presence`], ...); they keep their data behind one
//! `std::sync::Mutex` and hold no lock across an `.await`.

use std::sync::Arc;

pub use crate::bans::MemoryBans;
pub use crate::failures::MemoryFailures;
pub use crate::games::MemoryGames;
pub use crate::history::MemoryHistory;
pub use crate::nodes::MemoryNodes;
pub use crate::presence::MemoryPresence;
use crate::retention::Retention;
pub use crate::rooms::MemoryRooms;
use crate::state::StateBackends;

/// Builds the full set of in-memory backends, with the default [`Retention`].
pub fn backends(history_capacity: usize) -> StateBackends {
    backends_with(history_capacity, Retention::default())
}

/// Builds the full set of in-memory backends. A room's history lives in the room's entry, so it
/// goes when the room goes.
pub fn backends_with(history_capacity: usize, retention: Retention) -> StateBackends {
    let rooms = Arc::new(MemoryRooms::new(retention));
    StateBackends {
        rooms: rooms.clone(),
        presence: Arc::new(MemoryPresence::default()),
        bans: Arc::new(MemoryBans::default()),
        history: Arc::new(MemoryHistory::with_rooms(
            history_capacity,
            retention.history,
            rooms,
        )),
        games: Arc::new(MemoryGames::new(retention.game_sequence)),
        nodes: Arc::new(MemoryNodes::default()),
        failures: Arc::new(MemoryFailures::default()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::state::*;
    use crate::test_support::*;

    #[tokio::test]
    async fn a_rooms_history_goes_with_the_room() {
        let state = backends_with(10, short_retention());
        let scope = HistoryScope::Room("hr".into());
        state.rooms.create(room("hr", 5)).await.unwrap();
        state.rooms.join("hr", member("s1", "n")).await.unwrap();
        state
            .history
            .append(&scope, serde_json::json!({"secret": 1}))
            .await
            .unwrap();
        assert_eq!(state.history.recent(&scope, 10).await.unwrap().len(), 1);
        state.rooms.leave("hr", "s1").await.unwrap();
        // A late message for the deleted room starts no history.
        state
            .history
            .append(&scope, serde_json::json!({"late": 1}))
            .await
            .unwrap();
        state.rooms.create(room("hr", 5)).await.unwrap();
        assert!(
            state.history.recent(&scope, 10).await.unwrap().is_empty(),
            "a room re-created under the same id starts empty"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_histories_and_game_counters_are_forgotten() {
        let h = MemoryHistory::with_rooms(
            5,
            std::time::Duration::from_secs(100),
            Arc::new(MemoryRooms::default()),
        );
        let games = MemoryGames::new(std::time::Duration::from_secs(100));
        for i in 0..50 {
            h.append(
                &HistoryScope::private("a", &format!("made-up-{i}")),
                serde_json::json!(i),
            )
            .await
            .unwrap();
            games.next(&format!("g{i}")).await.unwrap();
        }
        assert_eq!((h.scope_count(), games.game_count()), (50, 50));
        tokio::time::advance(std::time::Duration::from_secs(60)).await;
        h.append(&HistoryScope::private("a", "b"), serde_json::json!(1))
            .await
            .unwrap();
        assert_eq!(
            games.next("g0").await.unwrap(),
            2,
            "a live game keeps counting"
        );
        tokio::time::advance(std::time::Duration::from_secs(60)).await;
        assert_eq!((h.scope_count(), games.game_count()), (1, 1));
        assert!(
            h.recent(&HistoryScope::private("a", "made-up-1"), 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
