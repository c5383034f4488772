//! Socket ids of other nodes that socketioxide's 16-character `Sid` cannot hold.
//!
//! Node.js socket ids are 20 characters. `fetch_sockets` must still hand out a `Sid` for
//! them, so the adapter derives a stable 16-character `Sid` from the foreign id and remembers
//! the original (bounded, oldest forgotten first). When a `RemoteSocket` operation later names
//! that `Sid`, the original id goes on the wire.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::str::FromStr;
use std::sync::Mutex;

use socketioxide_core::Sid;

use crate::locks::lock;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

#[derive(Debug)]
pub(crate) struct ForeignIds {
    capacity: usize,
    inner: Mutex<(HashMap<Sid, String>, VecDeque<Sid>)>,
}

impl ForeignIds {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// The `Sid` standing for `id`; ids that already are valid `Sid`s map to themselves.
    pub(crate) fn sid_for(&self, id: &str) -> Sid {
        if let Ok(sid) = Sid::from_str(id) {
            return sid;
        }
        let sid = derived_sid(id);
        let mut guard = lock(&self.inner);
        let (map, order) = &mut *guard;
        if map.insert(sid, id.to_owned()).is_none() {
            order.push_back(sid);
            while order.len() > self.capacity {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
        }
        sid
    }

    /// The id to put on the wire for `sid`: the remembered foreign id, or the sid itself.
    pub(crate) fn wire_id(&self, sid: Sid) -> String {
        lock(&self.inner)
            .0
            .get(&sid)
            .cloned()
            .unwrap_or_else(|| sid.as_str().to_owned())
    }
}

fn derived_sid(id: &str) -> Sid {
    let mut chars = [0u8; 16];
    for (half, chunk) in chars.chunks_mut(8).enumerate() {
        let mut hasher = DefaultHasher::new();
        (half, id).hash(&mut hasher);
        let mut bits = hasher.finish();
        for c in chunk {
            *c = ALPHABET[(bits & 63) as usize];
            bits >>= 6;
        }
    }
    let text: String = chars.iter().map(|&b| char::from(b)).collect();
    Sid::from_str(&text).unwrap_or(Sid::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_round_trip_and_are_bounded() {
        let ids = ForeignIds::new(2);
        let a = ids.sid_for("YNritdhB3HEJDAGPAAAB");
        assert_eq!(a, ids.sid_for("YNritdhB3HEJDAGPAAAB"));
        assert_eq!(ids.wire_id(a), "YNritdhB3HEJDAGPAAAB");
        let own = Sid::new();
        assert_eq!(ids.sid_for(own.as_str()), own);
        ids.sid_for("AAAAAAAAAAAAAAAAAAAB");
        ids.sid_for("AAAAAAAAAAAAAAAAAAAC");
        assert_eq!(ids.wire_id(a), a.as_str(), "oldest forgotten");
    }
}
