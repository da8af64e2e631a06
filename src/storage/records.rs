//! Reading verifications and their messages back: the lookups by id and by number, and the
//! per-country, per-channel counts of `/api/stats`. The `verification_record` table is written by
//! the send and approval statements (`verifications`).

use std::collections::HashMap;

use time::OffsetDateTime;
use uuid::Uuid;

use super::db::{Param, Row, Sql, purge_sql};
use super::{Storage, StorageError};
use crate::domain::{Channel, MessageStatus, PhoneNumber};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerificationStatus {
    Pending,
    Approved,
    Expired,
    MaxAttemptsReached,
    /// Its last send failed: no code is usable.
    Failed,
}

impl VerificationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VerificationStatus::Pending => "pending",
            VerificationStatus::Approved => "approved",
            VerificationStatus::Expired => "expired",
            VerificationStatus::MaxAttemptsReached => "max_attempts_reached",
            VerificationStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationRecord {
    pub verification_id: Uuid,
    pub phone_number: String,
    pub status: VerificationStatus,
    pub created_at: OffsetDateTime,
    pub approved_at: Option<OffsetDateTime>,
    pub expires_at: OffsetDateTime,
    pub attempts: u32,
    /// Oldest first.
    pub messages: Vec<MessageRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub message_id: Uuid,
    pub channel: Channel,
    pub provider: String,
    pub provider_message_id: Option<String>,
    pub status: MessageStatus,
    pub error_code: Option<String>,
    pub created_at: OffsetDateTime,
    pub status_updated_at: OffsetDateTime,
    pub fallback_of: Option<Uuid>,
}

/// Message records of one destination country and channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsRow {
    pub country: String,
    pub channel: Channel,
    pub messages: u64,
    pub code_messages: u64,
    /// Delivered or read.
    pub delivered: u64,
    /// Undelivered, or failed after the provider accepted it.
    pub undelivered: u64,
    /// Refused by the provider outright.
    pub rejected: u64,
    /// Code messages whose code was approved.
    pub verified: u64,
}

// The record, and the number's row while it still holds this verification: that row has the live
// status, attempts and expiry; a record whose row moved on was approved.
macro_rules! record_select {
    () => {
        r#"
select r.verification_id, r.phone_number, r.created_at, r.status, r.attempts, r.expires_at,
       r.approved_at, v.status, v.attempts, v.expires_at, v.approved_at
from verification_record r left join verification v on v.verification_id = r.verification_id
"#
    };
}

const BY_ID: Sql = Sql::same(concat!(record_select!(), "where r.verification_id = $1"));

const BY_NUMBER: Sql = Sql::same(concat!(
    record_select!(),
    "where r.phone_number = $1 and r.created_at >= $2 order by r.created_at desc"
));

const MESSAGES_OF_ONE: Sql = Sql::same(
    r#"
select verification_id, message_id, channel, provider, provider_message_id, status, error_code,
       created_at, status_updated_at, fallback_of
from message where verification_id = $1 order by created_at
"#,
);

const MESSAGES_OF_NUMBER: Sql = Sql::same(
    r#"
select verification_id, message_id, channel, provider, provider_message_id, status, error_code,
       created_at, status_updated_at, fallback_of
from message where verification_id in (
    select verification_id from verification_record where phone_number = $1 and created_at >= $2
) order by created_at
"#,
);

const STATS: Sql = Sql::same(
    r#"
select country, channel, count(*),
    sum(case when is_code then 1 else 0 end),
    sum(case when status in ('delivered', 'read') then 1 else 0 end),
    sum(case when status = 'undelivered' or (status = 'failed' and accepted_at is not null)
             then 1 else 0 end),
    sum(case when status = 'rejected' then 1 else 0 end),
    sum(case when verified_at is not null then 1 else 0 end)
from message where created_at >= $1
group by country, channel order by country, channel
"#,
);

const PURGE: Sql = purge_sql!("verification_record", "verification_id", "updated_at");

/// Deletes verification records untouched since `before`, by the `updated_at` index.
pub(super) async fn purge(db: &super::db::Db, before: OffsetDateTime) -> Result<u64, StorageError> {
    db.delete_in_batches(PURGE, before).await
}

impl Storage {
    pub async fn verification_record(
        &self,
        id: Uuid,
        now: OffsetDateTime,
        max_attempts: u32,
    ) -> Result<Option<VerificationRecord>, StorageError> {
        let _turn = self.gate.enter().await?;
        let Some(row) = self.db.fetch_optional(BY_ID, &[Param::Uuid(id)]).await? else {
            return Ok(None);
        };
        let mut record = read_record(&row, now, max_attempts)?;
        for row in self
            .db
            .fetch_all(MESSAGES_OF_ONE, &[Param::Uuid(id)])
            .await?
        {
            record.messages.push(read_message(&row)?.1);
        }
        Ok(Some(record))
    }

    /// The number's verifications created since `since`, newest first.
    pub async fn verification_records_of(
        &self,
        phone: &PhoneNumber,
        since: OffsetDateTime,
        now: OffsetDateTime,
        max_attempts: u32,
    ) -> Result<Vec<VerificationRecord>, StorageError> {
        let _turn = self.gate.enter().await?;
        let params = [Param::Text(phone.as_ref()), Param::Time(since)];
        let mut records = Vec::new();
        for row in self.db.fetch_all(BY_NUMBER, &params).await? {
            records.push(read_record(&row, now, max_attempts)?);
        }
        let mut messages: HashMap<Uuid, Vec<MessageRecord>> = HashMap::new();
        for row in self.db.fetch_all(MESSAGES_OF_NUMBER, &params).await? {
            let (verification_id, message) = read_message(&row)?;
            messages.entry(verification_id).or_default().push(message);
        }
        for record in &mut records {
            record.messages = messages.remove(&record.verification_id).unwrap_or_default();
        }
        Ok(records)
    }

    /// Message records created since `since`, by destination country and channel.
    pub async fn message_stats(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<StatsRow>, StorageError> {
        let _turn = self.gate.enter().await?;
        let count = |row: &Row, i| row.big(i).map(|n| n.max(0) as u64);
        let mut rows = Vec::new();
        for row in self.db.fetch_all(STATS, &[Param::Time(since)]).await? {
            let channel: String = row.get(1)?;
            rows.push(StatsRow {
                country: row.get(0)?,
                channel: Channel::parse(&channel).unwrap_or(Channel::Sms),
                messages: count(&row, 2)?,
                code_messages: count(&row, 3)?,
                delivered: count(&row, 4)?,
                undelivered: count(&row, 5)?,
                rejected: count(&row, 6)?,
                verified: count(&row, 7)?,
            });
        }
        Ok(rows)
    }
}

fn read_record(
    row: &Row,
    now: OffsetDateTime,
    max_attempts: u32,
) -> Result<VerificationRecord, StorageError> {
    let live_status: Option<String> = row.get(7)?;
    let (status, attempts, expires_at, approved_at) = match live_status {
        Some(status) => (status, row.int(8)?, row.time(9)?, row.opt_time(10)?),
        None => (row.get(3)?, row.int(4)?, row.time(5)?, row.opt_time(6)?),
    };
    let attempts = attempts.max(0) as u32;
    let status = match status.as_str() {
        "approved" => VerificationStatus::Approved,
        "failed" => VerificationStatus::Failed,
        _ if attempts >= max_attempts => VerificationStatus::MaxAttemptsReached,
        _ if expires_at <= now => VerificationStatus::Expired,
        _ => VerificationStatus::Pending,
    };
    Ok(VerificationRecord {
        verification_id: row.get(0)?,
        phone_number: row.get(1)?,
        status,
        created_at: row.time(2)?,
        approved_at,
        expires_at,
        attempts,
        messages: Vec::new(),
    })
}

fn read_message(row: &Row) -> Result<(Uuid, MessageRecord), StorageError> {
    let channel: String = row.get(2)?;
    let status: String = row.get(5)?;
    Ok((
        row.get(0)?,
        MessageRecord {
            message_id: row.get(1)?,
            channel: Channel::parse(&channel).unwrap_or(Channel::Sms),
            provider: row.get(3)?,
            provider_message_id: row.get(4)?,
            status: MessageStatus::parse(&status).unwrap_or(MessageStatus::Sending),
            error_code: row.get(6)?,
            created_at: row.time(7)?,
            status_updated_at: row.time(8)?,
            fallback_of: row.get(9)?,
        },
    ))
}
