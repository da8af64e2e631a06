//! A send: the verification row and its counters, changed together. On Postgres one statement
//! (the hot path: one round trip); on SQLite separate statements in one transaction.

use std::sync::OnceLock;

use time::OffsetDateTime;
use uuid::Uuid;

use super::fallback::{PG_FALLBACK_RECORDS, PG_FALLBACK_SEND};
use super::read_state;
use super::send_sqlite::{SQLITE_RELEASE_SEND, send_sqlite};
use crate::domain::PhoneNumber;
use crate::storage::counters::{self, PG_COUNTERS, cap_binds, counted_caps, filled_caps};
use crate::storage::db::{self, Db, Param, Row};
use crate::storage::events::PG_FRAUD_EVENTS;
use crate::storage::fraud::{
    self, FraudCheck, FraudCounted, FraudScope, PG_FRAUD_COLUMNS, RING_SLOTS, ScopeOutcome,
    pg_fraud,
};
use crate::storage::outcomes::{
    CapScope, HOUR, NewSend, RETRIES, Reservation, SendKind, SendOutcome, classify_refused_send,
    until_next_window, window_start,
};
use crate::storage::pg_conns::PgConns;
use crate::storage::{Storage, StorageError};

// Postgres: the send follows the counters' CTEs (PG_COUNTERS) in one statement, and writes the row
// only if the counters were taken. The cooldown and the hourly cap are conditions of the upsert's
// DO UPDATE ... WHERE: Postgres holds the row lock while it evaluates them against the latest
// committed row, so two sends for one number cannot both see "no recent send". $6 is now, $7 the
// end of the cooldown window, $8 the start of the hourly window. If the row refuses, the caller
// gives the counters back.
const PG_START_SEND: &str = r#"
, sent as (
    insert into verification as v
        (phone_number, verification_id, status, code_hash, attempts, expires_at, current_send_id,
         send_times, fraud_slot, created_at, updated_at)
    select $1, $2, 'pending', $3, 0, $4, $5, array[$6::timestamptz],
        case when $18 > 0 then $20::int8 end, $6, $6
    where (select ok from counted)
    on conflict (phone_number) do update set
        verification_id = case when v.status = 'approved' then excluded.verification_id
                               else v.verification_id end,
        status = 'pending',
        code_hash = excluded.code_hash,
        attempts = 0,
        expires_at = excluded.expires_at,
        current_send_id = excluded.current_send_id,
        send_times = array(select t from unnest(v.send_times) t where t > $8) || $6::timestamptz,
        fraud_slot = excluded.fraud_slot,
        approved_at = null,
        updated_at = $6
    where not exists (select 1 from unnest(v.send_times) t where t > $7)
      and (select count(*) from unnest(v.send_times) t where t > $8) < $9
    returning v.verification_id
)
"#;

const PG_RESEND: &str = r#"
, sent as (
    update verification v set
        status = 'pending',
        code_hash = $3,
        attempts = 0,
        expires_at = $4,
        current_send_id = $5,
        send_times = array(select t from unnest(v.send_times) t where t > $8) || $6::timestamptz,
        fraud_slot = case when $18 > 0 then $20::int8 end,
        updated_at = $6
    where phone_number = $1
      and (select ok from counted)
      and status <> 'approved'
      and not exists (select 1 from unnest(v.send_times) t where t > $7)
      and (select count(*) from unnest(v.send_times) t where t > $8) < $9
    returning v.verification_id
)
"#;

// Both Postgres sends end here: the verification's record and the message, written by the same
// statement as the row ($15 country, $16 channel, $17 provider; no message for a test number).
// PG_FRAUD_COLUMNS completes the final select.
const PG_RECORDS: &str = r#"
, new_record as (
    insert into verification_record as r
        (verification_id, phone_number, status, attempts, expires_at, created_at, updated_at)
    select verification_id, $1, 'pending', 0, $4, $6, $6 from sent
    on conflict (verification_id) do update set status = 'pending', attempts = 0,
        expires_at = excluded.expires_at, approved_at = null, updated_at = excluded.updated_at
), new_message as (
    insert into message (message_id, verification_id, phone_number, country, channel, provider,
                         status, is_code, created_at, status_updated_at)
    select $5, verification_id, $1, $15, $16, $17, 'sending', true, $6, $6 from sent
    where $17 <> ''
)
select (select verification_id from sent), (select count from ip), (select count from country)"#;

// The send statements joined with the counters' CTEs and the records, once.
static PG_START_SEND_SQL: OnceLock<String> = OnceLock::new();
static PG_RESEND_SQL: OnceLock<String> = OnceLock::new();
static PG_FALLBACK_SQL: OnceLock<String> = OnceLock::new();

// Only the send that installed the current code may void it; its time leaves the window either way.
const PG_RELEASE_SEND: &str = r#"
update verification set
    status = case when current_send_id = $2 then 'failed' else status end,
    code_hash = case when current_send_id = $2 then null else code_hash end,
    send_times = array_remove(send_times, $3::timestamptz),
    updated_at = $3
where phone_number = $1
"#;

/// What one try at a send did.
pub(super) enum Tried {
    Sent {
        verification_id: Uuid,
        ip_count: Option<i64>,
        country_count: Option<i64>,
        fraud: [Option<ScopeOutcome>; 2],
    },
    /// A counter was full; nothing was written.
    CapFull(CapScope),
    /// The fraud guard refused it; only the scope's block (if this send made it) was written.
    Blocked {
        scope: FraudScope,
        outcome: ScopeOutcome,
    },
    /// The row refused (cooldown, hourly cap, nothing to resend); nothing was written.
    Refused,
}

impl Storage {
    /// Atomically checks the fraud guard, the cooldown, the hourly cap and the shared counters
    /// and, if all allow it, records the send and installs the new code (invalidating the previous
    /// one, resetting attempts and expiry).
    pub async fn reserve_send(&self, send: NewSend<'_>) -> Result<SendOutcome, StorageError> {
        // Postgres: one counted send per country at a time from this instance (`Gate::enter_scope`).
        let _scope = match (&self.db, &send.fraud) {
            (Db::Postgres(_), Some(check)) => Some(self.gate.enter_scope(&check.country).await?),
            _ => None,
        };
        let _turn = self.gate.enter().await?;
        let send = &send;
        let window = window_start(send.now);
        let (ip_key, ip_max) = cap_binds(&send.ip_cap);
        let (country_key, country_max) = cap_binds(&send.country_cap);
        let fraud = FraudBinds::of(send);
        // $1 to $9 are the row's; $10 to $14 belong to PG_COUNTERS, $15 to $17 to PG_RECORDS,
        // $18 to $26 to the fraud guard's CTEs and $27 to PG_FRAUD_EVENTS (Postgres only).
        let params = [
            Param::Text(send.phone.as_ref()),
            Param::Uuid(send.new_verification_id),
            Param::Bytes(send.code_hash.as_deref()),
            Param::Time(send.expires_at),
            Param::Uuid(send.send_id),
            Param::Time(send.now),
            Param::Time(send.now - send.cooldown),
            Param::Time(send.now - HOUR),
            Param::Int8(i64::from(send.max_sends_per_hour)),
            Param::Text(ip_key),
            Param::Int8(ip_max),
            Param::Time(window),
            Param::Text(country_key),
            Param::Int8(country_max),
            Param::Text(send.phone.region().unwrap_or("XX")),
            Param::Text(send.channel.as_str()),
            Param::Text(send.provider.unwrap_or("")),
            Param::Int4(fraud.mode),
            Param::Text(fraud.prefix),
            Param::Int8(fraud.slot),
            Param::Int4(fraud.position),
            Param::Int4(RING_SLOTS as i32),
            Param::Int8(fraud.min_per_prefix),
            Param::Int8(fraud.min_per_country),
            Param::Float(fraud.ratio),
            Param::Time(fraud.block_until),
            Param::Bool(self.events),
        ];
        for _ in 0..RETRIES {
            let tried = match &self.db {
                Db::Postgres(pool) => send_postgres(pool, send, &params, window).await?,
                Db::Sqlite(pool) => {
                    send_sqlite(pool, send, &params[..9], window, self.events).await?
                }
            };
            match tried {
                Tried::Sent {
                    verification_id,
                    ip_count,
                    country_count,
                    fraud,
                } => {
                    return Ok(SendOutcome::Reserved(reservation(
                        send,
                        verification_id,
                        ip_count,
                        country_count,
                        fraud,
                    )));
                }
                Tried::CapFull(scope) => {
                    return Ok(SendOutcome::CapReached {
                        scope,
                        retry_after: until_next_window(send.now),
                    });
                }
                Tried::Blocked { scope, outcome } => {
                    let check = send.fraud.as_ref().ok_or_else(|| {
                        StorageError::refused_without_reason("send without a fraud check")
                    })?;
                    let key = match scope {
                        FraudScope::Prefix => &check.prefix,
                        FraudScope::Country => &check.country,
                    };
                    return Ok(SendOutcome::Blocked {
                        scope,
                        block: outcome.made_block(scope, key, check, send.now),
                    });
                }
                Tried::Refused => {}
            }
            let state = read_state(&self.db, send.phone).await?;
            if let Some(outcome) = classify_refused_send(send, state.as_ref()) {
                return Ok(outcome);
            }
        }
        Err(StorageError::refused_without_reason("send"))
    }

    /// Undoes a reserved send whose SMS failed: it stops counting towards the limits and the fraud
    /// guard, and its code becomes unusable.
    pub async fn release_send(
        &self,
        phone: &PhoneNumber,
        reservation: &Reservation,
    ) -> Result<(), StorageError> {
        let _turn = self.gate.enter().await?;
        let window = window_start(reservation.sent_at);
        let params = [
            Param::Text(phone.as_ref()),
            Param::Uuid(reservation.send_id),
            Param::Time(reservation.sent_at),
        ];
        match &self.db {
            Db::Postgres(pool) => {
                pool.execute(db::postgres(PG_RELEASE_SEND, &params)).await?;
                counters::uncount_postgres(pool, window, &reservation.counted).await?;
                if let Some(counted) = &reservation.fraud {
                    fraud::adjust(&self.db, counted, -1, 0, reservation.sent_at).await?;
                }
                Ok(())
            }
            // SQLite: in one transaction, like the send.
            Db::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                db::sqlite(SQLITE_RELEASE_SEND, &params)
                    .execute(&mut *tx)
                    .await?;
                counters::uncount_sqlite(&mut tx, window, &reservation.counted).await?;
                if let Some(c) = &reservation.fraud {
                    let at = reservation.sent_at;
                    fraud::adjust_sqlite(&mut tx, FraudScope::Prefix, &c.prefix, c.slot, -1, at)
                        .await?;
                    fraud::adjust_sqlite(&mut tx, FraudScope::Country, &c.country, c.slot, -1, at)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }
        }
    }
}

/// The fraud guard's binds: zeros when the send is not counted.
struct FraudBinds<'a> {
    mode: i32,
    prefix: &'a str,
    slot: i64,
    position: i32,
    min_per_prefix: i64,
    min_per_country: i64,
    ratio: f64,
    block_until: OffsetDateTime,
}

impl<'a> FraudBinds<'a> {
    fn of(send: &'a NewSend<'_>) -> Self {
        let check = send.fraud.as_ref();
        Self {
            mode: FraudCheck::mode(check),
            prefix: check.map_or("", |c| c.prefix.as_str()),
            slot: check.map_or(0, |c| c.slot),
            position: check.map_or(1, FraudCheck::position),
            min_per_prefix: check.map_or(0, |c| i64::from(c.min_per_prefix)),
            min_per_country: check.map_or(0, |c| i64::from(c.min_per_country)),
            ratio: check.map_or(0.0, |c| c.ratio),
            block_until: check.map_or(send.now, |c| c.block_until),
        }
    }
}

/// The reservation of a send that went through, with what the fraud guard said of it.
fn reservation(
    send: &NewSend<'_>,
    verification_id: Uuid,
    ip_count: Option<i64>,
    country_count: Option<i64>,
    fraud: [Option<ScopeOutcome>; 2],
) -> Reservation {
    let mut over = Vec::new();
    let mut blocks = Vec::new();
    if let Some(check) = &send.fraud {
        let scopes = [
            (FraudScope::Prefix, &check.prefix),
            (FraudScope::Country, &check.country),
        ];
        for ((scope, key), outcome) in scopes.into_iter().zip(fraud) {
            let Some(outcome) = outcome else { continue };
            if outcome.over() {
                over.push(scope);
            }
            blocks.extend(outcome.made_block(scope, key, check, send.now));
        }
    }
    Reservation {
        verification_id,
        send_id: send.send_id,
        sent_at: send.now,
        counted: counted_caps(send, ip_count.is_some(), country_count.is_some()),
        filled: filled_caps(send, ip_count, country_count),
        fraud: send.fraud.as_ref().map(|c| FraudCounted {
            prefix: c.prefix.clone(),
            country: c.country.clone(),
            slot: c.slot,
        }),
        fraud_over: over,
        fraud_blocks: blocks,
    }
}

/// The scope that refused the send, if the guard did.
pub(super) fn fraud_refusal(
    fraud: &[Option<ScopeOutcome>; 2],
) -> Option<(FraudScope, ScopeOutcome)> {
    [FraudScope::Prefix, FraudScope::Country]
        .into_iter()
        .zip(fraud.iter().copied())
        .find_map(|(scope, o)| o.filter(|o| !o.counted()).map(|o| (scope, o)))
}

/// One statement; if the row refused, the counters and fraud counts it took are given back.
async fn send_postgres(
    pool: &PgConns,
    send: &NewSend<'_>,
    params: &[Param<'_>],
    window: OffsetDateTime,
) -> Result<Tried, StorageError> {
    let sql = match send.kind {
        SendKind::Start => PG_START_SEND_SQL.get_or_init(|| {
            format!(
                "{}{PG_FRAUD_EVENTS}{PG_COUNTERS}{PG_START_SEND}{PG_RECORDS}{PG_FRAUD_COLUMNS}",
                pg_fraud()
            )
        }),
        SendKind::Resend => PG_RESEND_SQL.get_or_init(|| {
            format!(
                "{}{PG_FRAUD_EVENTS}{PG_COUNTERS}{PG_RESEND}{PG_RECORDS}{PG_FRAUD_COLUMNS}",
                pg_fraud()
            )
        }),
        SendKind::Fallback { .. } => PG_FALLBACK_SQL.get_or_init(|| {
            format!(
                "{}{PG_FRAUD_EVENTS}{PG_COUNTERS}{PG_FALLBACK_SEND}{PG_FALLBACK_RECORDS}{PG_FRAUD_COLUMNS}",
                pg_fraud()
            )
        }),
    };
    // A fallback also binds the message it replaces ($28).
    let params: Vec<Param<'_>> = match send.kind {
        SendKind::Fallback { replaces } => params
            .iter()
            .copied()
            .chain([Param::Uuid(replaces)])
            .collect(),
        _ => params.to_vec(),
    };
    let row = Row::Postgres(pool.fetch_one(db::postgres(sql.as_str(), &params)).await?);
    let id: Option<Uuid> = row.get(0)?;
    let (ip_count, country_count) = (row.opt_int(1)?, row.opt_int(2)?);
    let fraud = [ScopeOutcome::read(&row, 3)?, ScopeOutcome::read(&row, 6)?];
    if let Some(verification_id) = id {
        return Ok(Tried::Sent {
            verification_id,
            ip_count,
            country_count,
            fraud,
        });
    }
    let refusal = fraud_refusal(&fraud);
    let counted = counted_caps(send, ip_count.is_some(), country_count.is_some());
    counters::uncount_postgres(pool, window, &counted).await?;
    // Whatever the guard counted goes back: both scopes if the row refused, the prefix if the
    // country refused.
    if let Some(check) = &send.fraud
        && fraud[0].is_some_and(ScopeOutcome::counted)
    {
        let mut taken = FraudCounted {
            prefix: check.prefix.clone(),
            country: check.country.clone(),
            slot: check.slot,
        };
        if !fraud[1].is_some_and(ScopeOutcome::counted) {
            // Only the prefix: an unknown key makes ADJUST change nothing for the country.
            taken.country = String::new();
        }
        fraud::adjust(&Db::Postgres(pool.clone()), &taken, -1, 0, send.now).await?;
    }
    if let Some((scope, outcome)) = refusal {
        return Ok(Tried::Blocked { scope, outcome });
    }
    Ok(
        match counters::refused_cap(send, ip_count.is_some(), country_count.is_some()) {
            Some(scope) => Tried::CapFull(scope),
            None => Tried::Refused,
        },
    )
}
