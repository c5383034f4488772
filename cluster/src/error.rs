//! The error of every cluster-state operation, shared by all concerns and both backends.

/// What a state backend can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The backend cannot be reached (Redis down, connection lost).
    #[error("cluster state is unavailable: {0}")]
    Unavailable(String),
    /// The backend answered with an error.
    #[error("cluster state backend error: {0}")]
    Backend(String),
    /// A stored record could not be decoded.
    #[error("corrupt cluster state record: {0}")]
    Corrupt(String),
}

/// Result of every state operation.
pub type StateResult<T> = Result<T, StateError>;
