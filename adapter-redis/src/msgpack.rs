//! The msgpack value model of the wire and its codec, over `rmp-serde` (encoding) and `rmpv`
//! (decoding).
//!
//! The bytes are those of notepack.io 3.x, the encoder of Node's `@socket.io/redis-adapter`:
//! maps keep insertion order, integers take the smallest msgpack int (as `rmp` writes them),
//! every non-integer number is float64, binary is `bin8/16/32`.
//!
//! Decoding never allocates more than the input can back (`rmpv` borrows strings and binaries
//! from the input and grows arrays only as elements are read) and refuses nesting deeper than
//! [`MAX_DEPTH`], so hostile input is an error, never a panic.

use bytes::Bytes;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, SerializeTuple, Serializer};

/// Deepest nesting of arrays and maps the decoder accepts.
pub const MAX_DEPTH: usize = 64;

/// Levels a message puts above the event data it carries: the message (array or map), then
/// its `packet` map.
pub const ENVELOPE_DEPTH: usize = 2;

/// Deepest level (the event array `["name", args...]` is level 0) at which a value of event
/// data may sit and still be decoded by every peer. The one limit shared by the encoder
/// (`json::from_event_json`) and the decoder ([`MAX_DEPTH`] with the envelope), and what a
/// server must check client payloads against before it accepts them.
pub const MAX_EVENT_DATA_DEPTH: usize = MAX_DEPTH - ENVELOPE_DEPTH;

/// A decoded msgpack value.
#[derive(Debug, Clone, PartialEq)]
pub enum Wire {
    /// `nil` (and JS `undefined`).
    Nil,
    /// A boolean.
    Bool(bool),
    /// A signed integer that fits in `i64`.
    Int(i64),
    /// An unsigned integer above `i64::MAX`.
    UInt(u64),
    /// A float (float32 input is widened).
    F64(f64),
    /// A UTF-8 string.
    Str(String),
    /// Binary data.
    Bin(Bytes),
    /// An array.
    Array(Vec<Wire>),
    /// A map; keys are kept in wire order.
    Map(Vec<(Wire, Wire)>),
    /// An extension value `(type, data)`.
    Ext(i8, Bytes),
}

impl Wire {
    /// Builds a map with string keys, in the given order.
    pub fn map<const N: usize>(entries: [(&str, Wire); N]) -> Wire {
        Wire::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Wire::Str(k.to_owned()), v))
                .collect(),
        )
    }

    /// Looks up a string key in a map.
    pub fn get(&self, key: &str) -> Option<&Wire> {
        match self {
            Wire::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Wire::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Wire::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer inside, if this is an integer (or an integral float).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Wire::Int(i) => Some(*i),
            Wire::UInt(u) => i64::try_from(*u).ok(),
            Wire::F64(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Wire]> {
        match self {
            Wire::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Encodes to msgpack bytes.
    pub fn encode(&self) -> Vec<u8> {
        to_msgpack(self)
    }

    /// Decodes exactly one value spanning all of `input`.
    pub fn decode(input: &[u8]) -> Result<Wire, DecodeError> {
        Self::decode_with_max_depth(input, MAX_DEPTH)
    }

    /// [`Wire::decode`] with another nesting limit (the top value is at depth 0), for
    /// messages that put more levels above their event data than the classic ones do.
    pub(crate) fn decode_with_max_depth(
        input: &[u8],
        max_depth: usize,
    ) -> Result<Wire, DecodeError> {
        if input.contains(&RESERVED_MARKER) {
            refuse_reserved_marker(input, max_depth)?;
        }
        let mut rest = input;
        let value = rmpv::decode::read_value_ref_with_max_depth(&mut rest, rmpv_depth(max_depth))
            .map_err(DecodeError::from_rmpv)?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes(rest.len()));
        }
        from_value_ref(value, 0, max_depth)
    }
}

/// Serializes `value` with `rmp-serde`, structs as maps with their field names (the form of
/// every message of the protocol).
pub(crate) fn to_msgpack<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let mut serializer = rmp_serde::Serializer::new(&mut out).with_struct_map();
    // Writing to a `Vec` fails only for a sequence of unknown length, which no value here has.
    if let Err(e) = value.serialize(&mut serializer) {
        tracing::error!(error = %e, "msgpack encoding failed");
        out.clear();
    }
    out
}

impl Serialize for Wire {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Wire::Nil => serializer.serialize_unit(),
            Wire::Bool(b) => serializer.serialize_bool(*b),
            Wire::Int(i) => serializer.serialize_i64(*i),
            Wire::UInt(u) => serializer.serialize_u64(*u),
            Wire::F64(f) => serializer.serialize_f64(*f),
            Wire::Str(s) => serializer.serialize_str(s),
            Wire::Bin(b) => serializer.serialize_bytes(b),
            Wire::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Wire::Map(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            Wire::Ext(kind, data) => serializer
                .serialize_newtype_struct(rmp_serde::MSGPACK_EXT_STRUCT_NAME, &Ext(*kind, data)),
        }
    }
}

/// An extension value in the form `rmp-serde` writes as msgpack `ext`: the type, then bytes.
struct Ext<'a>(i8, &'a [u8]);

impl Serialize for Ext<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(2)?;
        tuple.serialize_element(&self.0)?;
        tuple.serialize_element(&BinRef(self.1))?;
        tuple.end()
    }
}

struct BinRef<'a>(&'a [u8]);

impl Serialize for BinRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// The marker byte msgpack leaves unused; `rmpv` reads it as `nil`, this codec refuses it.
const RESERVED_MARKER: u8 = 0xc1;

/// `rmpv` counts each level of nesting twice, and a string or binary up to three times: a
/// budget that lets every value within `max_depth` through (the exact limit is checked while
/// converting) and still bounds its recursion.
const fn rmpv_depth(max_depth: usize) -> usize {
    2 * max_depth + 8
}

/// Walks `input` with `rmp-serde` (allocating nothing) only to find a reserved marker byte,
/// which `rmpv` would silently read as `nil`. Run only when the byte occurs at all.
fn refuse_reserved_marker(input: &[u8], max_depth: usize) -> Result<(), DecodeError> {
    use rmp_serde::decode::Error;
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(input);
    deserializer.set_max_depth(max_depth + 2);
    match <serde::de::IgnoredAny as serde::Deserialize>::deserialize(&mut deserializer) {
        Err(Error::TypeMismatch(rmp::Marker::Reserved)) => {
            Err(DecodeError::InvalidMarker(RESERVED_MARKER))
        }
        Err(Error::DepthLimitExceeded) => Err(DecodeError::TooDeep),
        // Other faults are reported by the decoding proper.
        _ => Ok(()),
    }
}

/// Converts what `rmpv` read, refusing a value deeper than `max_depth` (the top one is at
/// depth 0) and strings that are not UTF-8.
fn from_value_ref(
    value: rmpv::ValueRef<'_>,
    depth: usize,
    max_depth: usize,
) -> Result<Wire, DecodeError> {
    use rmpv::ValueRef;
    if depth > max_depth {
        return Err(DecodeError::TooDeep);
    }
    Ok(match value {
        ValueRef::Nil => Wire::Nil,
        ValueRef::Boolean(b) => Wire::Bool(b),
        ValueRef::Integer(i) => match (i.as_i64(), i.as_u64()) {
            (Some(i), _) => Wire::Int(i),
            (None, Some(u)) => Wire::UInt(u),
            (None, None) => return Err(DecodeError::Truncated),
        },
        ValueRef::F32(f) => Wire::F64(f64::from(f)),
        ValueRef::F64(f) => Wire::F64(f),
        ValueRef::String(s) => Wire::Str(s.into_str().ok_or(DecodeError::InvalidUtf8)?.to_owned()),
        ValueRef::Binary(b) => Wire::Bin(Bytes::copy_from_slice(b)),
        ValueRef::Array(items) => Wire::Array(
            items
                .into_iter()
                .map(|item| from_value_ref(item, depth + 1, max_depth))
                .collect::<Result<_, _>>()?,
        ),
        ValueRef::Map(entries) => Wire::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    Ok((
                        from_value_ref(k, depth + 1, max_depth)?,
                        from_value_ref(v, depth + 1, max_depth)?,
                    ))
                })
                .collect::<Result<_, DecodeError>>()?,
        ),
        ValueRef::Ext(kind, data) => Wire::Ext(kind, Bytes::copy_from_slice(data)),
    })
}

/// Why a msgpack payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside a value.
    #[error("msgpack input truncated")]
    Truncated,
    /// The marker byte 0xc1 is never valid.
    #[error("invalid msgpack marker 0x{0:02x}")]
    InvalidMarker(u8),
    /// A string was not UTF-8.
    #[error("msgpack string is not UTF-8")]
    InvalidUtf8,
    /// Nesting deeper than the decoder's limit ([`MAX_DEPTH`] for the classic wire).
    #[error("msgpack nested too deeply")]
    TooDeep,
    /// Bytes were left after the value.
    #[error("{0} trailing bytes after the msgpack value")]
    TrailingBytes(usize),
}

impl DecodeError {
    fn from_rmpv(error: rmpv::decode::Error) -> Self {
        match error {
            rmpv::decode::Error::DepthLimitExceeded => DecodeError::TooDeep,
            // Every read fault from a slice is the input ending early.
            rmpv::decode::Error::InvalidMarkerRead(_) | rmpv::decode::Error::InvalidDataRead(_) => {
                DecodeError::Truncated
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_use_the_smallest_encoding() {
        let cases: [(i64, &[u8]); 8] = [
            (0, &[0x00]),
            (127, &[0x7f]),
            (128, &[0xcc, 0x80]),
            (1000, &[0xcd, 0x03, 0xe8]),
            (70000, &[0xce, 0x00, 0x01, 0x11, 0x70]),
            (-1, &[0xff]),
            (-33, &[0xd0, 0xdf]),
            (-200, &[0xd1, 0xff, 0x38]),
        ];
        for (value, bytes) in cases {
            assert_eq!(Wire::Int(value).encode(), bytes, "{value}");
            assert_eq!(Wire::decode(bytes), Ok(Wire::Int(value)));
        }
    }

    #[test]
    fn round_trips_nested_values() {
        let value = Wire::map([
            (
                "a",
                Wire::Array(vec![Wire::Nil, Wire::Bool(true), Wire::F64(1.5)]),
            ),
            ("b", Wire::Bin(Bytes::from_static(&[1, 2, 3]))),
            ("c", Wire::Str("x".repeat(300))),
            ("d", Wire::Ext(-1, Bytes::from_static(&[0, 0, 0, 1]))),
            ("e", Wire::UInt(u64::MAX)),
        ]);
        assert_eq!(Wire::decode(&value.encode()), Ok(value));
    }

    #[test]
    fn hostile_lengths_and_depth_are_errors() {
        assert_eq!(
            Wire::decode(&[0xdd, 0xff, 0xff, 0xff, 0xff]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(Wire::decode(&[0x91; 200]), Err(DecodeError::TooDeep));
        assert_eq!(Wire::decode(&[0xc1]), Err(DecodeError::InvalidMarker(0xc1)));
        assert_eq!(
            Wire::decode(&[0xa2, 0xff, 0xfe]),
            Err(DecodeError::InvalidUtf8)
        );
        assert_eq!(
            Wire::decode(&[0x01, 0x02]),
            Err(DecodeError::TrailingBytes(1))
        );
    }

    #[test]
    fn hostile_string_and_binary_lengths_are_errors() {
        for header in [
            &[0xdb, 0xff, 0xff, 0xff, 0xff][..],
            &[0xc6, 0xff, 0xff, 0xff, 0xff],
            &[0xc9, 0xff, 0xff, 0xff, 0xff, 0x01],
            &[0xdf, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert_eq!(
                Wire::decode(header),
                Err(DecodeError::Truncated),
                "{header:x?}"
            );
        }
    }

    #[test]
    fn the_reserved_marker_is_refused_wherever_it_sits_but_not_inside_data() {
        assert_eq!(
            Wire::decode(&[0x92, 0x01, 0xc1]),
            Err(DecodeError::InvalidMarker(0xc1))
        );
        assert_eq!(
            Wire::decode(&[0x81, 0xc1, 0x01]),
            Err(DecodeError::InvalidMarker(0xc1))
        );
        assert_eq!(
            Wire::decode(&[0x92, 0xc4, 0x01, 0xc1, 0xcc, 0xc1]),
            Ok(Wire::Array(vec![
                Wire::Bin(Bytes::from_static(&[0xc1])),
                Wire::Int(0xc1)
            ]))
        );
    }

    fn any_wire() -> impl proptest::strategy::Strategy<Value = Wire> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            4 => crate::test_support::any_scalar(),
            1 => any::<f64>()
                .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
                .prop_map(Wire::F64),
            1 => ".{0,40}".prop_map(Wire::Str),
            1 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| Wire::Bin(b.into())),
            1 => (any::<i8>(), proptest::collection::vec(any::<u8>(), 0..20))
                .prop_map(|(k, b)| Wire::Ext(k, b.into())),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Wire::Array),
                proptest::collection::vec((inner.clone(), inner), 0..8).prop_map(Wire::Map),
            ]
        })
    }

    proptest::proptest! {
        /// Whatever bytes the values hold (0xc1 included, inside numbers and binaries), what
        /// is encoded decodes back unchanged.
        #[test]
        fn every_value_round_trips(value in any_wire()) {
            proptest::prop_assert_eq!(Wire::decode(&value.encode()), Ok(value));
        }
    }

    /// `[[...[leaf]...]]` with `leaf` at `depth` (the top value is at depth 0).
    fn nested(depth: usize, leaf: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0x91; depth];
        bytes.extend_from_slice(leaf);
        bytes
    }

    #[test]
    fn the_depth_limit_is_exact_for_every_kind_of_value() {
        for leaf in [
            &[0x01][..],
            &[0xa1, b'x'],
            &[0xc4, 0x01, 0x00],
            &[0xd4, 0x00, 0x00],
        ] {
            assert!(Wire::decode(&nested(MAX_DEPTH, leaf)).is_ok(), "{leaf:x?}");
            assert_eq!(
                Wire::decode(&nested(MAX_DEPTH + 1, leaf)),
                Err(DecodeError::TooDeep),
                "{leaf:x?}"
            );
        }
    }
}
