//! Event data between socketioxide's form (JSON text plus binary attachments) and the wire's
//! msgpack value, and the deadline arithmetic shared by requests.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use socketioxide_core::packet::{Packet, PacketData};
use socketioxide_core::{Str, Value};

use crate::error::AdapterError;
use crate::json;
use crate::msgpack::Wire;

/// `now + after`, saturating far in the future instead of overflowing.
pub(crate) fn deadline_in(after: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

/// Converts socketioxide event data (JSON text plus binary attachments) to the wire value.
pub(crate) fn value_to_wire(value: &Value) -> Result<Wire, AdapterError> {
    match value {
        Value::Str(text, bins) => {
            let bins: Vec<Bytes> = bins.iter().flatten().cloned().collect();
            json::from_event_json(text, &bins).map_err(|e| AdapterError::Encode(e.to_string()))
        }
        Value::Bytes(_) => Err(AdapterError::Encode(
            "the msgpack socket.io parser is not supported; use the common parser".into(),
        )),
    }
}

/// Converts a wire value to socketioxide event data.
pub(crate) fn wire_to_value(wire: &Wire) -> Value {
    let mut bins = Vec::new();
    let text = json::to_json(wire, &mut bins);
    Value::Str(
        Str::from(text),
        (!bins.is_empty()).then(|| VecDeque::from(bins)),
    )
}

pub(super) fn event_data(packet: &Packet) -> Option<&Value> {
    match &packet.inner {
        PacketData::Event(v, _) | PacketData::BinaryEvent(v, _) => Some(v),
        _ => None,
    }
}
