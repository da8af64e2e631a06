use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    AttemptOutcome, AttemptResult, CapScope, CheckOutcome, CodeCheck, Gate, HOUR, NewSend, RETRIES,
    Reservation, RowState, SendKind, SendOutcome, StorageError, classify_refused_check,
    classify_refused_send, counted_caps, filled_caps, until_next_window, window_start,
};
use crate::domain::PhoneNumber;

/// The embedded store: the same table and statements as Postgres, with times as Unix milliseconds and
/// the send times as a JSON array. SQLite runs one writer at a time, which serializes the statements
/// below as the row lock does in Postgres.
#[derive(Debug, Clone)]
pub struct SqliteStorage {
    pool: SqlitePool,
    gate: Gate,
}

const START_SEND: &str = r#"
insert into verification
    (phone_number, verification_id, status, code_hash, attempts, expires_at, current_send_id,
     send_times, created_at, updated_at)
values ($1, $2, 'pending', $3, 0, $4, $5, json_array($6), $6, $6)
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
    approved_at = null,
    updated_at = $6
where not exists (select 1 from json_each(verification.send_times) where value > $7)
  and (select count(*) from json_each(verification.send_times) where value > $8) < $9
returning verification_id
"#;

const RESEND: &str = r#"
update verification set
    status = 'pending',
    code_hash = $3,
    attempts = 0,
    expires_at = $4,
    current_send_id = $5,
    send_times = (select json_group_array(value) from (
        select value from json_each(verification.send_times) where value > $8
        union all select $6)),
    updated_at = $6
where phone_number = $1
  and status <> 'approved'
  and not exists (select 1 from json_each(verification.send_times) where value > $7)
  and (select count(*) from json_each(verification.send_times) where value > $8) < $9
  and ($2 is null or 1)
returning verification_id
"#;

// SQLite runs the counters and the send as separate statements in one transaction; it has one
// writer at a time, and no network round trips to save.
const COUNT: &str = r#"
insert into send_counter (scope, key, window_start, count) values ($1, $2, $3, 1)
on conflict (scope, key, window_start) do update set count = count + 1 where count < $4
returning count
"#;

const UNCOUNT: &str = r#"
update send_counter set count = count - 1
where scope = $1 and key = $2 and window_start = $3 and count > 0
"#;

const RELEASE_SEND: &str = r#"
update verification set
    status = case when current_send_id = $2 then 'failed' else status end,
    code_hash = case when current_send_id = $2 then null else code_hash end,
    send_times = (select json_group_array(value) from json_each(verification.send_times)
                  where value <> $3),
    updated_at = $3
where phone_number = $1
"#;

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
    attempts = max(attempts - 1, 0), updated_at = $3
where phone_number = $1 and verification_id = $2 and status = 'pending'
returning verification_id
"#;

const REFUND_ATTEMPT: &str = r#"
update verification set attempts = max(attempts - 1, 0), updated_at = $3
where phone_number = $1 and verification_id = $2 and status = 'pending'
returning verification_id
"#;

const EXHAUST_ATTEMPTS: &str = r#"
update verification set attempts = max(attempts, $4), updated_at = $3
where phone_number = $1 and verification_id = $2 and status = 'pending'
returning verification_id
"#;

const READ_STATE: &str = r#"
select status, code_hash is not null as has_code, attempts, expires_at, send_times
from verification where phone_number = $1
"#;

const PURGE_COUNTERS: &str = "delete from send_counter where window_start < $1";

const PURGE: &str = r#"
delete from verification where phone_number in (
    select phone_number from verification where updated_at < $1 order by updated_at limit 10000
)
"#;

fn millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl SqliteStorage {
    pub async fn connect(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Self, StorageError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StorageError::Setup(format!("DATABASE_URL: {e}")))?
            .create_if_missing(true)
            // WAL lets readers (readiness checks) run beside the writer; NORMAL sync is durable
            // across process crashes, which is what a code store needs.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(acquire_timeout)
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
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(Self {
            pool,
            gate: Gate::new(max_connections, acquire_timeout),
        })
    }

    async fn read_state(&self, phone: &PhoneNumber) -> Result<Option<RowState>, StorageError> {
        let row: Option<(String, bool, i64, i64, String)> = sqlx::query_as(READ_STATE)
            .bind(phone.as_ref())
            .fetch_optional(&self.pool)
            .await?;
        let Some((status, has_code, attempts, expires_at, send_times)) = row else {
            return Ok(None);
        };
        let send_times: Vec<i64> = serde_json::from_str(&send_times)
            .map_err(|e| StorageError::Setup(format!("corrupt send_times: {e}")))?;
        Ok(Some(RowState {
            status,
            has_code,
            attempts: attempts.max(0) as u32,
            expires_at: from_millis(expires_at),
            send_times: send_times.into_iter().map(from_millis).collect(),
        }))
    }

    async fn reserve(&self, send: &NewSend<'_>) -> Result<SendOutcome, StorageError> {
        let sql = match send.kind {
            SendKind::Start => START_SEND,
            SendKind::Resend => RESEND,
        };
        let window = millis(window_start(send.now));
        for _ in 0..RETRIES {
            let mut tx = self.pool.begin().await?;
            let mut counts = [None, None];
            for (slot, (scope, cap)) in [
                (CapScope::ClientIp, &send.ip_cap),
                (CapScope::Country, &send.country_cap),
            ]
            .into_iter()
            .enumerate()
            {
                let Some(cap) = cap else { continue };
                let count: Option<i64> = sqlx::query_scalar(COUNT)
                    .bind(scope.as_str())
                    .bind(&cap.key)
                    .bind(window)
                    .bind(i64::from(cap.max))
                    .fetch_optional(&mut *tx)
                    .await?;
                if count.is_none() {
                    tx.rollback().await?;
                    return Ok(SendOutcome::CapReached {
                        scope,
                        retry_after: until_next_window(send.now),
                    });
                }
                counts[slot] = count;
            }
            let id: Option<Uuid> = sqlx::query_scalar(sql)
                .bind(send.phone.as_ref())
                .bind(send.new_verification_id)
                .bind(send.code_hash.as_deref())
                .bind(millis(send.expires_at))
                .bind(send.send_id)
                .bind(millis(send.now))
                .bind(millis(send.now - send.cooldown))
                .bind(millis(send.now - HOUR))
                .bind(i64::from(send.max_sends_per_hour))
                .fetch_optional(&mut *tx)
                .await?;
            let Some(verification_id) = id else {
                tx.rollback().await?;
                let state = self.read_state(send.phone).await?;
                if let Some(outcome) = classify_refused_send(send, state.as_ref()) {
                    return Ok(outcome);
                }
                continue;
            };
            tx.commit().await?;
            return Ok(SendOutcome::Reserved(Reservation {
                verification_id,
                send_id: send.send_id,
                sent_at: send.now,
                counted: counted_caps(send, counts[0].is_some(), counts[1].is_some()),
                filled: filled_caps(send, counts[0], counts[1]),
            }));
        }
        Err(StorageError::refused_without_reason("send"))
    }

    async fn check(&self, check: &CodeCheck<'_>) -> Result<CheckOutcome, StorageError> {
        for _ in 0..RETRIES {
            let row: Option<(Uuid, bool, i64)> = sqlx::query_as(CHECK_CODE)
                .bind(check.phone.as_ref())
                .bind(&check.code_hash)
                .bind(millis(check.now))
                .bind(i64::from(check.max_attempts))
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

impl SqliteStorage {
    async fn take(
        &self,
        phone: &PhoneNumber,
        now: OffsetDateTime,
        max_attempts: u32,
    ) -> Result<AttemptOutcome, StorageError> {
        for _ in 0..RETRIES {
            let row: Option<(Uuid, i64)> = sqlx::query_as(TAKE_ATTEMPT)
                .bind(phone.as_ref())
                .bind(millis(now))
                .bind(i64::from(max_attempts))
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
            .bind(millis(now));
        if result == AttemptResult::Exhausted {
            query = query.bind(i64::from(max_attempts));
        }
        Ok(query.fetch_optional(&self.pool).await?.is_some())
    }
}

impl SqliteStorage {
    async fn release(
        &self,
        phone: &PhoneNumber,
        reservation: &Reservation,
    ) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(RELEASE_SEND)
            .bind(phone.as_ref())
            .bind(reservation.send_id)
            .bind(millis(reservation.sent_at))
            .execute(&mut *tx)
            .await?;
        for (scope, key) in &reservation.counted {
            sqlx::query(UNCOUNT)
                .bind(scope.as_str())
                .bind(key)
                .bind(millis(window_start(reservation.sent_at)))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn purge_before(&self, before: OffsetDateTime) -> Result<u64, StorageError> {
        let mut total = 0;
        loop {
            let n = sqlx::query(PURGE)
                .bind(millis(before))
                .execute(&self.pool)
                .await?
                .rows_affected();
            total += n;
            if n < 10_000 {
                sqlx::query(PURGE_COUNTERS)
                    .bind(millis(window_start(before)))
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

super::impl_storage!(SqliteStorage, "sqlite");
