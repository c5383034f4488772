//! The script appending to a history stream.

use super::{Lazy, Script};

/// KEYS: history stream, the room record for a room's scope (the stream again for any other).
/// ARGV: message JSON, capacity, TTL (ms), `1` when KEYS[2] must exist. Appends unless the scope
/// is a room that does not exist (so a deleted room's history is never started again by a late
/// message), trims to the capacity, and (re)starts the stream's TTL. Returns 1 when appended.
pub(crate) static APPEND_HISTORY: Lazy = Lazy::new(|| {
    Script::new(
        r#"
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('XADD', KEYS[1], 'MAXLEN', '=', ARGV[2], '*', 'm', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"#,
    )
});
