//! The crate's one policy for a poisoned `std::sync::Mutex`.

use std::sync::Mutex;
pub(crate) use std::sync::MutexGuard;

/// Locks `m`, taking over a lock poisoned by a panic elsewhere. A panic while holding one of this
/// crate's locks cannot leave its maps half-written in a way that matters more than losing the
/// whole node, so the data is used as it is rather than the panic propagated.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
