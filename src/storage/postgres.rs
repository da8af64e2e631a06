use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use time::OffsetDateTime;
use uuid::Uuid;

use std::sync::OnceLock;

use sqlx::AssertSqlSafe;

use super::{
    AttemptOutcome, AttemptResult, CapScope, CheckOutcome, CodeCheck, Gate, HOUR, NewSend, RETRIES,
    Reservation, RowState, SendKind, SendOutcome, StorageError, cap_binds, classify_refused_check,
    classify_refused_send, counted_caps, filled_caps, refused_cap, window_start,
};
use crate::domain::PhoneNumber;

// The send statements are the shared counter CTEs followed by the send itself; joined once.
static START_SEND_SQL: OnceLock<String> = OnceLock::new();
static RESEND_SQL: OnceLock<String> = OnceLock::new();

#[derive(Debug, Clone)]
pub struct PostgresStorage {
    pool: PgPool,
    gate: Gate,
}

// A send in one statement. The client IP's and the country's counters for this hour are taken
// first (each only while under its cap: $11 and $14, 0 = not counted); the number's row is written
// only if both were. The cooldown and the hourly cap are conditions of the upsert's DO UPDATE ...
// WHERE: Postgres holds the row lock while it evaluates them against the latest committed row, so
// two sends for one number cannot both see "no recent send". $6 is now, $7 the end of the
// cooldown window, $8 the start of the hourly window, $12 the start of the counters' window.
// If the number's row refuses, the caller gives the counters back.
const COUNTERS: &str = r#"
with ip as (
    insert into send_counter as c (scope, key, window_start, count)
    select 'ip', $10, $12, 1 where $11 > 0
    on conflict (scope, key, window_start) do update set count = c.count + 1
        where c.count < $11
    returning c.count
), country as (
    insert into send_counter as c (scope, key, window_start, count)
    select 'country', $13, $12, 1 where $14 > 0 and ($11 = 0 or exists (select 1 from ip))
    on conflict (scope, key, window_start) do update set count = c.count + 1
        where c.count < $14
    returning c.count
), counted as (
    select ($11 = 0 or exists (select 1 from ip))
       and ($14 = 0 or exists (select 1 from country)) as ok
)"#;

const START_SEND: &str = r#"
, sent as (
    insert into verification as v
        (phone_number, verification_id, status, code_hash, attempts, expires_at, current_send_id,
         send_times, created_at, updated_at)
    select $1, $2, 'pending', $3, 0, $4, $5, array[$6::timestamptz], $6, $6
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
        approved_at = null,
        updated_at = $6
    where not exists (select 1 from unnest(v.send_times) t where t > $7)
      and (select count(*) from unnest(v.send_times) t where t > $8) < $9
    returning v.verification_id
)
select (select verification_id from sent), (select count from ip), (select count from country)
"#;

const RESEND: &str = r#"
, sent as (
    update verification v set
        status = 'pending',
        code_hash = $3,
        attempts = 0,
        expires_at = $4,
        current_send_id = $5,
        send_times = array(select t from unnest(v.send_times) t where t > $8) || $6::timestamptz,
        updated_at = $6
    where phone_number = $1
      and (select ok from counted)
      and status <> 'approved'
      and not exists (select 1 from unnest(v.send_times) t where t > $7)
      and (select count(*) from unnest(v.send_times) t where t > $8) < $9
    returning v.verification_id
)
select (select verification_id from sent), (select count from ip), (select count from country)
"#;

// Gives counted sends back: a refused or failed send does not count.
const UNCOUNT: &str = r#"
update send_counter set count = count - 1
where window_start = $1 and count > 0
  and ((scope = 'ip' and key = $2 and $3) or (scope = 'country' and key = $4 and $5))
"#;

// Only the send that installed the current code may void it; its time leaves the window either way.
const RELEASE_SEND: &str = r#"
update verification set
    status = case when current_send_id = $2 then 'failed' else status end,
    code_hash = case when current_send_id = $2 then null else code_hash end,
    send_times = array_remove(send_times, $3::timestamptz),
    updated_at = $3
where phone_number = $1
"#;

// Compares and counts in one statement: the WHERE admits only a pending, unexpired code with attempts
// left, and the row lock makes concurrent checks take turns, so a code is approved once and wrong
// attempts stop at the maximum.
const CHECK_CODE: &str = r#"
update verification set
    attempts = attempts + case when code_hash = $2 then 0 else 1 end,
    status = case when code_hash = $2 then 'approved' else status end,
    approved_at = case when code_hash = $2 then $3 else approved_at end,
    code_hash = case when code_hash = $2 then null else code_hash end,
    updated_at = $3
where phone_number = $1
  and status = 'pending'
  and code_hash is not null
  and expires_at > $3
  and attempts < $4
returning verification_id, status = 'approved' as approved, attempts
"#;

// Provider-kept codes (Twilio Verify): the row has no code hash; an attempt is counted before the
// provider is asked, under the same conditions as CHECK_CODE.
const TAKE_ATTEMPT: &str = r#"
update verification set attempts = attempts + 1, updated_at = $2
where phone_number = $1
  and status = 'pending'
  and code_hash is null
  and expires_at > $2
  and attempts < $3
returning verification_id, attempts
"#;

const APPROVE_ATTEMPT: &str = r#"
update verification set status = 'approved', approved_at = $3,
    attempts = greatest(attempts - 1, 0), updated_at = $3
where phone_number = $1 and verification_id = $2 and status = 'pending'
returning verification_id
"#;

const REFUND_ATTEMPT: &str = r#"
update verification set attempts = greatest(attempts - 1, 0), updated_at = $3
where phone_number = $1 and verification_id = $2 and status = 'pending'
returning verification_id
"#;

const EXHAUST_ATTEMPTS: &str = r#"
update verification set attempts = greatest(attempts, $4), updated_at = $3
where phone_number = $1 and verification_id = $2 and status = 'pending'
returning verification_id
"#;

const READ_STATE: &str = r#"
select status, code_hash is not null as has_code, attempts, expires_at, send_times
from verification where phone_number = $1
"#;

// In batches, so a purge after a long pause does not hold a huge delete open. `= any(array(..))`
// makes Postgres delete by primary key; an `in (subquery)` here was planned as a hash join over a
// full scan of the table.
const PURGE: &str = r#"
delete from verification where phone_number = any(array(
    select phone_number from verification where updated_at < $1 order by updated_at limit 10000
))
"#;

const PURGE_COUNTERS: &str = "delete from send_counter where window_start < $1";

impl PostgresStorage {
    pub async fn connect(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, StorageError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StorageError::Setup(format!("DATABASE_URL: {e}")))?
            .application_name("phone-verify")
            // A statement stuck behind a lock or a sick server fails instead of holding the
            // request (and a pool connection) forever.
            .options([("statement_timeout", "10s"), ("lock_timeout", "5s")]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            // No ping before each use: it would double the round trips of every request. A
            // connection that died (server restart) fails its next statement instead, which
            // answers 503 once and is replaced.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(Self {
            pool,
            gate: Gate::new(max_connections, acquire_timeout),
        })
    }

    async fn read_state(&self, phone: &PhoneNumber) -> Result<Option<RowState>, StorageError> {
        let row: Option<(String, bool, i32, OffsetDateTime, Vec<OffsetDateTime>)> =
            sqlx::query_as(READ_STATE)
                .bind(phone.as_ref())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(
            |(status, has_code, attempts, expires_at, send_times)| RowState {
                status,
                has_code,
                attempts: attempts.max(0) as u32,
                expires_at,
                send_times,
            },
        ))
    }

    async fn reserve(&self, send: &NewSend<'_>) -> Result<SendOutcome, StorageError> {
        let sql: &'static str = match send.kind {
            SendKind::Start => START_SEND_SQL.get_or_init(|| format!("{COUNTERS}{START_SEND}")),
            SendKind::Resend => RESEND_SQL.get_or_init(|| format!("{COUNTERS}{RESEND}")),
        };
        let window = window_start(send.now);
        let (ip_key, ip_max) = cap_binds(&send.ip_cap);
        let (country_key, country_max) = cap_binds(&send.country_cap);
        for _ in 0..RETRIES {
            let (id, ip_count, country_count): (Option<Uuid>, Option<i32>, Option<i32>) =
                sqlx::query_as(AssertSqlSafe(sql))
                    .bind(send.phone.as_ref())
                    .bind(send.new_verification_id)
                    .bind(send.code_hash.as_deref())
                    .bind(send.expires_at)
                    .bind(send.send_id)
                    .bind(send.now)
                    .bind(send.now - send.cooldown)
                    .bind(send.now - HOUR)
                    .bind(i64::from(send.max_sends_per_hour))
                    .bind(ip_key)
                    .bind(ip_max)
                    .bind(window)
                    .bind(country_key)
                    .bind(country_max)
                    .fetch_one(&self.pool)
                    .await?;
            let counted = counted_caps(send, ip_count.is_some(), country_count.is_some());
            if let Some(verification_id) = id {
                return Ok(SendOutcome::Reserved(Reservation {
                    verification_id,
                    send_id: send.send_id,
                    sent_at: send.now,
                    filled: filled_caps(send, ip_count, country_count),
                    counted,
                }));
            }
            self.uncount(window, &counted).await?;
            if let Some(outcome) = refused_cap(send, ip_count.is_some(), country_count.is_some()) {
                return Ok(outcome);
            }
            let state = self.read_state(send.phone).await?;
            if let Some(outcome) = classify_refused_send(send, state.as_ref()) {
                return Ok(outcome);
            }
        }
        Err(StorageError::refused_without_reason("send"))
    }

    async fn uncount(
        &self,
        window: OffsetDateTime,
        counted: &[(CapScope, String)],
    ) -> Result<(), StorageError> {
        if counted.is_empty() {
            return Ok(());
        }
        let ip = counted.iter().find(|(s, _)| *s == CapScope::ClientIp);
        let country = counted.iter().find(|(s, _)| *s == CapScope::Country);
        sqlx::query(UNCOUNT)
            .bind(window)
            .bind(ip.map(|(_, k)| k.as_str()).unwrap_or(""))
            .bind(ip.is_some())
            .bind(country.map(|(_, k)| k.as_str()).unwrap_or(""))
            .bind(country.is_some())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn check(&self, check: &CodeCheck<'_>) -> Result<CheckOutcome, StorageError> {
        for _ in 0..RETRIES {
            let row: Option<(Uuid, bool, i32)> = sqlx::query_as(CHECK_CODE)
                .bind(check.phone.as_ref())
                .bind(&check.code_hash)
                .bind(check.now)
                .bind(check.max_attempts as i32)
                .fetch_optional(&self.pool)
                .await?;
            match row {
                Some((verification_id, true, _)) => {
                    return Ok(CheckOutcome::Approved {
                        verification_id,
                        verified_at: check.now,
                    });
                }
                Some((_, false, attempts)) => {
                    return Ok(CheckOutcome::WrongCode {
                        attempts_remaining: check.max_attempts.saturating_sub(attempts as u32),
                    });
                }
                None => {
                    let state = self.read_state(check.phone).await?;
                    if let Some(outcome) =
                        classify_refused_check(check.now, check.max_attempts, true, state.as_ref())
                    {
                        return Ok(outcome);
                    }
                }
            }
        }
        Err(StorageError::refused_without_reason("check"))
    }
}

impl PostgresStorage {
    async fn take(
        &self,
        phone: &PhoneNumber,
        now: OffsetDateTime,
        max_attempts: u32,
    ) -> Result<AttemptOutcome, StorageError> {
        for _ in 0..RETRIES {
            let row: Option<(Uuid, i32)> = sqlx::query_as(TAKE_ATTEMPT)
                .bind(phone.as_ref())
                .bind(now)
                .bind(max_attempts as i32)
                .fetch_optional(&self.pool)
                .await?;
            if let Some((verification_id, attempts)) = row {
                return Ok(AttemptOutcome::Taken {
                    verification_id,
                    attempts_remaining: max_attempts.saturating_sub(attempts as u32),
                });
            }
            let state = self.read_state(phone).await?;
            if let Some(outcome) = classify_refused_check(now, max_attempts, false, state.as_ref())
            {
                return Ok(AttemptOutcome::Refused(outcome));
            }
        }
        Err(StorageError::refused_without_reason("attempt"))
    }

    async fn finish(
        &self,
        phone: &PhoneNumber,
        verification_id: Uuid,
        result: AttemptResult,
        now: OffsetDateTime,
        max_attempts: u32,
    ) -> Result<bool, StorageError> {
        let sql = match result {
            AttemptResult::Approved => APPROVE_ATTEMPT,
            AttemptResult::Refund => REFUND_ATTEMPT,
            AttemptResult::Exhausted => EXHAUST_ATTEMPTS,
        };
        let mut query = sqlx::query_scalar::<_, Uuid>(sql)
            .bind(phone.as_ref())
            .bind(verification_id)
            .bind(now);
        if result == AttemptResult::Exhausted {
            query = query.bind(max_attempts as i32);
        }
        Ok(query.fetch_optional(&self.pool).await?.is_some())
    }
}

impl PostgresStorage {
    async fn release(
        &self,
        phone: &PhoneNumber,
        reservation: &Reservation,
    ) -> Result<(), StorageError> {
        sqlx::query(RELEASE_SEND)
            .bind(phone.as_ref())
            .bind(reservation.send_id)
            .bind(reservation.sent_at)
            .execute(&self.pool)
            .await?;
        self.uncount(window_start(reservation.sent_at), &reservation.counted)
            .await
    }

    async fn purge_before(&self, before: OffsetDateTime) -> Result<u64, StorageError> {
        let mut total = 0;
        loop {
            let n = sqlx::query(PURGE)
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected();
            total += n;
            if n < 10_000 {
                sqlx::query(PURGE_COUNTERS)
                    .bind(window_start(before))
                    .execute(&self.pool)
                    .await?;
                return Ok(total);
            }
        }
    }

    async fn ping_db(&self) -> Result<(), StorageError> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }
}

super::impl_storage!(PostgresStorage, "postgres");
