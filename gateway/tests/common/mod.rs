//! What the tests that run the gateway binary share: the flags of a test node.

/// `--dev` on an ephemeral loopback port (the node prints the port it got).
pub const DEV_ON_LOOPBACK: [&str; 5] = ["--dev", "--port", "0", "--host", "127.0.0.1"];

/// No drain and three seconds of grace: a test node shuts down at once.
pub const QUICK_SHUTDOWN: [&str; 4] = ["--drain-secs", "0", "--grace-secs", "3"];
