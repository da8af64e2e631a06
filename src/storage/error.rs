//! What storage fails with, and which database errors mean "unavailable" (503) rather than a bug.

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
    pub(super) fn refused_without_reason(what: &str) -> Self {
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
pub(super) fn is_unavailable(e: &sqlx::Error) -> bool {
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
