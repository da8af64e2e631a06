//! The database behind `Storage`: a Postgres or a SQLite pool, how each is opened, and how a
//! statement's parameters are bound and its columns read in each dialect.

use std::str::FromStr;
use std::time::Duration;

use sqlx::pool::PoolOptions;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgRow, Postgres};
use sqlx::query::Query;
use sqlx::sqlite::{
    Sqlite, SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Column as _, Decode, Row as _, Type};
use time::OffsetDateTime;
use uuid::Uuid;

use super::StorageError;
use super::pg_conns::PgConns;

#[derive(Debug, Clone)]
pub(super) enum Db {
    /// Connections of our own (`pg_conns`): one round trip per statement.
    Postgres(PgConns),
    /// The embedded store: the same tables and statements, with times as Unix milliseconds and send
    /// times as a JSON array. SQLite runs one writer at a time, which serializes the statements as
    /// the row lock does in Postgres.
    Sqlite(SqlitePool),
}

/// A statement's text in each dialect; most statements have one text for both.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sql {
    pub(super) postgres: &'static str,
    pub(super) sqlite: &'static str,
}

impl Sql {
    pub(super) const fn same(text: &'static str) -> Self {
        Self::each(text, text)
    }

    pub(super) const fn each(postgres: &'static str, sqlite: &'static str) -> Self {
        Self { postgres, sqlite }
    }
}

/// The `limit` of every purge statement (`purge_sql!`).
const PURGE_BATCH: u64 = 10_000;

/// The purge of a table: rows whose `$column` is before `$1`, `PURGE_BATCH` at a time, by the index
/// on that column. On Postgres `= any(array(..))` deletes by primary key; an `in (subquery)` was
/// planned as a hash join over a full scan of the table.
macro_rules! purge_sql {
    ($table:literal, $key:literal, $column:literal) => {
        $crate::storage::db::Sql::each(
            concat!(
                "delete from ",
                $table,
                " where ",
                $key,
                " = any(array(select ",
                $key,
                " from ",
                $table,
                " where ",
                $column,
                " < $1 order by ",
                $column,
                " limit 10000))"
            ),
            concat!(
                "delete from ",
                $table,
                " where ",
                $key,
                " in (select ",
                $key,
                " from ",
                $table,
                " where ",
                $column,
                " < $1 order by ",
                $column,
                " limit 10000)"
            ),
        )
    };
}
pub(super) use purge_sql;

/// A statement parameter; the dialect decides how it is stored.
#[derive(Debug, Clone, Copy)]
pub(super) enum Param<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    /// `integer` on Postgres.
    Int4(i32),
    /// `bigint` on Postgres.
    Int8(i64),
    OptInt8(Option<i64>),
    Bool(bool),
    Uuid(Uuid),
    Bytes(Option<&'a [u8]>),
    /// `timestamptz` on Postgres, Unix milliseconds on SQLite.
    Time(OffsetDateTime),
    /// `double precision` on Postgres, `real` on SQLite.
    Float(f64),
}

/// `sql` with `params` bound for Postgres.
pub(super) fn postgres(
    sql: &'static str,
    params: &[Param<'_>],
) -> Query<'static, Postgres, PgArguments> {
    params.iter().fold(sqlx::query(sql), |q, p| match *p {
        Param::Text(v) => q.bind(v),
        Param::OptText(v) => q.bind(v),
        Param::Int4(v) => q.bind(v),
        Param::Int8(v) => q.bind(v),
        Param::OptInt8(v) => q.bind(v),
        Param::Bool(v) => q.bind(v),
        Param::Uuid(v) => q.bind(v),
        Param::Bytes(v) => q.bind(v),
        Param::Time(v) => q.bind(v),
        Param::Float(v) => q.bind(v),
    })
}

/// `sql` with `params` bound for SQLite.
pub(super) fn sqlite(
    sql: &'static str,
    params: &[Param<'_>],
) -> Query<'static, Sqlite, SqliteArguments> {
    params.iter().fold(sqlx::query(sql), |q, p| match *p {
        Param::Text(v) => q.bind(v),
        Param::OptText(v) => q.bind(v),
        Param::Int4(v) => q.bind(i64::from(v)),
        Param::Int8(v) => q.bind(v),
        Param::OptInt8(v) => q.bind(v),
        Param::Bool(v) => q.bind(v),
        Param::Uuid(v) => q.bind(v),
        Param::Bytes(v) => q.bind(v),
        Param::Time(v) => q.bind(millis(v)),
        Param::Float(v) => q.bind(v),
    })
}

fn millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A result row, read column by column as its dialect stores the values.
pub(super) enum Row {
    Postgres(PgRow),
    Sqlite(SqliteRow),
}

impl Row {
    /// A column with the same Rust type in both dialects: text, bool, uuid, or an `Option` of one.
    pub(super) fn get<T>(&self, i: usize) -> Result<T, StorageError>
    where
        T: for<'r> Decode<'r, Postgres>
            + Type<Postgres>
            + for<'r> Decode<'r, Sqlite>
            + Type<Sqlite>,
    {
        Ok(match self {
            Row::Postgres(r) => r.try_get(i)?,
            Row::Sqlite(r) => r.try_get(i)?,
        })
    }

    /// An `integer` column.
    pub(super) fn int(&self, i: usize) -> Result<i64, StorageError> {
        Ok(match self {
            Row::Postgres(r) => r.try_get::<i32, _>(i)?.into(),
            Row::Sqlite(r) => r.try_get(i)?,
        })
    }

    /// An `integer` column that may be null.
    pub(super) fn opt_int(&self, i: usize) -> Result<Option<i64>, StorageError> {
        Ok(match self {
            Row::Postgres(r) => r.try_get::<Option<i32>, _>(i)?.map(i64::from),
            Row::Sqlite(r) => r.try_get(i)?,
        })
    }

    pub(super) fn time(&self, i: usize) -> Result<OffsetDateTime, StorageError> {
        Ok(match self {
            Row::Postgres(r) => r.try_get(i)?,
            Row::Sqlite(r) => from_millis(r.try_get(i)?),
        })
    }

    /// How many columns the row has.
    pub(super) fn columns(&self) -> usize {
        match self {
            Row::Postgres(r) => r.len(),
            Row::Sqlite(r) => r.len(),
        }
    }

    pub(super) fn opt_time(&self, i: usize) -> Result<Option<OffsetDateTime>, StorageError> {
        Ok(match self {
            Row::Postgres(r) => r.try_get(i)?,
            Row::Sqlite(r) => r.try_get::<Option<i64>, _>(i)?.map(from_millis),
        })
    }

    /// A `bigint` column (counts, sums).
    pub(super) fn big(&self, i: usize) -> Result<i64, StorageError> {
        Ok(match self {
            Row::Postgres(r) => r.try_get::<Option<i64>, _>(i)?.unwrap_or(0),
            Row::Sqlite(r) => r.try_get::<Option<i64>, _>(i)?.unwrap_or(0),
        })
    }

    /// A `bigint` column that may be null.
    pub(super) fn opt_big(&self, i: usize) -> Result<Option<i64>, StorageError> {
        Ok(match self {
            Row::Postgres(r) => r.try_get(i)?,
            Row::Sqlite(r) => r.try_get(i)?,
        })
    }

    /// A list of times: `timestamptz[]` on Postgres, a JSON array of milliseconds on SQLite.
    pub(super) fn times(&self, i: usize) -> Result<Vec<OffsetDateTime>, StorageError> {
        match self {
            Row::Postgres(r) => Ok(r.try_get(i)?),
            Row::Sqlite(r) => {
                let ms: Vec<i64> = serde_json::from_str(r.try_get(i)?).map_err(|e| {
                    StorageError::Setup(format!("corrupt {}: {e}", r.column(i).name()))
                })?;
                Ok(ms.into_iter().map(from_millis).collect())
            }
        }
    }
}

/// SQLite's settings, and the file's directory, created if missing.
fn sqlite_options(
    options: SqliteConnectOptions,
    busy_timeout: Duration,
) -> Result<SqliteConnectOptions, StorageError> {
    let options = options
        .create_if_missing(true)
        // WAL lets readers (readiness checks) run beside the writer; NORMAL sync is durable
        // across process crashes, which is what a code store needs.
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(busy_timeout)
        .foreign_keys(true);
    let file = options.get_filename();
    if let Some(dir) = file.parent()
        && !dir.as_os_str().is_empty()
        && file.as_os_str() != ":memory:"
    {
        std::fs::create_dir_all(dir).map_err(|e| {
            StorageError::Setup(format!("cannot create directory {}: {e}", dir.display()))
        })?;
    }
    Ok(options)
}

impl Db {
    /// Opens the database named by the URL, creating what is needed, and applies migrations.
    pub(super) async fn connect(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, StorageError> {
        fn pool_options<DB: sqlx::Database>(max: u32, timeout: Duration) -> PoolOptions<DB> {
            PoolOptions::new()
                .max_connections(max)
                .acquire_timeout(timeout)
        }
        let url_error = |e: sqlx::Error| StorageError::Setup(format!("DATABASE_URL: {e}"));
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url).map_err(url_error)?;
            let pool = pool_options(max_connections, acquire_timeout)
                .connect_with(sqlite_options(options, acquire_timeout)?)
                .await?;
            sqlx::migrate!("migrations/sqlite").run(&pool).await?;
            return Ok(Db::Sqlite(pool));
        }
        let options = PgConnectOptions::from_str(url)
            .map_err(url_error)?
            .application_name("phone-verify")
            // A statement stuck behind a lock or a sick server fails instead of holding the
            // request (and a pool connection) forever.
            .options([("statement_timeout", "10s"), ("lock_timeout", "5s")]);
        let conns = PgConns::connect(options, max_connections, acquire_timeout).await?;
        let mut migrating = conns.acquire().await?;
        sqlx::migrate!("migrations/postgres")
            .run(&mut *migrating)
            .await?;
        migrating.give_back();
        Ok(Db::Postgres(conns))
    }

    pub(super) fn backend(&self) -> &'static str {
        match self {
            Db::Postgres(_) => "postgres",
            Db::Sqlite(_) => "sqlite",
        }
    }

    pub(super) async fn fetch_optional(
        &self,
        sql: Sql,
        params: &[Param<'_>],
    ) -> Result<Option<Row>, StorageError> {
        Ok(match self {
            Db::Postgres(conns) => conns
                .fetch_optional(postgres(sql.postgres, params))
                .await?
                .map(Row::Postgres),
            Db::Sqlite(pool) => sqlite(sql.sqlite, params)
                .fetch_optional(pool)
                .await?
                .map(Row::Sqlite),
        })
    }

    pub(super) async fn fetch_all(
        &self,
        sql: Sql,
        params: &[Param<'_>],
    ) -> Result<Vec<Row>, StorageError> {
        Ok(match self {
            Db::Postgres(conns) => conns
                .fetch_all(postgres(sql.postgres, params))
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
            Db::Sqlite(pool) => sqlite(sql.sqlite, params)
                .fetch_all(pool)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
        })
    }

    /// Runs a `delete … limit 10000` until it deletes fewer: a purge after a long pause never holds
    /// one huge delete open. Returns how many rows went.
    pub(super) async fn delete_in_batches(
        &self,
        sql: Sql,
        before: OffsetDateTime,
    ) -> Result<u64, StorageError> {
        let mut total = 0;
        loop {
            let n = self.execute(sql, &[Param::Time(before)]).await?;
            total += n;
            if n < PURGE_BATCH {
                return Ok(total);
            }
        }
    }

    /// Answers when the database does.
    pub(super) async fn ping(&self) -> Result<(), StorageError> {
        self.execute(Sql::same("select 1"), &[]).await.map(drop)
    }

    /// Runs a statement; returns how many rows it changed.
    pub(super) async fn execute(
        &self,
        sql: Sql,
        params: &[Param<'_>],
    ) -> Result<u64, StorageError> {
        let done = match self {
            Db::Postgres(conns) => conns
                .execute(postgres(sql.postgres, params))
                .await?
                .rows_affected(),
            Db::Sqlite(pool) => sqlite(sql.sqlite, params)
                .execute(pool)
                .await?
                .rows_affected(),
        };
        Ok(done)
    }
}
