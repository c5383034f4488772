//! Which local sockets a selection reaches: socketioxide's options turned into the wire's
//! rooms and excepts, and the wire's selection (where Node names single sockets as rooms)
//! turned back into local sockets.

use std::collections::HashSet;
use std::str::FromStr;

use socketioxide_core::Sid;
use socketioxide_core::adapter::{BroadcastFlags, BroadcastOptions, Room, SocketEmitter};

use super::{RedisAdapter, Remote};
use crate::connection::Shared;
use crate::wire::Target;

/// Who a local operation reaches: a selection socketioxide can express, or an explicit list
/// (when the wire names socket ids as rooms, which socketioxide sockets are not members of).
pub(super) enum Selection {
    Opts(Box<BroadcastOptions>),
    Sids(Vec<Sid>),
}

/// Applies `op` to each socket id, going on past failures, and returns every error.
pub(super) fn for_each_sid<T>(
    sids: Vec<Sid>,
    mut op: impl FnMut(Sid) -> Result<(), Vec<T>>,
) -> Result<(), Vec<T>> {
    let errors: Vec<T> = sids
        .into_iter()
        .filter_map(|sid| op(sid).err())
        .flatten()
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

impl<E: SocketEmitter> RedisAdapter<E> {
    pub(super) fn remote_for(&self, opts: &BroadcastOptions) -> Option<&Remote> {
        self.remote
            .as_ref()
            .filter(|_| !opts.is_local(self.local.server_id()))
    }

    /// Whether an operation targets one socket of another node only (then it must not be
    /// applied to the local room map).
    pub(super) fn targets_other_node(&self, opts: &BroadcastOptions) -> bool {
        !opts.has_flag(BroadcastFlags::Broadcast)
            && opts.rooms.is_empty()
            && opts.sid.is_some()
            && opts.server_id.is_some_and(|s| s != self.local.server_id())
    }

    /// The wire selection for `opts`, or `None` when nothing remote is selected.
    pub(super) fn wire_target(&self, shared: &Shared, opts: &BroadcastOptions) -> Option<Target> {
        let mut target = Target {
            rooms: opts.rooms.iter().map(|r| r.to_string()).collect(),
            except: opts.except.iter().map(|r| r.to_string()).collect(),
        };
        let broadcast = opts.has_flag(BroadcastFlags::Broadcast);
        if broadcast && let Some(sid) = opts.sid {
            target.except.push(shared.foreign.wire_id(sid));
        }
        if target.rooms.is_empty() && !broadcast {
            target.rooms.push(shared.foreign.wire_id(opts.sid?));
        }
        Some(target)
    }

    pub(super) fn is_local_sid(&self, name: &str) -> Option<Sid> {
        let sid = Sid::from_str(name).ok()?;
        (!self
            .local
            .fetch_sockets(BroadcastOptions::new(sid))
            .is_empty())
        .then_some(sid)
    }

    pub(super) fn select(&self, target: &Target, volatile: bool) -> Selection {
        let mut sid_rooms = Vec::new();
        let mut plain_rooms = Vec::new();
        for room in &target.rooms {
            match self.is_local_sid(room) {
                Some(sid) => sid_rooms.push(sid),
                None => plain_rooms.push(room.clone()),
            }
        }
        let except_sids: Vec<Sid> = target
            .except
            .iter()
            .filter_map(|r| self.is_local_sid(r))
            .collect();
        let mut opts = BroadcastOptions::default();
        opts.add_flag(BroadcastFlags::Broadcast);
        if volatile {
            opts.add_flag(BroadcastFlags::Volatile);
        }
        opts.rooms = plain_rooms.iter().cloned().map(Room::from).collect();
        opts.except = target.except.iter().cloned().map(Room::from).collect();
        if sid_rooms.is_empty() && except_sids.is_empty() {
            return Selection::Opts(Box::new(opts));
        }
        let mut sids: Vec<Sid> = if !plain_rooms.is_empty() || target.rooms.is_empty() {
            self.local.sockets(opts)
        } else {
            Vec::new()
        };
        sids.extend(sid_rooms);
        let mut seen = HashSet::new();
        sids.retain(|s| !except_sids.contains(s) && seen.insert(*s));
        Selection::Sids(sids)
    }

    pub(super) fn single(sid: Sid, volatile: bool) -> BroadcastOptions {
        let mut opts = BroadcastOptions::new(sid);
        if volatile {
            opts.add_flag(BroadcastFlags::Volatile);
        }
        opts
    }

    /// Delivers a broadcast from another node to the selected local sockets, under the same
    /// outgoing-queue policy as a local broadcast (see [`DeliveryObserver`]).
    ///
    pub(super) fn selected_sids(&self, selection: Selection) -> Vec<Sid> {
        match selection {
            Selection::Opts(opts) => self.local.sockets(*opts),
            Selection::Sids(sids) => sids,
        }
    }

    pub(super) fn local_rooms(&self, target: Option<&Target>) -> HashSet<Room> {
        match target {
            None => {
                let mut opts = BroadcastOptions::default();
                opts.add_flag(BroadcastFlags::Broadcast);
                self.local.rooms(opts)
            }
            Some(target) => match self.select(target, false) {
                Selection::Opts(opts) => self.local.rooms(*opts),
                Selection::Sids(sids) => sids
                    .into_iter()
                    .flat_map(|sid| self.local.socket_rooms(sid))
                    .collect(),
            },
        }
    }
}
