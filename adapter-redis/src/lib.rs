//! A socketioxide adapter over `fred`, wire-compatible with Node's `@socket.io/redis-adapter` 8.x.
//!
//! Being written under issue 3; see the issue for the scope.
