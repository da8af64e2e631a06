//! Where verifications live: one trait, a Postgres and a SQLite implementation.
//!
//! There is one row per phone number. It holds the current verification (code hash, attempts, expiry,
//! status) and the times of the number's sends within the last hour. Every limit is a condition of the
//! one statement that changes the row, so concurrent requests and several instances sharing a database
//! serialize on that row and cannot get past a limit together.

/// The `Storage` impl of a backend: boxes the futures of its inherent methods (`reserve`,
/// `release`, `check`, `take`, `finish`, `purge_before`, `ping_db`), which hold the SQL. Request
/// work passes the backend's `gate` first; purges and readiness pings do not.
macro_rules! impl_storage {
    ($ty:ty, $name:literal) => {
        impl $crate::storage::Storage for $ty {
            fn backend(&self) -> &'static str {
                $name
            }

            fn reserve_send<'a>(
                &'a self,
                send: $crate::storage::NewSend<'a>,
            ) -> futures_util::future::BoxFuture<
                'a,
                Result<$crate::storage::SendOutcome, StorageError>,
            > {
                Box::pin(async move {
                    let _turn = self.gate.enter().await?;
                    self.reserve(&send).await
                })
            }

            fn release_send<'a>(
                &'a self,
                phone: &'a PhoneNumber,
                reservation: &'a $crate::storage::Reservation,
            ) -> futures_util::future::BoxFuture<'a, Result<(), StorageError>> {
                Box::pin(async move {
                    let _turn = self.gate.enter().await?;
                    self.release(phone, reservation).await
                })
            }

            fn check_code<'a>(
                &'a self,
                check: $crate::storage::CodeCheck<'a>,
            ) -> futures_util::future::BoxFuture<
                'a,
                Result<$crate::storage::CheckOutcome, StorageError>,
            > {
                Box::pin(async move {
                    let _turn = self.gate.enter().await?;
                    self.check(&check).await
                })
            }

            fn take_attempt<'a>(
                &'a self,
                phone: &'a PhoneNumber,
                now: OffsetDateTime,
                max_attempts: u32,
            ) -> futures_util::future::BoxFuture<
                'a,
                Result<$crate::storage::AttemptOutcome, StorageError>,
            > {
                Box::pin(async move {
                    let _turn = self.gate.enter().await?;
                    self.take(phone, now, max_attempts).await
                })
            }

            fn finish_attempt<'a>(
                &'a self,
                phone: &'a PhoneNumber,
                verification_id: Uuid,
                result: $crate::storage::AttemptResult,
                now: OffsetDateTime,
                max_attempts: u32,
            ) -> futures_util::future::BoxFuture<'a, Result<bool, StorageError>> {
                Box::pin(async move {
                    let _turn = self.gate.enter().await?;
                    self.finish(phone, verification_id, result, now, max_attempts)
                        .await
                })
            }

            fn purge<'a>(
                &'a self,
                before: OffsetDateTime,
            ) -> futures_util::future::BoxFuture<'a, Result<u64, StorageError>> {
                Box::pin(self.purge_before(before))
            }

            fn ping(&self) -> futures_util::future::BoxFuture<'_, Result<(), StorageError>> {
                Box::pin(self.ping_db())
            }
        }
    };
}
use impl_storage;

mod postgres;
mod settings;
mod sqlite;

use std::time::Duration;

use futures_util::future::BoxFuture;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::PhoneNumber;

pub use postgres::PostgresStorage;
pub use settings::DatabaseSettings;
pub use sqlite::SqliteStorage;

/// Lets as many requests at a time use the database as the pool has connections; the rest wait
/// here, for at most the pool's acquire timeout, and then get the same error as a pool timeout.
///
/// The pool would queue them as well, but each request waiting in sqlx's pool holds a boxed query
/// future of several KB; a request waiting here holds a few bytes. With 256 concurrent users and 10
/// connections that was ~3.5 MB of heap and ~7 MiB of peak RSS (BENCHMARKS.md). A request holding a
/// permit runs its statements one after another, so it never needs a second connection.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    /// Shared by clones of the storage, like the pool itself.
    turns: std::sync::Arc<tokio::sync::Semaphore>,
    timeout: Duration,
}

impl Gate {
    pub(crate) fn new(size: u32, timeout: Duration) -> Self {
        Self {
            turns: std::sync::Arc::new(tokio::sync::Semaphore::new(size.max(1) as usize)),
            timeout,
        }
    }

    async fn enter(&self) -> Result<tokio::sync::SemaphorePermit<'_>, StorageError> {
        match tokio::time::timeout(self.timeout, self.turns.acquire()).await {
            Ok(Ok(turn)) => Ok(turn),
            // The semaphore is never closed; a timeout is the pool's own timeout, one step early.
            Ok(Err(_)) | Err(_) => Err(StorageError::Unavailable(sqlx::Error::PoolTimedOut)),
        }
    }
}

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
    /// Sends per client IP per hour, across instances (`None`: not counted).
    pub ip_cap: Option<CounterCap>,
    /// Sends per destination country per hour, across instances (`None`: not counted).
    pub country_cap: Option<CounterCap>,
}

/// Which shared counter a send is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapScope {
    ClientIp,
    Country,
}

impl CapScope {
    pub fn as_str(self) -> &'static str {
        match self {
            CapScope::ClientIp => "ip",
            CapScope::Country => "country",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterCap {
    pub key: String,
    /// At least 1.
    pub max: u32,
}

/// Start of the fixed one-hour window (UTC clock hour) that `now` falls in.
pub fn window_start(now: OffsetDateTime) -> OffsetDateTime {
    now.replace_minute(0)
        .and_then(|t| t.replace_second(0))
        .and_then(|t| t.replace_nanosecond(0))
        .unwrap_or(now)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub verification_id: Uuid,
    pub send_id: Uuid,
    pub sent_at: OffsetDateTime,
    /// The counters this send was counted in (to give back if the SMS fails).
    pub counted: Vec<(CapScope, String)>,
    /// Counters that this send filled up to their cap: it was the last one allowed this window.
    pub filled: Vec<(CapScope, String)>,
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
    /// The client IP's or the country's sends for this hour are used up.
    CapReached {
        scope: CapScope,
        retry_after: Duration,
    },
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

impl StorageError {
    /// A statement refused `RETRIES` times in a row while the row read back said it should not
    /// have: the row keeps changing under us, or instances disagree about the time.
    fn refused_without_reason(what: &str) -> Self {
        StorageError::Setup(format!(
            "a {what} kept being refused without a reason; are the instances' clocks in step?"
        ))
    }
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
            // read-only standby), and our statement and lock timeouts (57014, 55P03). SQLite: SQLITE_BUSY (5) and SQLITE_LOCKED (6) after the busy
            // timeout.
            code.starts_with("08")
                || code.starts_with("57P0")
                || code.starts_with("53")
                || code.starts_with("28")
                || code == "3D000"
                || code == "55000"
                || code == "25006"
                || code == "57014"
                || code == "55P03"
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

/// The key and cap to bind for a counter; a cap of 0 means "not counted".
fn cap_binds(cap: &Option<CounterCap>) -> (&str, i64) {
    match cap {
        Some(c) => (c.key.as_str(), i64::from(c.max)),
        None => ("", 0),
    }
}

/// The counters a send statement incremented.
fn counted_caps(send: &NewSend<'_>, ip: bool, country: bool) -> Vec<(CapScope, String)> {
    let mut counted = Vec::new();
    if let (true, Some(c)) = (ip, &send.ip_cap) {
        counted.push((CapScope::ClientIp, c.key.clone()));
    }
    if let (true, Some(c)) = (country, &send.country_cap) {
        counted.push((CapScope::Country, c.key.clone()));
    }
    counted
}

/// The counters this send brought exactly to their cap.
fn filled_caps(
    send: &NewSend<'_>,
    ip_count: Option<impl Into<i64>>,
    country_count: Option<impl Into<i64>>,
) -> Vec<(CapScope, String)> {
    let mut filled = Vec::new();
    if let (Some(n), Some(c)) = (ip_count, &send.ip_cap)
        && n.into() == i64::from(c.max)
    {
        filled.push((CapScope::ClientIp, c.key.clone()));
    }
    if let (Some(n), Some(c)) = (country_count, &send.country_cap)
        && n.into() == i64::from(c.max)
    {
        filled.push((CapScope::Country, c.key.clone()));
    }
    filled
}

/// A counter that refused the send, if one did.
fn refused_cap(send: &NewSend<'_>, ip_counted: bool, country_counted: bool) -> Option<SendOutcome> {
    let retry_after = until_next_window(send.now);
    if send.ip_cap.is_some() && !ip_counted {
        return Some(SendOutcome::CapReached {
            scope: CapScope::ClientIp,
            retry_after,
        });
    }
    if send.country_cap.is_some() && !country_counted {
        return Some(SendOutcome::CapReached {
            scope: CapScope::Country,
            retry_after,
        });
    }
    None
}

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

/// Seconds until the window that `now` falls in ends.
fn until_next_window(now: OffsetDateTime) -> Duration {
    ceil_secs(window_start(now) + HOUR - now)
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
