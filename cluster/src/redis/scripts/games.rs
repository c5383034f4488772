//! The script counting a game's actions.

use super::{Lazy, Script};

/// KEYS: a game's sequence counter. ARGV: TTL (ms). The next number, with the TTL restarted.
pub(crate) static NEXT_GAME_SEQ: Lazy = Lazy::new(|| {
    Script::new(
        r#"
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return n
"#,
    )
});
