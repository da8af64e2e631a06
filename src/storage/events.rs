//! The event table, the outbox of outgoing events: the CTEs that the send, check and message
//! statements carry on Postgres to write an event with the change it reports, the statements that
//! copy an event from the row a SQLite transaction (or a Twilio Verify approval) just changed, and
//! the dispatcher's claim, delivery and retry. Events are written only when `Storage::events` is
//! on (`EVENTS_WEBHOOK_URL` set): the Postgres CTEs take it as a bind and insert nothing without it.

use std::sync::OnceLock;

use time::OffsetDateTime;
use uuid::Uuid;

use super::db::{Db, Param, Row, Sql};
use super::fraud::FraudScope;
use super::tx::Tx;
use super::{Storage, StorageError};
use crate::domain::{MessageStatus, PhoneNumber};

pub const VERIFICATION_APPROVED: &str = "verification.approved";
pub const MAX_ATTEMPTS_REACHED: &str = "verification.max_attempts_reached";
pub const MESSAGE_STATUS: &str = "message.status";
pub const FRAUD_BLOCKED: &str = "fraud.blocked";

/// An event as the dispatcher claimed it: what its body says, and its place in the retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: i64,
    /// The webhook-id's digits.
    pub id: Uuid,
    pub event_type: String,
    pub verification_id: Option<Uuid>,
    pub message_id: Option<Uuid>,
    pub phone_number: Option<String>,
    pub channel: Option<String>,
    pub status: Option<String>,
    pub error_code: Option<String>,
    pub block: Option<StoredBlock>,
    /// When the change happened.
    pub created_at: OffsetDateTime,
    /// Tries so far, this one included.
    pub attempts: i64,
}

/// A fraud.blocked event's block; it began at the event's `created_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlock {
    pub scope: String,
    pub key: String,
    pub until: OffsetDateTime,
    pub unverified: i64,
    pub verified: i64,
}

/// The message statuses that `message.status` reports.
pub(super) fn reported(status: MessageStatus) -> bool {
    matches!(
        status,
        MessageStatus::Delivered
            | MessageStatus::Undelivered
            | MessageStatus::Failed
            | MessageStatus::Read
    )
}

// Postgres, in the send statement after the fraud guard's CTEs (`fraud::pg_fraud`): a fraud.blocked event for each scope whose
// upsert made a block (outcome bit 2), so the block and its event commit together ($19 the
// prefix, $15 the country, $26 the block's end, $6 now; $27 events on).
pub(super) const PG_FRAUD_EVENTS: &str = r#"
, fraud_events as (
    insert into event (event_id, event_type, fraud_scope, fraud_key, blocked_until,
                       block_unverified, block_verified, created_at, next_attempt_at)
    select gen_random_uuid(), 'fraud.blocked', b.scope, b.key, $26, b.u, b.v, $6, $6
    from (select 'prefix' as scope, $19 as key, block_unverified as u, block_verified as v
          from fraud_prefix where outcome & 2 = 2
          union all
          select 'country', $15, block_unverified, block_verified
          from fraud_country where outcome & 2 = 2) b
    where $27
)"#;

// Postgres, in the check statement after PG_CHECK_FRAUD: the approval's event, or the event of
// the wrong code that used the last attempt (CHECK_UPDATE admits only attempts < $4, so reaching
// $4 happens once). The message is the one that carried the code ($7 events on).
pub(super) const PG_CHECK_EVENTS: &str = r#"
, check_event as (
    insert into event (event_id, event_type, verification_id, message_id, phone_number, channel,
                       created_at, next_attempt_at)
    select gen_random_uuid(),
        case when c.approved then 'verification.approved'
             else 'verification.max_attempts_reached' end,
        c.verification_id, m.message_id, $1, m.channel, $3, $3
    from checked c left join message m on m.message_id = c.current_send_id
    where $7 and (c.approved or c.attempts >= $4)
)"#;

// Postgres: a message update (`changed`, returning the change: message_id, verification_id,
// channel, accepted_at, phone_number, error_code, status) and its message.status event in one
// statement; `$5` is now in every message update.
const PG_STATUS_EVENT: &str = r#"
, status_event as (
    insert into event (event_id, event_type, verification_id, message_id, phone_number, channel,
                       status, error_code, created_at, next_attempt_at)
    select gen_random_uuid(), 'message.status', verification_id, message_id, phone_number, channel,
        status, error_code, $5, $5
    from changed
)
select message_id, verification_id, channel, accepted_at, phone_number, error_code, status
from changed
"#;

// Inside a transaction, after the change: the event copied from the row it changed. The number's
// row and the message that carried its code ($3 the number, $5 the verification).
const EVENT_OF_VERIFICATION: Sql = Sql::same(
    r#"
insert into event (event_id, event_type, verification_id, message_id, phone_number, channel,
                   created_at, next_attempt_at)
select $1, $2, v.verification_id, m.message_id, v.phone_number, m.channel, $4, $4
from verification v left join message m on m.message_id = v.current_send_id
where v.phone_number = $3 and v.verification_id = $5
"#,
);

// SQLite: the message's new status ($2), in the report's transaction.
const EVENT_OF_MESSAGE: Sql = Sql::same(
    r#"
insert into event (event_id, event_type, verification_id, message_id, phone_number, channel,
                   status, error_code, created_at, next_attempt_at)
select $1, 'message.status', verification_id, message_id, phone_number, channel, status,
    error_code, $3, $3
from message where message_id = $2
"#,
);

// SQLite: the block that the scope's upsert just made, in the send's transaction.
const EVENT_OF_BLOCK: Sql = Sql::same(
    r#"
insert into event (event_id, event_type, fraud_scope, fraud_key, blocked_until, block_unverified,
                   block_verified, created_at, next_attempt_at)
select $1, 'fraud.blocked', scope, key, blocked_until, block_unverified, block_verified,
    blocked_at, blocked_at
from fraud_scope where scope = $2 and key = $3
"#,
);

// The dispatcher's claim: due events ($1 now) that no older event of their verification waits
// before, oldest due first, leased to $3 until $2 (their next try is then the lease's end).
// Postgres locks what it claims and skips what another instance is claiming; SQLite's one writer
// does the same. Both by event_next_attempt_at_idx, the order check by event_verification_idx.
const CLAIM: Sql = Sql::each(
    r#"
with due as (
    select e.event_seq from event e
    where e.next_attempt_at <= $1
      and not exists (select 1 from event o
                      where o.verification_id = e.verification_id and o.event_seq < e.event_seq)
    order by e.next_attempt_at
    limit $4
    for update of e skip locked
)
update event e set next_attempt_at = $2, locked_until = $2, locked_by = $3, attempts = e.attempts + 1
from due where e.event_seq = due.event_seq
returning e.event_seq, e.event_id, e.event_type, e.verification_id, e.message_id, e.phone_number,
    e.channel, e.status, e.error_code, e.fraud_scope, e.fraud_key, e.blocked_until,
    e.block_unverified, e.block_verified, e.created_at, e.attempts
"#,
    r#"
update event set next_attempt_at = $2, locked_until = $2, locked_by = $3, attempts = attempts + 1
where event_seq in (
    select e.event_seq from event e
    where e.next_attempt_at <= $1
      and not exists (select 1 from event o
                      where o.verification_id = e.verification_id and o.event_seq < e.event_seq)
    order by e.next_attempt_at
    limit $4)
returning event_seq, event_id, event_type, verification_id, message_id, phone_number, channel,
    status, error_code, fraud_scope, fraud_key, blocked_until, block_unverified, block_verified,
    created_at, attempts
"#,
);

// SQLite: a read first, so an idle dispatcher never takes the one write lock.
const ANY_DUE: Sql = Sql::same("select 1 from event where next_attempt_at <= $1 limit 1");

// Delivered or dropped: gone, by the primary key.
const REMOVE: Sql = Sql::same("delete from event where event_seq = $1");

// A failed try: due again at $3, unless the lease was lost to another instance meanwhile.
const RETRY: Sql = Sql::same(
    r#"
update event set next_attempt_at = $3, locked_by = null, locked_until = null
where event_seq = $1 and locked_by = $2
"#,
);

// The pending gauge counts up to 100,000: a full count of a large backlog (a receiver down for a
// day) would scan all of it every few seconds in every instance.
const PENDING: Sql = Sql::same("select count(*) from (select 1 from event limit 100000) e");

// Events no dispatcher tried since $1 (events turned off, or the service down for longer than
// EVENTS_MAX_AGE_HOURS): past their age, by event_next_attempt_at_idx.
const PURGE_STALE: Sql = Sql::each(
    r#"
delete from event where event_seq = any(array(
    select event_seq from event where next_attempt_at < $1 order by next_attempt_at limit 10000))
returning event_type
"#,
    r#"
delete from event where event_seq in (
    select event_seq from event where next_attempt_at < $1 order by next_attempt_at limit 10000)
returning event_type
"#,
);

/// In a transaction: the verification event of the number's current verification.
pub(super) async fn verification_event(
    tx: &mut Tx,
    event_type: &'static str,
    phone: &PhoneNumber,
    verification_id: Uuid,
    now: OffsetDateTime,
) -> Result<(), StorageError> {
    let params = [
        Param::Uuid(Uuid::new_v4()),
        Param::Text(event_type),
        Param::Text(phone.as_ref()),
        Param::Time(now),
        Param::Uuid(verification_id),
    ];
    tx.execute(EVENT_OF_VERIFICATION, &params).await.map(drop)
}

/// In a SQLite send's transaction: the event of the block that the scope's upsert just made.
pub(super) async fn block_event(
    tx: &mut sqlx::SqliteConnection,
    scope: FraudScope,
    key: &str,
) -> Result<(), StorageError> {
    let params = [
        Param::Uuid(Uuid::new_v4()),
        Param::Text(scope.as_str()),
        Param::Text(key),
    ];
    super::db::sqlite(EVENT_OF_BLOCK.sqlite, &params)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Runs a message update that returns the change (as PG_STATUS_EVENT reads it) together with its message.status event: on
/// Postgres one statement (`cell` caches the text composed from `update`), on SQLite one
/// transaction. Returns the update's row (none: nothing changed, no event).
pub(super) async fn update_with_status_event(
    db: &Db,
    update: Sql,
    cell: &'static OnceLock<String>,
    params: &[Param<'_>],
    now: OffsetDateTime,
) -> Result<Option<Row>, StorageError> {
    match db {
        Db::Postgres(_) => {
            let pg = cell
                .get_or_init(|| format!("with changed as ({}){PG_STATUS_EVENT}", update.postgres));
            db.fetch_optional(Sql::each(pg.as_str(), update.sqlite), params)
                .await
        }
        Db::Sqlite(_) => {
            let mut tx = db.begin().await?;
            let row = tx.fetch_optional(update, params).await?;
            if let Some(row) = &row {
                let message_id: Uuid = row.get(0)?;
                let event = [
                    Param::Uuid(Uuid::new_v4()),
                    Param::Uuid(message_id),
                    Param::Time(now),
                ];
                tx.execute(EVENT_OF_MESSAGE, &event).await?;
            }
            tx.commit().await?;
            Ok(row)
        }
    }
}

fn stored_event(row: &Row) -> Result<StoredEvent, StorageError> {
    let scope: Option<String> = row.get(9)?;
    let block = match scope {
        Some(scope) => Some(StoredBlock {
            scope,
            key: row.get::<Option<String>>(10)?.unwrap_or_default(),
            until: row.time(11)?,
            unverified: row.opt_int(12)?.unwrap_or(0),
            verified: row.opt_int(13)?.unwrap_or(0),
        }),
        None => None,
    };
    Ok(StoredEvent {
        seq: row.big(0)?,
        id: row.get(1)?,
        event_type: row.get(2)?,
        verification_id: row.get(3)?,
        message_id: row.get(4)?,
        phone_number: row.get(5)?,
        channel: row.get(6)?,
        status: row.get(7)?,
        error_code: row.get(8)?,
        block,
        created_at: row.time(14)?,
        attempts: row.int(15)?,
    })
}

impl Storage {
    /// Up to `limit` due events, leased to `owner` until `lease_until`; at most one per
    /// verification (its oldest). The dispatcher's statements pass the gate like requests, so a
    /// batch of deliveries never holds more connections than the pool has.
    pub async fn claim_events(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        owner: Uuid,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, StorageError> {
        let _turn = self.gate.enter().await?;
        if matches!(self.db, Db::Sqlite(_))
            && self
                .db
                .fetch_optional(ANY_DUE, &[Param::Time(now)])
                .await?
                .is_none()
        {
            return Ok(Vec::new());
        }
        let params = [
            Param::Time(now),
            Param::Time(lease_until),
            Param::Uuid(owner),
            Param::Int8(limit),
        ];
        let rows = self.db.fetch_all(CLAIM, &params).await?;
        let mut events = rows
            .iter()
            .map(stored_event)
            .collect::<Result<Vec<_>, _>>()?;
        events.sort_by_key(|e| e.seq);
        Ok(events)
    }

    /// A delivered event, or one dropped past its age: removed.
    pub async fn remove_event(&self, seq: i64) -> Result<(), StorageError> {
        let _turn = self.gate.enter().await?;
        self.db.execute(REMOVE, &[Param::Int8(seq)]).await.map(drop)
    }

    /// A failed try: due again at `next`, if `owner` still holds the lease.
    pub async fn retry_event(
        &self,
        seq: i64,
        owner: Uuid,
        next: OffsetDateTime,
    ) -> Result<(), StorageError> {
        let _turn = self.gate.enter().await?;
        let params = [Param::Int8(seq), Param::Uuid(owner), Param::Time(next)];
        self.db.execute(RETRY, &params).await.map(drop)
    }

    /// Events not yet delivered (claimed ones included), up to 100,000.
    pub async fn pending_events(&self) -> Result<i64, StorageError> {
        match self.db.fetch_optional(PENDING, &[]).await? {
            Some(row) => row.big(0),
            None => Ok(0),
        }
    }

    /// Deletes the events that no dispatcher has tried since `before` (events turned off, or the
    /// service stopped for longer than their age); returns the type of each.
    pub async fn purge_events(&self, before: OffsetDateTime) -> Result<Vec<String>, StorageError> {
        let mut types = Vec::new();
        loop {
            let rows = self
                .db
                .fetch_all(PURGE_STALE, &[Param::Time(before)])
                .await?;
            let n = rows.len();
            for row in rows {
                types.push(row.get(0)?);
            }
            if n < 10_000 {
                return Ok(types);
            }
        }
    }
}
