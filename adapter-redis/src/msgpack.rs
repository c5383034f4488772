//! A small msgpack value model and codec matching notepack.io 3.x, the encoder used by Node's
//! `@socket.io/redis-adapter`.
//!
//! Encoder rules (as notepack): maps keep insertion order with string keys, integers use the
//! smallest msgpack int, every non-integer number is float64, binary is `bin8/16/32`.
//! The decoder accepts every msgpack type, never allocates more than the input can back, and
//! refuses nesting deeper than [`MAX_DEPTH`], so hostile input is an error, never a panic.

use bytes::Bytes;

/// Deepest nesting of arrays and maps the decoder accepts.
pub const MAX_DEPTH: usize = 64;

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
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out);
        out
    }

    /// Appends the msgpack encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Wire::Nil => out.push(0xc0),
            Wire::Bool(false) => out.push(0xc2),
            Wire::Bool(true) => out.push(0xc3),
            Wire::Int(i) => encode_int(*i, out),
            Wire::UInt(u) => {
                out.push(0xcf);
                out.extend_from_slice(&u.to_be_bytes());
            }
            Wire::F64(f) => {
                out.push(0xcb);
                out.extend_from_slice(&f.to_be_bytes());
            }
            Wire::Str(s) => encode_str(s, out),
            Wire::Bin(b) => {
                let len = b.len();
                if len < 0x100 {
                    out.extend_from_slice(&[0xc4, len as u8]);
                } else if len < 0x10000 {
                    out.push(0xc5);
                    out.extend_from_slice(&(len as u16).to_be_bytes());
                } else {
                    out.push(0xc6);
                    out.extend_from_slice(&(len as u32).to_be_bytes());
                }
                out.extend_from_slice(b);
            }
            Wire::Array(items) => {
                let len = items.len();
                if len < 16 {
                    out.push(0x90 | len as u8);
                } else if len < 0x10000 {
                    out.push(0xdc);
                    out.extend_from_slice(&(len as u16).to_be_bytes());
                } else {
                    out.push(0xdd);
                    out.extend_from_slice(&(len as u32).to_be_bytes());
                }
                for item in items {
                    item.encode_into(out);
                }
            }
            Wire::Map(entries) => {
                let len = entries.len();
                if len < 16 {
                    out.push(0x80 | len as u8);
                } else if len < 0x10000 {
                    out.push(0xde);
                    out.extend_from_slice(&(len as u16).to_be_bytes());
                } else {
                    out.push(0xdf);
                    out.extend_from_slice(&(len as u32).to_be_bytes());
                }
                for (k, v) in entries {
                    k.encode_into(out);
                    v.encode_into(out);
                }
            }
            Wire::Ext(kind, data) => {
                let len = data.len();
                match len {
                    1 => out.push(0xd4),
                    2 => out.push(0xd5),
                    4 => out.push(0xd6),
                    8 => out.push(0xd7),
                    16 => out.push(0xd8),
                    _ if len < 0x100 => out.extend_from_slice(&[0xc7, len as u8]),
                    _ if len < 0x10000 => {
                        out.push(0xc8);
                        out.extend_from_slice(&(len as u16).to_be_bytes());
                    }
                    _ => {
                        out.push(0xc9);
                        out.extend_from_slice(&(len as u32).to_be_bytes());
                    }
                }
                out.push(*kind as u8);
                out.extend_from_slice(data);
            }
        }
    }

    /// Decodes exactly one value spanning all of `input`.
    pub fn decode(input: &[u8]) -> Result<Wire, DecodeError> {
        let mut reader = Reader {
            buf: Bytes::copy_from_slice(input),
            pos: 0,
        };
        let value = reader.value(0)?;
        if reader.pos != reader.buf.len() {
            return Err(DecodeError::TrailingBytes(reader.buf.len() - reader.pos));
        }
        Ok(value)
    }
}

fn encode_int(i: i64, out: &mut Vec<u8>) {
    if i >= 0 {
        let u = i as u64;
        if u < 0x80 {
            out.push(u as u8);
        } else if u < 0x100 {
            out.extend_from_slice(&[0xcc, u as u8]);
        } else if u < 0x10000 {
            out.push(0xcd);
            out.extend_from_slice(&(u as u16).to_be_bytes());
        } else if u < 0x1_0000_0000 {
            out.push(0xce);
            out.extend_from_slice(&(u as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&u.to_be_bytes());
        }
    } else if i >= -32 {
        out.push(i as i8 as u8);
    } else if i >= i64::from(i8::MIN) {
        out.extend_from_slice(&[0xd0, i as i8 as u8]);
    } else if i >= i64::from(i16::MIN) {
        out.push(0xd1);
        out.extend_from_slice(&(i as i16).to_be_bytes());
    } else if i >= i64::from(i32::MIN) {
        out.push(0xd2);
        out.extend_from_slice(&(i as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&i.to_be_bytes());
    }
}

fn encode_str(s: &str, out: &mut Vec<u8>) {
    let len = s.len();
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0xd9, len as u8]);
    } else if len < 0x10000 {
        out.push(0xda);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend_from_slice(s.as_bytes());
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
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("msgpack nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    /// Bytes were left after the value.
    #[error("{0} trailing bytes after the msgpack value")]
    TrailingBytes(usize),
}

struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let out = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&bytes);
        Ok(out)
    }

    fn len8(&mut self) -> Result<usize, DecodeError> {
        Ok(usize::from(self.byte()?))
    }
    fn len16(&mut self) -> Result<usize, DecodeError> {
        Ok(usize::from(u16::from_be_bytes(self.be()?)))
    }
    fn len32(&mut self) -> Result<usize, DecodeError> {
        usize::try_from(u32::from_be_bytes(self.be()?)).map_err(|_| DecodeError::Truncated)
    }

    fn str(&mut self, len: usize) -> Result<Wire, DecodeError> {
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec())
            .map(Wire::Str)
            .map_err(|_| DecodeError::InvalidUtf8)
    }

    fn array(&mut self, len: usize, depth: usize) -> Result<Wire, DecodeError> {
        // Every element takes at least one byte: refuse lengths the input cannot back.
        if len > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let mut items = Vec::with_capacity(len);
        for _ in 0..len {
            items.push(self.value(depth + 1)?);
        }
        Ok(Wire::Array(items))
    }

    fn map(&mut self, len: usize, depth: usize) -> Result<Wire, DecodeError> {
        if len.saturating_mul(2) > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let mut entries = Vec::with_capacity(len);
        for _ in 0..len {
            let k = self.value(depth + 1)?;
            let v = self.value(depth + 1)?;
            entries.push((k, v));
        }
        Ok(Wire::Map(entries))
    }

    fn ext(&mut self, len: usize) -> Result<Wire, DecodeError> {
        let kind = self.byte()? as i8;
        Ok(Wire::Ext(kind, self.take(len)?))
    }

    fn value(&mut self, depth: usize) -> Result<Wire, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let marker = self.byte()?;
        Ok(match marker {
            0x00..=0x7f => Wire::Int(i64::from(marker)),
            0x80..=0x8f => return self.map(usize::from(marker & 0x0f), depth),
            0x90..=0x9f => return self.array(usize::from(marker & 0x0f), depth),
            0xa0..=0xbf => return self.str(usize::from(marker & 0x1f)),
            0xc0 => Wire::Nil,
            0xc1 => return Err(DecodeError::InvalidMarker(marker)),
            0xc2 => Wire::Bool(false),
            0xc3 => Wire::Bool(true),
            0xc4 => {
                let n = self.len8()?;
                Wire::Bin(self.take(n)?)
            }
            0xc5 => {
                let n = self.len16()?;
                Wire::Bin(self.take(n)?)
            }
            0xc6 => {
                let n = self.len32()?;
                Wire::Bin(self.take(n)?)
            }
            0xc7 => {
                let n = self.len8()?;
                return self.ext(n);
            }
            0xc8 => {
                let n = self.len16()?;
                return self.ext(n);
            }
            0xc9 => {
                let n = self.len32()?;
                return self.ext(n);
            }
            0xca => Wire::F64(f64::from(f32::from_be_bytes(self.be()?))),
            0xcb => Wire::F64(f64::from_be_bytes(self.be()?)),
            0xcc => Wire::Int(i64::from(self.byte()?)),
            0xcd => Wire::Int(i64::from(u16::from_be_bytes(self.be()?))),
            0xce => Wire::Int(i64::from(u32::from_be_bytes(self.be()?))),
            0xcf => {
                let u = u64::from_be_bytes(self.be()?);
                i64::try_from(u).map_or(Wire::UInt(u), Wire::Int)
            }
            0xd0 => Wire::Int(i64::from(i8::from_be_bytes(self.be()?))),
            0xd1 => Wire::Int(i64::from(i16::from_be_bytes(self.be()?))),
            0xd2 => Wire::Int(i64::from(i32::from_be_bytes(self.be()?))),
            0xd3 => Wire::Int(i64::from_be_bytes(self.be()?)),
            0xd4 => return self.ext(1),
            0xd5 => return self.ext(2),
            0xd6 => return self.ext(4),
            0xd7 => return self.ext(8),
            0xd8 => return self.ext(16),
            0xd9 => {
                let n = self.len8()?;
                return self.str(n);
            }
            0xda => {
                let n = self.len16()?;
                return self.str(n);
            }
            0xdb => {
                let n = self.len32()?;
                return self.str(n);
            }
            0xdc => {
                let n = self.len16()?;
                return self.array(n, depth);
            }
            0xdd => {
                let n = self.len32()?;
                return self.array(n, depth);
            }
            0xde => {
                let n = self.len16()?;
                return self.map(n, depth);
            }
            0xdf => {
                let n = self.len32()?;
                return self.map(n, depth);
            }
            0xe0..=0xff => Wire::Int(i64::from(marker as i8)),
        })
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
}
