//! A transaction on either backend, for changes that are several statements and must commit
//! together (an approval with its record and its event on SQLite, or any backend's Twilio Verify
//! approval).

use sqlx::{Sqlite, Transaction};

use super::StorageError;
use super::db::{self, Db, Param, Row, Sql};
use super::pg_conns::PgTx;

pub(super) enum Tx {
    Postgres(PgTx),
    Sqlite(Transaction<'static, Sqlite>),
}

impl Db {
    pub(super) async fn begin(&self) -> Result<Tx, StorageError> {
        Ok(match self {
            Db::Postgres(conns) => Tx::Postgres(conns.begin().await?),
            Db::Sqlite(pool) => Tx::Sqlite(pool.begin().await?),
        })
    }
}

impl Tx {
    /// Runs a statement; returns how many rows it changed.
    pub(super) async fn execute(
        &mut self,
        sql: Sql,
        params: &[Param<'_>],
    ) -> Result<u64, StorageError> {
        Ok(match self {
            Tx::Postgres(tx) => db::postgres(sql.postgres, params)
                .execute(tx.conn())
                .await?
                .rows_affected(),
            Tx::Sqlite(tx) => db::sqlite(sql.sqlite, params)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
        })
    }

    pub(super) async fn fetch_optional(
        &mut self,
        sql: Sql,
        params: &[Param<'_>],
    ) -> Result<Option<Row>, StorageError> {
        Ok(match self {
            Tx::Postgres(tx) => db::postgres(sql.postgres, params)
                .fetch_optional(tx.conn())
                .await?
                .map(Row::Postgres),
            Tx::Sqlite(tx) => db::sqlite(sql.sqlite, params)
                .fetch_optional(&mut **tx)
                .await?
                .map(Row::Sqlite),
        })
    }

    pub(super) async fn commit(self) -> Result<(), StorageError> {
        match self {
            Tx::Postgres(tx) => tx.commit().await?,
            Tx::Sqlite(tx) => tx.commit().await?,
        }
        Ok(())
    }
}
