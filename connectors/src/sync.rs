//! Locking that survives a panic elsewhere.

/// Locks `mutex`, also when a thread panicked while holding it: every
/// critical section in this crate updates memory only after its RocksDB
/// write succeeded, so the guarded state is consistent at any panic point.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
