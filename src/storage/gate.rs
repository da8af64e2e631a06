//! The request-path gate: at most as many requests at a time use the database as the pool has
//! connections.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard, Semaphore, SemaphorePermit};

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
    /// One turn per stripe of fraud-guard scopes (by the key's hash), taken before `turns`.
    scopes: Arc<ScopeTurns>,
    timeout: Duration,
}

/// Sends that the fraud guard counts take turns on their scope's row; on Postgres those waiting
/// for it wait on an advisory lock, each holding a connection, and each waiting backend added to
/// the Postgres CPU of every flow (64 users on 2 cores: 10 connections 753 flows/s and 1.46 ms of
/// Postgres CPU per flow, 2 connections 1,001 and 0.92 ms). So an instance lets one counted send
/// per country at a time go to the database, and the others wait here, holding nothing.
#[derive(Debug)]
struct ScopeTurns {
    stripes: Vec<Mutex<()>>,
    hasher: RandomState,
}

const SCOPE_STRIPES: usize = 64;

impl Gate {
    pub(super) fn new(size: u32, timeout: Duration) -> Self {
        Self {
            turns: Arc::new(Semaphore::new(size.max(1) as usize)),
            scopes: Arc::new(ScopeTurns {
                stripes: (0..SCOPE_STRIPES).map(|_| Mutex::new(())).collect(),
                hasher: RandomState::new(),
            }),
            timeout,
        }
    }

    /// The turn of a fraud-guard scope (a country code) in this instance; taken before `enter`,
    /// with the same timeout.
    pub(super) async fn enter_scope(&self, key: &str) -> Result<MutexGuard<'_, ()>, StorageError> {
        let stripe = self.scopes.hasher.hash_one(key) as usize % SCOPE_STRIPES;
        tokio::time::timeout(self.timeout, self.scopes.stripes[stripe].lock())
            .await
            .map_err(|_| StorageError::Unavailable(sqlx::Error::PoolTimedOut))
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

    #[tokio::test(start_paused = true)]
    async fn a_scope_takes_one_send_at_a_time_and_a_waiter_times_out() {
        let gate = Gate::new(10, Duration::from_secs(3));
        let held = gate.enter_scope("GB").await.unwrap();
        let refused = gate.enter_scope("GB").await.unwrap_err();
        assert!(matches!(
            refused,
            StorageError::Unavailable(sqlx::Error::PoolTimedOut)
        ));
        // The database turns are not taken by a scope's turn.
        let _turn = gate.enter().await.unwrap();
        drop(held);
        let again = tokio::time::Instant::now();
        let _scope = gate.enter_scope("GB").await.unwrap();
        assert_eq!(again.elapsed(), Duration::ZERO);
    }
}
