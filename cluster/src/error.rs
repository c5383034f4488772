//! The error of every cluster-state operation, shared by all concerns and both backends.

/// What a state backend can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The backend cannot be reached (Redis down, connection lost).
    #[error("cluster state is unavailable: {0}")]
    Unavailable(String),
    /// The call was refused before it was sent: the connection was already known to be down,
    /// so it did not wait on a dead connection for the command timeout.
    #[error("cluster state is unavailable: not connected to Redis ({0})")]
    NotConnected(String),
    /// The backend answered with an error.
    #[error("cluster state backend error: {0}")]
    Backend(String),
    /// A stored record could not be decoded.
    #[error("corrupt cluster state record: {0}")]
    Corrupt(String),
}

/// Result of every state operation.
pub type StateResult<T> = Result<T, StateError>;

impl StateError {
    /// The error of a call refused without being sent: the connection is known to be down.
    pub(crate) fn refused_while_down(detail: impl std::fmt::Display) -> Self {
        Self::NotConnected(detail.to_string())
    }

    /// Whether this call was refused at once because the connection was known to be down, rather
    /// than sent and left waiting on a dead connection until the command timeout.
    pub fn is_refused_while_down(&self) -> bool {
        matches!(self, Self::NotConnected(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_told_from_a_timeout() {
        let refused = StateError::refused_while_down("state: Disconnected");
        assert!(refused.is_refused_while_down());
        assert_eq!(
            refused.to_string(),
            "cluster state is unavailable: not connected to Redis (state: Disconnected)"
        );
        assert!(
            !StateError::Unavailable("Timeout Error: Request timed out.".into())
                .is_refused_while_down()
        );
        assert!(!StateError::Backend("not connected to Redis".into()).is_refused_while_down());
    }
}
