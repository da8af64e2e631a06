//! Postgres connections held outside sqlx's pool, so that a statement is one round trip.
//!
//! sqlx's pool pings every connection it takes back (`return_to_pool` in sqlx-core), which doubles
//! the exchanges and the server's wake-ups per statement, and it cannot be turned off. Here a
//! connection goes back to the idle list only when its statement finished with an answer from the
//! server; one that failed on the wire, or whose request was dropped halfway (a cancelled future
//! may leave half a message in its buffers), is closed instead, and the next request opens a new
//! one. The semaphore bounds the connections to `DATABASE_MAX_CONNECTIONS`.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::postgres::{PgArguments, PgQueryResult, PgRow, Postgres};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::query::Query;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::StorageError;
use super::error::is_unavailable;

/// A connection older than this is closed when it comes back, as sqlx's pool does by default: a
/// long-lived server process keeps growing its caches.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// An idle connection older than this is closed instead of used: a firewall or the server may have
/// dropped it silently, and a fresh one costs less than a failed request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// The connections; cheap to clone (one shared handle).
#[derive(Debug, Clone)]
pub(super) struct PgConns {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: PgConnectOptions,
    /// Most recently used last: requests take the warmest connection.
    idle: Mutex<Vec<Idle>>,
    turns: Arc<Semaphore>,
    acquire_timeout: Duration,
}

#[derive(Debug)]
struct Idle {
    conn: PgConnection,
    opened: Instant,
    used: Instant,
}

impl PgConns {
    /// Opens one connection (so a wrong URL or a server that is down fails the start) and keeps it.
    pub(super) async fn connect(
        options: PgConnectOptions,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, StorageError> {
        let conns = Self {
            inner: Arc::new(Inner {
                options,
                idle: Mutex::new(Vec::new()),
                turns: Arc::new(Semaphore::new(max_connections.max(1) as usize)),
                acquire_timeout,
            }),
        };
        let first = conns.acquire().await?;
        first.give_back();
        Ok(conns)
    }

    /// A connection for one statement or one transaction: an idle one, or a new one; waits for a
    /// free turn for at most the acquire timeout.
    pub(super) async fn acquire(&self) -> Result<PgLease, StorageError> {
        let deadline = Instant::now() + self.inner.acquire_timeout;
        let timed_out = || StorageError::Unavailable(sqlx::Error::PoolTimedOut);
        let turn = tokio::time::timeout_at(deadline, self.inner.turns.clone().acquire_owned())
            .await
            .map_err(|_| timed_out())?
            // The semaphore is never closed.
            .map_err(|_| timed_out())?;
        let now = Instant::now();
        let idle = loop {
            let next = self
                .inner
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop();
            match next {
                Some(c) if now.duration_since(c.used) > IDLE_TIMEOUT => close_later(c.conn),
                other => break other,
            }
        };
        let conn = match idle {
            Some(idle) => idle,
            None => {
                let conn = tokio::time::timeout_at(
                    deadline,
                    PgConnection::connect_with(&self.inner.options),
                )
                .await
                .map_err(|_| timed_out())??;
                Idle {
                    conn,
                    opened: now,
                    used: now,
                }
            }
        };
        Ok(PgLease {
            conn: Some(conn),
            inner: self.inner.clone(),
            keep: false,
            _turn: turn,
        })
    }

    /// Runs `begin` on a connection of its own; the transaction ends with `commit`, or, if it is
    /// dropped first, with the connection (the server rolls back a transaction whose client left).
    pub(super) async fn begin(&self) -> Result<PgTx, StorageError> {
        let mut lease = self.acquire().await?;
        let began = sqlx::raw_sql("begin").execute(&mut *lease).await;
        lease.settle(&began);
        began?;
        // Until `commit`, a lease dropped on the way is closed, not reused mid-transaction.
        lease.keep = false;
        Ok(PgTx { lease })
    }
}

/// One statement on a leased connection, each way sqlx can read its answer.
impl PgConns {
    pub(super) async fn fetch_one(
        &self,
        query: Query<'_, Postgres, PgArguments>,
    ) -> Result<PgRow, StorageError> {
        let mut lease = self.acquire().await?;
        let done = query.fetch_one(&mut *lease).await;
        lease.settle(&done);
        Ok(done?)
    }

    pub(super) async fn fetch_optional(
        &self,
        query: Query<'_, Postgres, PgArguments>,
    ) -> Result<Option<PgRow>, StorageError> {
        let mut lease = self.acquire().await?;
        let done = query.fetch_optional(&mut *lease).await;
        lease.settle(&done);
        Ok(done?)
    }

    pub(super) async fn fetch_all(
        &self,
        query: Query<'_, Postgres, PgArguments>,
    ) -> Result<Vec<PgRow>, StorageError> {
        let mut lease = self.acquire().await?;
        let done = query.fetch_all(&mut *lease).await;
        lease.settle(&done);
        Ok(done?)
    }

    pub(super) async fn execute(
        &self,
        query: Query<'_, Postgres, PgArguments>,
    ) -> Result<PgQueryResult, StorageError> {
        let mut lease = self.acquire().await?;
        let done = query.execute(&mut *lease).await;
        lease.settle(&done);
        Ok(done?)
    }
}

/// One connection, for as long as a statement or a transaction needs it. Dropped, it goes back to
/// the idle list if `settle` said its last exchange finished cleanly; otherwise it is closed.
#[derive(Debug)]
pub(super) struct PgLease {
    conn: Option<Idle>,
    inner: Arc<Inner>,
    keep: bool,
    _turn: OwnedSemaphorePermit,
}

impl PgLease {
    /// Records whether the connection can serve the next request after this result: yes after an
    /// answer (rows, or an error the server reported about the statement), no after an error on
    /// the wire or one that says the server is going away.
    pub(super) fn settle<T>(&mut self, result: &Result<T, sqlx::Error>) {
        self.keep = match result {
            Ok(_) => true,
            Err(e @ sqlx::Error::Database(_)) => !is_unavailable(e),
            Err(_) => false,
        };
    }

    /// Returns a connection that finished its work cleanly (no statement result to settle on).
    pub(super) fn give_back(mut self) {
        self.keep = true;
    }
}

impl Deref for PgLease {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        // Only `Drop` takes the connection out.
        &self
            .conn
            .as_ref()
            .expect("a lease holds its connection")
            .conn
    }
}

impl DerefMut for PgLease {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self
            .conn
            .as_mut()
            .expect("a lease holds its connection")
            .conn
    }
}

impl Drop for PgLease {
    fn drop(&mut self) {
        let Some(mut idle) = self.conn.take() else {
            return;
        };
        let now = Instant::now();
        if !self.keep {
            // Dropped, not closed: its state is unknown, so no goodbye is sent on it either.
            return;
        }
        if now.duration_since(idle.opened) > MAX_LIFETIME {
            close_later(idle.conn);
            return;
        }
        idle.used = now;
        // The turn (`_turn`) is given back after this, so the connection is idle before anyone
        // can wait for it.
        self.inner
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(idle);
    }
}

/// Closes a healthy connection politely (a Terminate message) without holding up the caller.
fn close_later(conn: PgConnection) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _ = conn.close().await;
        });
    }
}

/// A transaction on a leased connection.
#[derive(Debug)]
pub(super) struct PgTx {
    lease: PgLease,
}

impl PgTx {
    pub(super) fn conn(&mut self) -> &mut PgConnection {
        &mut self.lease
    }

    pub(super) async fn commit(mut self) -> Result<(), StorageError> {
        let done = sqlx::raw_sql("commit").execute(&mut *self.lease).await;
        self.lease.settle(&done);
        done?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use sqlx::Row as _;

    use super::*;

    /// The server the API tests use; these tests only read, so any database there will do.
    async fn conns(max: u32) -> PgConns {
        conns_waiting(max, Duration::from_secs(5)).await
    }

    async fn conns_waiting(max: u32, acquire_timeout: Duration) -> PgConns {
        let url = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
        let options = PgConnectOptions::from_str(&url).expect("TEST_DATABASE_URL");
        PgConns::connect(options, max, acquire_timeout)
            .await
            .expect("the Postgres the tests use")
    }

    async fn backend_pid(conns: &PgConns) -> Result<i32, StorageError> {
        let row = conns
            .fetch_one(sqlx::query("select pg_backend_pid()"))
            .await?;
        Ok(row.get(0))
    }

    #[tokio::test]
    async fn a_connection_that_answered_serves_the_next_statement() {
        let conns = conns(1).await;
        let first = backend_pid(&conns).await.unwrap();
        assert_eq!(backend_pid(&conns).await.unwrap(), first);

        // An error the server reports about the statement leaves the connection usable.
        let refused = conns.execute(sqlx::query("select 1 / 0")).await;
        assert!(matches!(refused, Err(StorageError::Database(_))));
        assert_eq!(backend_pid(&conns).await.unwrap(), first);
    }

    #[tokio::test]
    async fn a_statement_dropped_halfway_does_not_leave_its_connection_to_the_next() {
        let conns = conns(1).await;
        let first = backend_pid(&conns).await.unwrap();
        let slow = conns.execute(sqlx::query("select pg_sleep(30)"));
        assert!(
            tokio::time::timeout(Duration::from_millis(200), slow)
                .await
                .is_err()
        );
        // A new connection answers at once: the old one would first have to wait out its sleep.
        let next = tokio::time::timeout(Duration::from_secs(5), backend_pid(&conns))
            .await
            .expect("an answer without waiting for the dropped statement")
            .unwrap();
        assert_ne!(next, first);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_fails_once_and_is_replaced() {
        let other = conns(1).await;
        let conns = conns(1).await;
        let doomed = backend_pid(&conns).await.unwrap();
        other
            .execute(sqlx::query("select pg_terminate_backend($1)").bind(doomed))
            .await
            .unwrap();
        let failed = backend_pid(&conns).await;
        assert!(
            matches!(failed, Err(StorageError::Unavailable(_))),
            "{failed:?}"
        );
        let replaced = backend_pid(&conns).await.unwrap();
        assert_ne!(replaced, doomed);
    }

    #[tokio::test]
    async fn a_transaction_dropped_before_commit_is_rolled_back_with_its_connection() {
        let conns = conns(1).await;
        let first = backend_pid(&conns).await.unwrap();
        let mut tx = conns.begin().await.unwrap();
        let in_tx: i32 = sqlx::query("select pg_backend_pid()")
            .fetch_one(tx.conn())
            .await
            .unwrap()
            .get(0);
        assert_eq!(in_tx, first);
        drop(tx);
        let next = backend_pid(&conns).await.unwrap();
        assert_ne!(next, first);
        // A committed transaction leaves its connection to the next request.
        let committed = conns.begin().await.unwrap();
        committed.commit().await.unwrap();
        assert_eq!(backend_pid(&conns).await.unwrap(), next);
    }

    #[tokio::test]
    async fn at_most_max_connections_are_open_and_a_waiter_times_out() {
        let conns = conns_waiting(1, Duration::from_millis(300)).await;
        let held = conns.acquire().await.unwrap();
        let refused = conns.acquire().await;
        assert!(matches!(
            refused,
            Err(StorageError::Unavailable(sqlx::Error::PoolTimedOut))
        ));
        drop(held);
        backend_pid(&conns).await.unwrap();
    }
}
