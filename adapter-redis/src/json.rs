//! JSON <-> [`Wire`] conversion, keeping map key order, with socket.io binary placeholders.
//!
//! socketioxide's common parser keeps event data as JSON text plus a list of binary
//! attachments referenced by `{"_placeholder":true,"num":N}`; the Node adapter sends the same
//! data as msgpack with the binaries inline. These two functions move between the forms.

use std::fmt::Write as _;

use bytes::Bytes;
use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::msgpack::{MAX_DEPTH, MAX_EVENT_DATA_DEPTH, Wire};

/// Parses JSON text into a [`Wire`] value, replacing `{"_placeholder":true,"num":N}` objects
/// with the matching entry of `bins` (or `nil` if there is none). Refuses what the msgpack
/// decoder refuses: a value nested deeper than [`MAX_DEPTH`].
pub fn from_json(text: &str, bins: &[Bytes]) -> Result<Wire, serde_json::Error> {
    parse(text, bins, MAX_DEPTH)
}

/// [`from_json`] for the data of an event (`["name", args...]`), which travels inside a
/// broadcast or request message: refuses data nested deeper than
/// [`MAX_EVENT_DATA_DEPTH`], so whatever is published, every peer can decode.
pub fn from_event_json(text: &str, bins: &[Bytes]) -> Result<Wire, serde_json::Error> {
    parse(text, bins, MAX_EVENT_DATA_DEPTH)
}

/// [`from_json`] with another nesting limit (the top value is at depth 0) and no binary
/// attachments, for messages that put more levels above their event data than the classic
/// ones do.
pub(crate) fn from_json_with_max_depth(
    text: &str,
    max_depth: usize,
) -> Result<Wire, serde_json::Error> {
    parse(text, &[], max_depth)
}

fn parse(text: &str, bins: &[Bytes], limit: usize) -> Result<Wire, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = JsonSeed {
        bins,
        depth: 0,
        limit,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Writes a [`Wire`] value as JSON text. Binary values become placeholders and are appended to
/// `bins`. Non-finite floats become `null`, as `JSON.stringify` does.
pub fn to_json(value: &Wire, bins: &mut Vec<Bytes>) -> String {
    let mut out = String::with_capacity(64);
    write_json(value, bins, &mut out);
    out
}

fn write_json(value: &Wire, bins: &mut Vec<Bytes>, out: &mut String) {
    match value {
        Wire::Nil => out.push_str("null"),
        Wire::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Wire::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Wire::UInt(u) => {
            let _ = write!(out, "{u}");
        }
        Wire::F64(f) => match serde_json::Number::from_f64(*f) {
            Some(n) => {
                let _ = write!(out, "{n}");
            }
            None => out.push_str("null"),
        },
        Wire::Str(s) => write_str(s, out),
        Wire::Bin(b) => {
            let _ = write!(out, "{{\"_placeholder\":true,\"num\":{}}}", bins.len());
            bins.push(b.clone());
        }
        Wire::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, bins, out);
            }
            out.push(']');
        }
        Wire::Map(entries) => {
            out.push('{');
            let mut first = true;
            for (k, v) in entries {
                let Some(key) = key_string(k) else { continue };
                if !first {
                    out.push(',');
                }
                first = false;
                write_str(&key, out);
                out.push(':');
                write_json(v, bins, out);
            }
            out.push('}');
        }
        Wire::Ext(kind, data) => match (*kind, data.len()) {
            // notepack: fixext1 type 0 is `undefined`, other type-0 exts are ArrayBuffers.
            (0, 1) => out.push_str("null"),
            (0, _) => write_json(&Wire::Bin(data.clone()), bins, out),
            (-1, _) => match timestamp_iso(data) {
                Some(iso) => write_str(&iso, out),
                None => out.push_str("null"),
            },
            _ => write_json(
                &Wire::Array(vec![Wire::Int(i64::from(*kind)), Wire::Bin(data.clone())]),
                bins,
                out,
            ),
        },
    }
}

fn key_string(key: &Wire) -> Option<String> {
    match key {
        Wire::Str(s) => Some(s.clone()),
        Wire::Int(i) => Some(i.to_string()),
        Wire::UInt(u) => Some(u.to_string()),
        Wire::Bool(b) => Some(b.to_string()),
        Wire::F64(f) => Some(js_number(*f)),
        _ => None,
    }
}

/// Formats a number as JavaScript's `String(n)` does for the common cases.
pub fn js_number(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

fn write_str(s: &str, out: &mut String) {
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

/// A msgpack timestamp (ext -1) as an ISO-8601 string, as `Date#toJSON` prints it.
fn timestamp_iso(data: &[u8]) -> Option<String> {
    let (secs, nanos): (i64, u32) = match data.len() {
        4 => (i64::from(u32::from_be_bytes(data.try_into().ok()?)), 0),
        8 => {
            let v = u64::from_be_bytes(data.try_into().ok()?);
            ((v & 0x3_ffff_ffff) as i64, (v >> 34) as u32)
        }
        12 => (
            i64::from_be_bytes(data[4..12].try_into().ok()?),
            u32::from_be_bytes(data[0..4].try_into().ok()?),
        ),
        _ => return None,
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        nanos / 1_000_000
    ))
}

struct JsonSeed<'b> {
    bins: &'b [Bytes],
    depth: usize,
    /// Deepest level a value may sit at (the top value is at 0), as in the msgpack decoder.
    limit: usize,
}

impl JsonSeed<'_> {
    fn child(&self) -> Self {
        JsonSeed {
            bins: self.bins,
            depth: self.depth + 1,
            limit: self.limit,
        }
    }
}

impl<'de> DeserializeSeed<'de> for JsonSeed<'_> {
    type Value = Wire;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Wire, D::Error> {
        if self.depth > self.limit {
            return Err(de::Error::custom("JSON nested too deeply"));
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for JsonSeed<'_> {
    type Value = Wire;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Wire, E> {
        Ok(Wire::Nil)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Wire, E> {
        Ok(Wire::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Wire, E> {
        Ok(Wire::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Wire, E> {
        Ok(i64::try_from(v).map_or(Wire::UInt(v), Wire::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Wire, E> {
        Ok(Wire::F64(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Wire, E> {
        Ok(Wire::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Wire, E> {
        Ok(Wire::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Wire, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.child())? {
            items.push(item);
        }
        Ok(Wire::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Wire, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self.child())?;
            entries.push((Wire::Str(key), value));
        }
        let map = Wire::Map(entries);
        if let Some(bin) = placeholder(&map, self.bins) {
            return Ok(bin);
        }
        Ok(map)
    }
}

fn placeholder(map: &Wire, bins: &[Bytes]) -> Option<Wire> {
    let num = placeholder_index(map)?;
    Some(bins.get(num).cloned().map_or(Wire::Nil, Wire::Bin))
}

/// The attachment index of socket.io's binary placeholder `{"_placeholder":true,"num":N}`:
/// the one shape this adapter reads as a binary attachment (or `nil` when there is no such
/// attachment), so event data holding it as a plain object cannot cross the cluster unchanged.
pub fn placeholder_index(map: &Wire) -> Option<usize> {
    let Wire::Map(entries) = map else { return None };
    if entries.len() != 2 || map.get("_placeholder") != Some(&Wire::Bool(true)) {
        return None;
    }
    usize::try_from(map.get("num")?.as_i64()?).ok()
}

/// Whether a JSON object is a binary placeholder (see [`placeholder_index`]): a server must
/// refuse such objects in client data it forwards, since other nodes would read them as binary.
pub fn is_placeholder_object(map: &serde_json::Map<String, serde_json::Value>) -> bool {
    if map.len() != 2 || !map.contains_key("_placeholder") {
        return false;
    }
    let entries: Option<Vec<(Wire, Wire)>> = map
        .iter()
        .map(|(k, v)| {
            // Only scalars can make a placeholder; anything else is not one.
            let value = match v {
                serde_json::Value::Array(_) | serde_json::Value::Object(_) => return None,
                scalar => Wire::deserialize(scalar).ok()?,
            };
            Some((Wire::Str(k.clone()), value))
        })
        .collect();
    entries.is_some_and(|e| placeholder_index(&Wire::Map(e)).is_some())
}

impl<'de> Deserialize<'de> for Wire {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Wire, D::Error> {
        JsonSeed {
            bins: &[],
            depth: 0,
            limit: MAX_DEPTH,
        }
        .deserialize(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_key_order_and_swaps_binaries() {
        let bins = [Bytes::from_static(&[1, 2, 3])];
        let wire = from_json(
            r#"["ev",{"z":1,"a":[true,null,1.5]},{"_placeholder":true,"num":0}]"#,
            &bins,
        )
        .unwrap();
        assert_eq!(
            wire,
            Wire::Array(vec![
                Wire::Str("ev".into()),
                Wire::map([
                    ("z", Wire::Int(1)),
                    (
                        "a",
                        Wire::Array(vec![Wire::Bool(true), Wire::Nil, Wire::F64(1.5)])
                    )
                ]),
                Wire::Bin(bins[0].clone()),
            ])
        );
        let mut out = Vec::new();
        assert_eq!(
            to_json(&wire, &mut out),
            r#"["ev",{"z":1,"a":[true,null,1.5]},{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(out, bins);
    }

    #[test]
    fn placeholder_objects_are_recognised_as_the_decoder_reads_them() {
        let json = |t: &str| -> serde_json::Map<String, serde_json::Value> {
            serde_json::from_str(t).unwrap()
        };
        for yes in [
            r#"{"_placeholder":true,"num":0}"#,
            r#"{"num":3,"_placeholder":true}"#,
            r#"{"_placeholder":true,"num":1.0}"#,
        ] {
            assert!(is_placeholder_object(&json(yes)), "{yes}");
            // And the adapter indeed turns it into something else.
            assert_eq!(from_json(yes, &[]).unwrap(), Wire::Nil, "{yes}");
        }
        for no in [
            r#"{"_placeholder":false,"num":0}"#,
            r#"{"_placeholder":true,"num":-1}"#,
            r#"{"_placeholder":true,"num":"0"}"#,
            r#"{"_placeholder":true,"num":0,"x":1}"#,
            r#"{"_placeholder":true,"n":0}"#,
            r#"{"_placeholder":{"a":1},"num":0}"#,
        ] {
            assert!(!is_placeholder_object(&json(no)), "{no}");
            assert!(matches!(from_json(no, &[]).unwrap(), Wire::Map(_)), "{no}");
        }
    }

    #[test]
    fn dates_print_as_iso_strings() {
        // 2026-11-25T18:09:53.995Z as a 96-bit timestamp.
        let secs: i64 = 1_795_630_193;
        let mut data = 995_000_000u32.to_be_bytes().to_vec();
        data.extend_from_slice(&secs.to_be_bytes());
        assert_eq!(
            timestamp_iso(&data).as_deref(),
            Some("2026-11-25T18:09:53.995Z")
        );
    }
}
