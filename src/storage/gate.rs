//! The request-path gate: at most as many requests at a time use the database as the pool has
//! connections.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

use super::StorageError;

/// Lets as many requests at a time use the database as the pool has connections; the rest wait
/// here, for at most the pool's acquire timeout, and then get the same error as a pool timeout.
///
/// The pool would queue them as well, but each request waiting in sqlx's pool holds a boxed query
/// future of several KB; a request waiting here holds a few bytes. With 256 concurrent users and 10
/// connections that was ~3.5 MB of heap and ~7 MiB of peak RSS (BENCHMARKS.md). A request holding a
/// permit runs its statements one after another, so it never needs a second connection.
#[derive(Debug, Clone)]
pub(super) struct Gate {
    /// Shared by clones of the storage, like the pool itself.
    turns: Arc<Semaphore>,
    timeout: Duration,
}

impl Gate {
    pub(super) fn new(size: u32, timeout: Duration) -> Self {
        Self {
            turns: Arc::new(Semaphore::new(size.max(1) as usize)),
            timeout,
        }
    }

    pub(super) async fn enter(&self) -> Result<SemaphorePermit<'_>, StorageError> {
        match tokio::time::timeout(self.timeout, self.turns.acquire()).await {
            Ok(Ok(turn)) => Ok(turn),
            // The semaphore is never closed; a timeout is the pool's own timeout, one step early.
            Ok(Err(_)) | Err(_) => Err(StorageError::Unavailable(sqlx::Error::PoolTimedOut)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_gate_answers_unavailable_after_the_acquire_timeout() {
        let gate = Gate::new(1, Duration::from_secs(3));
        let held = gate.enter().await.unwrap();
        let waited = tokio::time::Instant::now();
        let refused = gate.enter().await.unwrap_err();
        assert!(matches!(
            refused,
            StorageError::Unavailable(sqlx::Error::PoolTimedOut)
        ));
        assert_eq!(waited.elapsed(), Duration::from_secs(3));

        // A turn given back is taken by the next request at once.
        drop(held);
        let again = tokio::time::Instant::now();
        let _turn = gate.enter().await.unwrap();
        assert_eq!(again.elapsed(), Duration::ZERO);
    }
}
