//! The gateway library: configuration, HTTP routes, Socket.IO namespaces, auth, validation, rate
//! limits, metrics and shutdown. `main.rs` is a thin shell over [`run`].
