//! The bottom layer of the gateway: what clients and other nodes see, named once. Namespace and
//! reserved event names ([`names`]), Socket.IO room names built and parsed back ([`rooms`]), and
//! typed client payloads with their checks ([`payloads`], [`fields`]).
//!
//! Nothing here imports from the rest of the gateway: use cases and handlers build on it.

pub mod fields;
pub mod names;
pub mod outgoing;
pub mod payloads;
pub mod rooms;

/// The current time as the contract writes timestamps: RFC 3339, UTC, milliseconds.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
