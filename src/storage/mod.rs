//! Where verifications live: one trait, a Postgres and a SQLite implementation.
//!
//! There is one row per phone number. It holds the current verification (code hash, attempts, expiry,
//! status) and the times of the number's sends within the last hour. Every limit is a condition of the
//! one statement that changes the row, so concurrent requests and several instances sharing a database
//! serialize on that row and cannot get past a limit together.

mod postgres;
mod sqlite;

use std::time::Duration;

use futures_util::future::BoxFuture;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::PhoneNumber;

pub use postgres::PostgresStorage;
pub use sqlite::SqliteStorage;

/// Whether a send may start a verification or only renew an existing, unapproved one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendKind {
    Start,
    Resend,
}

/// A send about to be made: reserve it (and the code) before the SMS goes out, release it if the SMS
/// fails.
#[derive(Debug, Clone)]
pub struct NewSend<'a> {
    pub phone: &'a PhoneNumber,
    pub kind: SendKind,
    /// The code's HMAC; `None` when the SMS provider keeps the code (Twilio Verify).
    pub code_hash: Option<Vec<u8>>,
    pub now: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub cooldown: Duration,
    pub max_sends_per_hour: u32,
    /// The id a brand-new verification gets; a pending one keeps its own.
    pub new_verification_id: Uuid,
    /// Identifies this send, so releasing it cannot undo a later one.
    pub send_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub verification_id: Uuid,
    pub send_id: Uuid,
    pub sent_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Reserved(Reservation),
    /// A send within the cooldown.
    TooSoon {
        retry_after: Duration,
    },
    /// `max_sends_per_hour` sends within the last hour.
    HourlyCapReached {
        retry_after: Duration,
    },
    /// A resend with no unapproved verification to renew.
    NotFound,
}

#[derive(Debug, Clone)]
pub struct CodeCheck<'a> {
    pub phone: &'a PhoneNumber,
    pub code_hash: Vec<u8>,
    pub now: OffsetDateTime,
    pub max_attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    Approved {
        verification_id: Uuid,
        verified_at: OffsetDateTime,
    },
    WrongCode {
        attempts_remaining: u32,
    },
    NotFound,
    Expired,
    MaxAttemptsReached,
}

/// A verify against a provider that keeps the code (Twilio Verify): an attempt is taken first, so
/// parallel checks cannot exceed the limit, then given back if the provider could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    Taken {
        verification_id: Uuid,
        attempts_remaining: u32,
    },
    Refused(CheckOutcome),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// The provider approved the code: mark the verification approved (and give the attempt back).
    Approved,
    /// The provider could not answer: the attempt does not count.
    Refund,
    /// The provider locked the verification: no attempts left here either.
    Exhausted,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error("a database operation failed")]
    Database(#[source] sqlx::Error),
    #[error("applying migrations failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("could not prepare the database: {0}")]
    Setup(String),
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            StorageError::Unavailable(e)
        } else {
            StorageError::Database(e)
        }
    }
}

/// Errors that say "the database cannot serve us right now" rather than "this query is wrong": the
/// client gets a 503 with `Retry-After` for these.
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // Postgres: connection exceptions (08…), shutdown and crash (57P0…), out of resources
            // (53…), and the refusals a new connection meets while a server or database is being
            // moved or restarted (28…, 3D000, 55000 "not accepting connections", 25006 on a
            // read-only standby). SQLite: SQLITE_BUSY (5) and SQLITE_LOCKED (6) after the busy
            // timeout.
            code.starts_with("08")
                || code.starts_with("57P0")
                || code.starts_with("53")
                || code.starts_with("28")
                || code == "3D000"
                || code == "55000"
                || code == "25006"
                || code == "5"
                || code == "6"
        }
        _ => false,
    }
}

pub trait Storage: Send + Sync + 'static {
    /// Name of the backend, for logs.
    fn backend(&self) -> &'static str;

    /// Atomically checks the cooldown and the hourly cap and, if both allow it, records the send and
    /// installs the new code (invalidating the previous one, resetting attempts and expiry).
    fn reserve_send<'a>(
        &'a self,
        send: NewSend<'a>,
    ) -> BoxFuture<'a, Result<SendOutcome, StorageError>>;

    /// Undoes a reserved send whose SMS failed: it stops counting towards the limits and its code
    /// becomes unusable.
    fn release_send<'a>(
        &'a self,
        phone: &'a PhoneNumber,
        reservation: &'a Reservation,
    ) -> BoxFuture<'a, Result<(), StorageError>>;

    /// Atomically compares a code with the pending one: approves it (single use) or counts a wrong
    /// attempt, never more than `max_attempts`.
    fn check_code<'a>(
        &'a self,
        check: CodeCheck<'a>,
    ) -> BoxFuture<'a, Result<CheckOutcome, StorageError>>;

    /// Takes one attempt on a provider-kept code, within the same limits as `check_code`.
    fn take_attempt<'a>(
        &'a self,
        phone: &'a PhoneNumber,
        now: OffsetDateTime,
        max_attempts: u32,
    ) -> BoxFuture<'a, Result<AttemptOutcome, StorageError>>;

    /// Records what the provider said about an attempt. For `Approved`, returns false when the
    /// verification was no longer pending (another request approved it first).
    fn finish_attempt<'a>(
        &'a self,
        phone: &'a PhoneNumber,
        verification_id: Uuid,
        result: AttemptResult,
        now: OffsetDateTime,
        max_attempts: u32,
    ) -> BoxFuture<'a, Result<bool, StorageError>>;

    /// Deletes rows untouched since `before`. Returns how many went.
    fn purge<'a>(&'a self, before: OffsetDateTime) -> BoxFuture<'a, Result<u64, StorageError>>;

    /// Answers when the database does.
    fn ping(&self) -> BoxFuture<'_, Result<(), StorageError>>;
}

/// Connects to the database named by the URL, creating what is needed, and applies migrations.
pub async fn connect(
    url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<std::sync::Arc<dyn Storage>, StorageError> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(
            SqliteStorage::connect(url, max_connections, acquire_timeout).await?,
        ))
    } else {
        Ok(std::sync::Arc::new(
            PostgresStorage::connect(url, max_connections, acquire_timeout).await?,
        ))
    }
}

/// What a failed reservation or check read back, to say why it failed.
#[derive(Debug, Clone)]
struct RowState {
    status: String,
    has_code: bool,
    attempts: u32,
    expires_at: OffsetDateTime,
    send_times: Vec<OffsetDateTime>,
}

const HOUR: Duration = Duration::from_secs(3_600);

/// Why a reservation did not go through, judged from the row as it is now. `None` means the row no
/// longer blocks the send (it changed in between): the caller tries again.
fn classify_refused_send(send: &NewSend<'_>, row: Option<&RowState>) -> Option<SendOutcome> {
    if send.kind == SendKind::Resend && row.is_none_or(|r| r.status == "approved") {
        return Some(SendOutcome::NotFound);
    }
    let row = row?;
    let now = send.now;
    if let Some(last) = row.send_times.iter().max()
        && *last > now - send.cooldown
    {
        return Some(SendOutcome::TooSoon {
            retry_after: ceil_secs(*last + send.cooldown - now),
        });
    }
    let mut in_window: Vec<_> = row
        .send_times
        .iter()
        .filter(|t| **t > now - HOUR)
        .copied()
        .collect();
    if in_window.len() >= send.max_sends_per_hour as usize {
        in_window.sort();
        // The cap lifts when enough of the oldest sends leave the window.
        let freeing = in_window[in_window.len() - send.max_sends_per_hour as usize];
        return Some(SendOutcome::HourlyCapReached {
            retry_after: ceil_secs(freeing + HOUR - now),
        });
    }
    None
}

/// Why a check did not go through. `None`: the row changed in between, try again. `local_code`
/// says whether the check expected our own code hash (true) or a provider-kept code (false).
fn classify_refused_check(
    now: OffsetDateTime,
    max_attempts: u32,
    local_code: bool,
    row: Option<&RowState>,
) -> Option<CheckOutcome> {
    let Some(row) = row else {
        return Some(CheckOutcome::NotFound);
    };
    if row.status != "pending" || row.has_code != local_code {
        return Some(CheckOutcome::NotFound);
    }
    if row.expires_at <= now {
        return Some(CheckOutcome::Expired);
    }
    if row.attempts >= max_attempts {
        return Some(CheckOutcome::MaxAttemptsReached);
    }
    None
}

/// Whole seconds, rounded up, at least one: a client that waits `retry_after` must not be refused.
fn ceil_secs(d: time::Duration) -> Duration {
    let ms = d.whole_milliseconds().max(0) as u64;
    Duration::from_secs(ms.div_ceil(1_000).max(1))
}

/// How often a reservation or check whose statement was refused, but whose row no longer explains
/// why, is tried again before giving up.
const RETRIES: usize = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(
            ceil_secs(time::Duration::milliseconds(1)),
            Duration::from_secs(1)
        );
        assert_eq!(
            ceil_secs(time::Duration::milliseconds(27_001)),
            Duration::from_secs(28)
        );
        assert_eq!(
            ceil_secs(time::Duration::seconds(27)),
            Duration::from_secs(27)
        );
        assert_eq!(
            ceil_secs(time::Duration::seconds(-3)),
            Duration::from_secs(1)
        );
    }
}
