//! A lock that outlives a panic.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// `m`'s guard, poisoned or not. Where it is used no code that can panic runs under the
/// lock, so a poisoned lock still guards whole state: refusing it would only turn one
/// panic into many.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
