//! The scripts of the failure counters (`crate::failures`).

use super::{Lazy, Script};

/// KEYS: a failure counter. Returns {failures in the open window, ms left of it} ({0, 0} when
/// no window is open).
pub(crate) static FAILURE_WINDOW: Lazy = Lazy::new(|| {
    Script::new(
        r#"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
local left = redis.call('PTTL', KEYS[1])
if n == 0 or left < 0 then return {0, 0} end
return {n, left}
"#,
    )
});

/// KEYS: a failure counter. ARGV: the window's length (ms). Counts one failure; the first of a
/// window opens it. Returns {failures in the window, ms left of it}.
pub(crate) static RECORD_FAILURE: Lazy = Lazy::new(|| {
    Script::new(
        r#"
local n = redis.call('INCR', KEYS[1])
local left = redis.call('PTTL', KEYS[1])
if n == 1 or left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {n, left}
"#,
    )
});
