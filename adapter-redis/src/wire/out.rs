//! The serde structs both wires write: the classic one (`wire/`) and the sharded one
//! (`sharded_wire/envelope.rs`) put the same objects in their messages (a socket.io packet,
//! a selection with its flags, the body of socketsJoin/socketsLeave and of
//! disconnectSockets); field order is Node's, pinned byte for byte by the golden tests of
//! each wire.

use serde::Serialize;

use super::{Flags, Target};
use crate::msgpack::Wire;

/// `{type: 2, data[, nsp]}`: the socket.io EVENT packet a broadcast carries. The classic wire
/// writes its namespace; the sharded one does not (Node adds it only when delivering
/// locally, after publishing).
#[derive(Serialize)]
pub(crate) struct PacketOut<'a> {
    #[serde(rename = "type")]
    kind: u8,
    data: &'a Wire,
    #[serde(skip_serializing_if = "Option::is_none")]
    nsp: Option<&'a str>,
}

impl<'a> PacketOut<'a> {
    /// Socket.io's EVENT packet type (binary events too, at the adapter's level).
    const EVENT: u8 = 2;

    /// An EVENT packet with its namespace (classic wire).
    pub(crate) fn event(data: &'a Wire, nsp: &'a str) -> Self {
        Self {
            kind: Self::EVENT,
            data,
            nsp: Some(nsp),
        }
    }

    /// An EVENT packet without namespace (sharded wire).
    pub(crate) fn event_without_nsp(data: &'a Wire) -> Self {
        Self {
            kind: Self::EVENT,
            data,
            nsp: None,
        }
    }
}

/// `{rooms, except[, flags]}`: the selection (and flags) of a message.
#[derive(Serialize)]
pub(crate) struct OptsOut<'a> {
    rooms: &'a [String],
    except: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    flags: Option<FlagsOut>,
}

impl<'a> OptsOut<'a> {
    /// The selection `target`, with `flags` when the message carries them.
    pub(crate) fn new(target: &'a Target, flags: Option<FlagsOut>) -> Self {
        Self {
            rooms: &target.rooms,
            except: &target.except,
            flags,
        }
    }
}

/// The flags that are set, in the order socket.io's `BroadcastOperator` chains them most
/// often (`io.volatile.compress(false)`, `io.timeout(ms)`); absent ones are left out, as
/// Node leaves them out.
#[derive(Serialize)]
pub(crate) struct FlagsOut {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    volatile: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    compress: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<i64>,
}

impl FlagsOut {
    /// The flags as written: a timeout beyond `i64` is written as `i64::MAX`.
    pub(crate) fn new(volatile: bool, compress: Option<bool>, timeout_ms: Option<u64>) -> Self {
        Self {
            volatile,
            compress,
            timeout: timeout_ms.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
        }
    }
}

impl From<Flags> for FlagsOut {
    /// The classic wire's flags (it has no `compress`).
    fn from(flags: Flags) -> Self {
        Self::new(flags.volatile, None, flags.timeout_ms)
    }
}

/// `{opts, rooms}`: the body of socketsJoin and socketsLeave.
#[derive(Serialize)]
pub(crate) struct RoomsChangeOut<'a> {
    pub opts: OptsOut<'a>,
    pub rooms: &'a [String],
}

/// `{opts, close}`: the body of disconnectSockets.
#[derive(Serialize)]
pub(crate) struct DisconnectOut<'a> {
    pub opts: OptsOut<'a>,
    pub close: bool,
}
