//! Socket.IO namespaces: `/`, `/chat`, `/game`, `/admin`.

use std::sync::Arc;

use crate::Io;
use crate::app::App;

/// Why namespaces could not be registered.
#[derive(Debug, thiserror::Error)]
#[error("namespace setup failed: {0}")]
pub struct NamespaceError(pub String);

/// Registers every namespace on `io`.
pub async fn register(_io: &Io, _app: &Arc<App>) -> Result<(), NamespaceError> {
    Ok(())
}
