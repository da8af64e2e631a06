//! A send on SQLite: the fraud guard, the counters, the row, its record and its message as separate
//! statements in one transaction (SQLite has one writer at a time and no round trips to save).

use sqlx::sqlite::SqlitePool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::fallback::{SQLITE_FALLBACK, SQLITE_FALLBACK_MESSAGE};
use super::send::{Tried, fraud_refusal};
use crate::storage::StorageError;
use crate::storage::counters;
use crate::storage::db::{self, Param, Row};
use crate::storage::events;
use crate::storage::fraud::{self, FraudScope};
use crate::storage::outcomes::{NewSend, SendKind};

// SQLite: the same conditions on the send times, kept as a JSON array; the counters were taken
// before, in the same transaction.
const SQLITE_START_SEND: &str = r#"
insert into verification
    (phone_number, verification_id, status, code_hash, attempts, expires_at, current_send_id,
     send_times, fraud_slot, created_at, updated_at)
values ($1, $2, 'pending', $3, 0, $4, $5, json_array($6), $10, $6, $6)
on conflict (phone_number) do update set
    verification_id = case when verification.status = 'approved' then excluded.verification_id
                           else verification.verification_id end,
    status = 'pending',
    code_hash = excluded.code_hash,
    attempts = 0,
    expires_at = excluded.expires_at,
    current_send_id = excluded.current_send_id,
    send_times = (select json_group_array(value) from (
        select value from json_each(verification.send_times) where value > $8
        union all select $6)),
    fraud_slot = excluded.fraud_slot,
    approved_at = null,
    updated_at = $6
where not exists (select 1 from json_each(verification.send_times) where value > $7)
  and (select count(*) from json_each(verification.send_times) where value > $8) < $9
returning verification_id
"#;

const SQLITE_RESEND: &str = r#"
update verification set
    status = 'pending',
    code_hash = $3,
    attempts = 0,
    expires_at = $4,
    current_send_id = $5,
    send_times = (select json_group_array(value) from (
        select value from json_each(verification.send_times) where value > $8
        union all select $6)),
    fraud_slot = $10,
    updated_at = $6
where phone_number = $1
  and status <> 'approved'
  and not exists (select 1 from json_each(verification.send_times) where value > $7)
  and (select count(*) from json_each(verification.send_times) where value > $8) < $9
  and ($2 is null or 1)
returning verification_id
"#;

// Only the send that installed the current code may void it (see PG_RELEASE_SEND).
pub(super) const SQLITE_RELEASE_SEND: &str = r#"
update verification set
    status = case when current_send_id = $2 then 'failed' else status end,
    code_hash = case when current_send_id = $2 then null else code_hash end,
    send_times = (select json_group_array(value) from json_each(verification.send_times)
                  where value <> $3),
    updated_at = $3
where phone_number = $1
"#;

// SQLite: the same two writes, after the row, in the send's transaction.
const SQLITE_RECORD: &str = r#"
insert into verification_record
    (verification_id, phone_number, status, attempts, expires_at, created_at, updated_at)
values ($1, $2, 'pending', 0, $3, $4, $4)
on conflict (verification_id) do update set status = 'pending', attempts = 0,
    expires_at = excluded.expires_at, approved_at = null, updated_at = excluded.updated_at
"#;

const SQLITE_MESSAGE: &str = r#"
insert into message (message_id, verification_id, phone_number, country, channel, provider,
                     status, is_code, created_at, status_updated_at)
values ($1, $2, $3, $4, $5, $6, 'sending', 1, $7, $7)
"#;

/// The fraud guard, the counters, then the row, in one transaction that a refusal rolls back
/// (a fraud refusal commits: the block it made, and its event, must last).
pub(super) async fn send_sqlite(
    pool: &SqlitePool,
    send: &NewSend<'_>,
    params: &[Param<'_>],
    window: OffsetDateTime,
    events: bool,
) -> Result<Tried, StorageError> {
    let (sql, replaces) = match send.kind {
        SendKind::Start => (SQLITE_START_SEND, None),
        SendKind::Resend => (SQLITE_RESEND, None),
        SendKind::Fallback { replaces } => (SQLITE_FALLBACK, Some(replaces)),
    };
    let mut tx = pool.begin().await?;
    let mut fraud = [None, None];
    if let Some(check) = &send.fraud {
        fraud = fraud::count_sqlite(&mut tx, check, send.now).await?;
        if events {
            let scopes = [
                (FraudScope::Prefix, &check.prefix),
                (FraudScope::Country, &check.country),
            ];
            for ((scope, key), outcome) in scopes.into_iter().zip(fraud) {
                if outcome.is_some_and(|o| o.made_a_block()) {
                    events::block_event(&mut tx, scope, key).await?;
                }
            }
        }
        if let Some((scope, outcome)) = fraud_refusal(&fraud) {
            if scope == FraudScope::Country {
                let (prefix, slot) = (&check.prefix, check.slot);
                fraud::adjust_sqlite(&mut tx, FraudScope::Prefix, prefix, slot, -1, send.now)
                    .await?;
            }
            tx.commit().await?;
            return Ok(Tried::Blocked { scope, outcome });
        }
    }
    let [ip_count, country_count] = match counters::count_sqlite(&mut tx, send, window).await? {
        Ok(counts) => counts,
        Err(scope) => {
            tx.rollback().await?;
            return Ok(Tried::CapFull(scope));
        }
    };
    let fraud_slot = send.fraud.as_ref().map(|c| c.slot);
    let params: Vec<Param<'_>> = params
        .iter()
        .copied()
        .chain([Param::OptInt8(fraud_slot)])
        .chain(replaces.map(Param::Uuid))
        .collect();
    let row = db::sqlite(sql, &params).fetch_optional(&mut *tx).await?;
    let Some(row) = row.map(Row::Sqlite) else {
        tx.rollback().await?;
        return Ok(Tried::Refused);
    };
    let verification_id: Uuid = row.get(0)?;
    let record = [
        Param::Uuid(verification_id),
        Param::Text(send.phone.as_ref()),
        Param::Time(send.expires_at),
        Param::Time(send.now),
    ];
    db::sqlite(SQLITE_RECORD, &record).execute(&mut *tx).await?;
    if let Some(provider) = send.provider {
        let message = [
            Param::Uuid(send.send_id),
            Param::Uuid(verification_id),
            Param::Text(send.phone.as_ref()),
            Param::Text(send.phone.region().unwrap_or("XX")),
            Param::Text(send.channel.as_str()),
            Param::Text(provider),
            Param::Time(send.now),
        ];
        let written = match replaces {
            // The fallback's message names the one it replaces ($8).
            Some(failed) => {
                let message: Vec<Param<'_>> =
                    message.into_iter().chain([Param::Uuid(failed)]).collect();
                db::sqlite(SQLITE_FALLBACK_MESSAGE, &message)
                    .execute(&mut *tx)
                    .await
            }
            None => db::sqlite(SQLITE_MESSAGE, &message).execute(&mut *tx).await,
        };
        written?;
    }
    tx.commit().await?;
    Ok(Tried::Sent {
        verification_id,
        ip_count,
        country_count,
        fraud,
    })
}
