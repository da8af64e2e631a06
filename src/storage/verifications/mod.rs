//! The verification table: one row per phone number with its current verification (code hash,
//! attempts, expiry, status) and the times of its sends within the last hour. Every limit is a
//! condition of the one statement that changes the row, so concurrent requests and instances
//! serialize on that row. The send statements are in `send` (and a fallback's in `fallback`).

mod fallback;
mod send;
mod send_sqlite;

use std::sync::OnceLock;

use time::OffsetDateTime;
use uuid::Uuid;

use super::db::{Db, Param, Row, Sql, purge_sql};
use super::events::{self, MAX_ATTEMPTS_REACHED, PG_CHECK_EVENTS, VERIFICATION_APPROVED};
use super::fraud::{self, FraudCounted, PG_CHECK_FRAUD};
use super::outcomes::{
    AttemptOutcome, AttemptResult, CheckOutcome, CodeCheck, FraudKeys, RETRIES, RowState,
    classify_refused_check,
};
use super::tx::Tx;
use super::{Storage, StorageError};
use crate::domain::PhoneNumber;

// Compares and counts in one statement: the WHERE admits only a pending, unexpired code with attempts
// left, and the row lock makes concurrent checks take turns, so a code is approved once and wrong
// attempts stop at the maximum. SQLite runs it as it is (the record, message and event follow in
// its transaction, `check_sqlite`); Postgres runs it inside PG_CHECK_RECORDS's statement.
const CHECK_UPDATE: &str = r#"
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
returning verification_id, status = 'approved' as approved, attempts, current_send_id, fraud_slot
"#;

// Postgres: the same statement records the approval in the verification's record and marks its
// message converted: `with checked as (CHECK_UPDATE)`, these, the fraud guard's move of the
// message from unverified to verified (PG_CHECK_FRAUD) and the event (PG_CHECK_EVENTS) before the
// final select.
const PG_CHECK_RECORDS: &str = r#"
, approved_record as (
    update verification_record r set status = 'approved', approved_at = $3,
        attempts = c.attempts, updated_at = $3
    from checked c where c.approved and r.verification_id = c.verification_id
), converted as (
    update message m set verified_at = $3
    from checked c where c.approved and m.message_id = c.current_send_id
)"#;

const PG_CHECK_SELECT: &str = r#"
select verification_id, approved, attempts, current_send_id, fraud_slot from checked
"#;

static PG_CHECK_SQL: OnceLock<String> = OnceLock::new();

fn check_code_sql() -> Sql {
    let pg = PG_CHECK_SQL.get_or_init(|| {
        format!(
            "with checked as ({CHECK_UPDATE}){PG_CHECK_RECORDS}{PG_CHECK_FRAUD}{PG_CHECK_EVENTS}{PG_CHECK_SELECT}"
        )
    });
    Sql::each(pg.as_str(), CHECK_UPDATE)
}

const APPROVE_RECORD: Sql = Sql::same(
    r#"
update verification_record set status = 'approved', approved_at = $2, attempts = $3, updated_at = $2
where verification_id = $1
"#,
);

const CONVERT_MESSAGE: Sql = Sql::same("update message set verified_at = $2 where message_id = $1");

// Provider-kept codes (Twilio Verify): the row has no code hash; an attempt is counted before the
// provider is asked, under the same conditions as CHECK_CODE.
const TAKE_ATTEMPT: Sql = Sql::same(
    r#"
update verification set attempts = attempts + 1, updated_at = $2
where phone_number = $1
  and status = 'pending'
  and code_hash is null
  and expires_at > $2
  and attempts < $3
returning verification_id, attempts
"#,
);

// What the provider said about a taken attempt. `case`, not greatest() (Postgres) or max()
// (SQLite), so that one text serves both.
const APPROVE_ATTEMPT: Sql = Sql::same(
    r#"
update verification set status = 'approved', approved_at = $3,
    attempts = case when attempts > 0 then attempts - 1 else 0 end, updated_at = $3
where phone_number = $1 and verification_id = $2 and status = 'pending'
returning verification_id, attempts, current_send_id, fraud_slot
"#,
);

const REFUND_ATTEMPT: Sql = Sql::same(
    r#"
update verification set attempts = case when attempts > 0 then attempts - 1 else 0 end,
    updated_at = $3
where phone_number = $1 and verification_id = $2 and status = 'pending'
returning verification_id
"#,
);

// Only while attempts were left, so that the verification is locked (and its event written) once.
const EXHAUST_ATTEMPTS: Sql = Sql::same(
    r#"
update verification set attempts = $4, updated_at = $3
where phone_number = $1 and verification_id = $2 and status = 'pending' and attempts < $4
returning verification_id
"#,
);

const READ_STATE: Sql = Sql::same(
    r#"
select status, code_hash is not null as has_code, attempts, expires_at, send_times
from verification where phone_number = $1
"#,
);

const PURGE: Sql = purge_sql!("verification", "phone_number", "updated_at");

/// The row as it is now, to say why a statement refused it.
async fn read_state(db: &Db, phone: &PhoneNumber) -> Result<Option<RowState>, StorageError> {
    let Some(row) = db
        .fetch_optional(READ_STATE, &[Param::Text(phone.as_ref())])
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(RowState {
        status: row.get(0)?,
        has_code: row.get(1)?,
        attempts: row.int(2)?.max(0) as u32,
        expires_at: row.time(3)?,
        send_times: row.times(4)?,
    }))
}

impl Storage {
    /// Atomically compares a code with the pending one: approves it (single use) or counts a wrong
    /// attempt, never more than `max_attempts`.
    pub async fn check_code(&self, check: CodeCheck<'_>) -> Result<CheckOutcome, StorageError> {
        let _turn = self.gate.enter().await?;
        // $5 and $6 are PG_CHECK_FRAUD's, $7 PG_CHECK_EVENTS' (Postgres only).
        let params = [
            Param::Text(check.phone.as_ref()),
            Param::Bytes(Some(&check.code_hash)),
            Param::Time(check.now),
            Param::Int4(check.max_attempts as i32),
            Param::Text(&check.fraud_keys.prefix),
            Param::Text(&check.fraud_keys.country),
            Param::Bool(self.events),
        ];
        for _ in 0..RETRIES {
            let row = match self.db {
                Db::Postgres(_) => self.db.fetch_optional(check_code_sql(), &params).await?,
                Db::Sqlite(_) => self.check_sqlite(&check, &params[..4]).await?,
            };
            match row {
                Some(row) if row.get(1)? => {
                    return Ok(CheckOutcome::Approved {
                        verification_id: row.get(0)?,
                        verified_at: check.now,
                    });
                }
                Some(row) => {
                    return Ok(CheckOutcome::WrongCode {
                        attempts_remaining: check.max_attempts.saturating_sub(row.int(2)? as u32),
                    });
                }
                None => {
                    let state = read_state(&self.db, check.phone).await?;
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

    /// SQLite: CHECK_UPDATE and what an approval records, and the event, in one transaction.
    async fn check_sqlite(
        &self,
        check: &CodeCheck<'_>,
        params: &[Param<'_>],
    ) -> Result<Option<Row>, StorageError> {
        let mut tx = self.db.begin().await?;
        let row = tx.fetch_optional(check_code_sql(), params).await?;
        if let Some(row) = &row {
            let approved: bool = row.get(1)?;
            if approved {
                record_approval(&mut tx, row, &check.fraud_keys, check.now).await?;
            }
            let last_wrong = !approved && row.int(2)? >= i64::from(check.max_attempts);
            if self.events && (approved || last_wrong) {
                let kind = if approved {
                    VERIFICATION_APPROVED
                } else {
                    MAX_ATTEMPTS_REACHED
                };
                events::verification_event(&mut tx, kind, check.phone, row.get(0)?, check.now)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(row)
    }

    /// Takes one attempt on a provider-kept code, within the same limits as `check_code`.
    pub async fn take_attempt(
        &self,
        phone: &PhoneNumber,
        now: OffsetDateTime,
        max_attempts: u32,
    ) -> Result<AttemptOutcome, StorageError> {
        let _turn = self.gate.enter().await?;
        let params = [
            Param::Text(phone.as_ref()),
            Param::Time(now),
            Param::Int4(max_attempts as i32),
        ];
        for _ in 0..RETRIES {
            if let Some(row) = self.db.fetch_optional(TAKE_ATTEMPT, &params).await? {
                return Ok(AttemptOutcome::Taken {
                    verification_id: row.get(0)?,
                    attempts_remaining: max_attempts.saturating_sub(row.int(1)? as u32),
                });
            }
            let state = read_state(&self.db, phone).await?;
            if let Some(outcome) = classify_refused_check(now, max_attempts, false, state.as_ref())
            {
                return Ok(AttemptOutcome::Refused(outcome));
            }
        }
        Err(StorageError::refused_without_reason("attempt"))
    }

    /// Records what the provider said about an attempt, with its event, in one transaction. For
    /// `Approved`, returns false when the verification was no longer pending (another request
    /// approved it first).
    pub async fn finish_attempt(
        &self,
        phone: &PhoneNumber,
        verification_id: Uuid,
        result: AttemptResult,
        now: OffsetDateTime,
        max_attempts: u32,
        fraud_keys: &FraudKeys,
    ) -> Result<bool, StorageError> {
        let _turn = self.gate.enter().await?;
        let params = [
            Param::Text(phone.as_ref()),
            Param::Uuid(verification_id),
            Param::Time(now),
            Param::Int4(max_attempts as i32),
        ];
        // Only EXHAUST_ATTEMPTS has a $4; a last wrong code changes nothing but is an event.
        let (sql, used, event) = match result {
            AttemptResult::Approved => (APPROVE_ATTEMPT, 3, Some(VERIFICATION_APPROVED)),
            AttemptResult::Refund => (REFUND_ATTEMPT, 3, None),
            AttemptResult::Exhausted => (EXHAUST_ATTEMPTS, 4, Some(MAX_ATTEMPTS_REACHED)),
            AttemptResult::LastWrong if self.events => {
                let mut tx = self.db.begin().await?;
                events::verification_event(
                    &mut tx,
                    MAX_ATTEMPTS_REACHED,
                    phone,
                    verification_id,
                    now,
                )
                .await?;
                tx.commit().await?;
                return Ok(true);
            }
            AttemptResult::LastWrong => return Ok(true),
        };
        let mut tx = self.db.begin().await?;
        let row = tx.fetch_optional(sql, &params[..used]).await?;
        if let Some(row) = &row {
            if result == AttemptResult::Approved {
                record_approval(&mut tx, row, fraud_keys, now).await?;
            }
            if let Some(kind) = event.filter(|_| self.events) {
                events::verification_event(&mut tx, kind, phone, verification_id, now).await?;
            }
        }
        tx.commit().await?;
        Ok(row.is_some())
    }
}

/// Inside the approval's transaction (SQLite, Twilio Verify): the verification's record, its
/// converted message and the fraud guard's counts. `row` is (verification_id, …, attempts,
/// current_send_id, fraud_slot) as the approving statement returned it.
async fn record_approval(
    tx: &mut Tx,
    row: &Row,
    keys: &FraudKeys,
    now: OffsetDateTime,
) -> Result<(), StorageError> {
    let verification_id: Uuid = row.get(0)?;
    let n = row.columns();
    let attempts = row.int(n - 3)?;
    let send_id: Uuid = row.get(n - 2)?;
    let fraud_slot = row.opt_big(n - 1)?;
    let record = [
        Param::Uuid(verification_id),
        Param::Time(now),
        Param::Int4(attempts as i32),
    ];
    tx.execute(APPROVE_RECORD, &record).await?;
    tx.execute(CONVERT_MESSAGE, &[Param::Uuid(send_id), Param::Time(now)])
        .await?;
    if let Some(slot) = fraud_slot {
        let counted = FraudCounted {
            prefix: keys.prefix.clone(),
            country: keys.country.clone(),
            slot,
        };
        fraud::adjust_in(tx, &counted, -1, 1, now).await?;
    }
    Ok(())
}

/// Deletes rows untouched since `before`; returns how many went.
pub(super) async fn purge(db: &Db, before: OffsetDateTime) -> Result<u64, StorageError> {
    db.delete_in_batches(PURGE, before).await
}
