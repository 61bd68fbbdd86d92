//! Keyed async locks: serialize check-then-write sequences on one key (an organization, a price
//! book) within this process. The warehouse has no unique constraints, so two requests for the
//! same key must not interleave. Across Cloud Run instances this is best effort.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

type Locks = Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

static LOCKS: LazyLock<Locks> = LazyLock::new(Default::default);

/// Waits for and holds the lock of `key` (e.g. `"org:acme"`) until the guard is dropped.
pub async fn lock(key: &str) -> tokio::sync::OwnedMutexGuard<()> {
    let lock = {
        let mut locks = LOCKS.lock().unwrap_or_else(|p| p.into_inner());
        // Drop locks nobody holds or waits for, so the map stays small.
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(key.to_string()).or_default().clone()
    };
    lock.lock_owned().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn same_key_waits_other_keys_do_not() {
        let held = lock("org:a").await;
        assert!(tokio::time::timeout(std::time::Duration::from_millis(50), lock("org:b")).await.is_ok());
        assert!(tokio::time::timeout(std::time::Duration::from_millis(50), lock("org:a")).await.is_err());
        drop(held);
        assert!(tokio::time::timeout(std::time::Duration::from_millis(50), lock("org:a")).await.is_ok());
    }
}
