//! Where verifications live: a `Storage` over a Postgres or a SQLite database.
//!
//! One module per table holds that table's statements for both dialects, sharing the text where
//! the dialects agree: `verifications` (one row per phone number: its current verification and the
//! times of its recent sends), `counters` (sends per client IP and per country) and `fraud` (the
//! fraud guard's counts and blocks per prefix and country) and `events` (the outbox of outgoing
//! events, written by the statements above when events are on). `db` binds
//! parameters and reads columns the way each dialect stores them. Every limit is a condition of the
//! one statement that changes a row, so concurrent requests and several instances sharing a
//! database serialize on that row and cannot get past a limit together.

mod counters;
mod db;
mod error;
mod events;
mod fraud;
mod gate;
mod messages;
mod outcomes;
mod pg_conns;
mod records;
mod settings;
mod tx;
mod verifications;

use std::time::Duration;

use time::OffsetDateTime;

use gate::Gate;

pub use error::StorageError;
pub use events::{
    FRAUD_BLOCKED, MAX_ATTEMPTS_REACHED, MESSAGE_STATUS, StoredBlock, StoredEvent,
    VERIFICATION_APPROVED,
};
pub use fraud::{FraudBlock, FraudCheck, FraudCounted, FraudScope, RING_SLOTS};
pub use messages::{FailoverAttempt, FallbackSource, NewMessage, StatusChange};
pub use outcomes::{
    AttemptOutcome, AttemptResult, CapScope, CheckOutcome, CodeCheck, CounterCap, FraudKeys,
    NewSend, Reservation, SendKind, SendOutcome, window_start,
};
pub use records::{MessageRecord, StatsRow, VerificationRecord, VerificationStatus};
pub use settings::DatabaseSettings;

/// The database and the gate in front of it; cheap to clone (both are shared handles). Its
/// request methods are next to their statements (`verifications`); each passes the gate first.
/// Purges and readiness pings do not.
#[derive(Debug, Clone)]
pub struct Storage {
    db: db::Db,
    gate: Gate,
    /// Write an event with each change that one reports (`EVENTS_WEBHOOK_URL` is set).
    events: bool,
}

/// SQLite writes one transaction at a time: requests beyond the writer and the next in line would
/// only poll its lock (busy timeout), each holding a connection with its own page and statement
/// caches. Measured at 256 users: 2 turns gave more flows/s than 10, at 4 MiB less RSS.
const SQLITE_TURNS: u32 = 2;

/// Connects to the database named by the URL, creating what is needed, and applies migrations.
pub async fn connect(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<Storage, StorageError> {
    let db = db::Db::connect(url, max_connections, acquire_timeout).await?;
    let turns = match db {
        db::Db::Postgres(_) => max_connections,
        db::Db::Sqlite(_) => max_connections.min(SQLITE_TURNS),
    };
    Ok(Storage {
        db,
        gate: Gate::new(turns, acquire_timeout),
        events: false,
    })
}

impl Storage {
    /// Name of the backend, for logs.
    pub fn backend(&self) -> &'static str {
        self.db.backend()
    }

    /// The same storage, writing events with the changes they report (or not).
    pub fn with_events(mut self, on: bool) -> Self {
        self.events = on;
        self
    }

    /// Deletes verifications untouched since `before`, the counter windows before its window, and
    /// the fraud guard's scopes untouched since `fraud_before` and not blocked. Returns how many
    /// verifications went.
    pub async fn purge(
        &self,
        before: OffsetDateTime,
        fraud_before: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<u64, StorageError> {
        let purged = verifications::purge(&self.db, before).await?;
        records::purge(&self.db, before).await?;
        messages::purge(&self.db, before).await?;
        counters::purge(&self.db, window_start(before)).await?;
        fraud::purge(&self.db, fraud_before, now).await?;
        Ok(purged)
    }

    /// Answers when the database does.
    pub async fn ping(&self) -> Result<(), StorageError> {
        self.db.ping().await
    }
}
