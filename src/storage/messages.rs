//! The message table: one record per message handed to a provider, with a delivery status that
//! only moves forward. A code's first message is inserted by the send statement
//! (`verifications::send`); custom SMS and the further attempts of a failover here.

use std::sync::OnceLock;

use time::OffsetDateTime;
use uuid::Uuid;

use super::db::{Param, Row, Sql, purge_sql};
use super::events;
use super::{Storage, StorageError};
use crate::domain::{Channel, MessageStatus, PhoneNumber};

/// A message about to be handed to a provider: a custom SMS, or a code's next failover attempt.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub message_id: Uuid,
    pub phone: &'a PhoneNumber,
    pub channel: Channel,
    pub provider: &'static str,
    pub now: OffsetDateTime,
}

/// A code's next attempt, on the next provider: the verification it belongs to, and the message
/// of the attempt before it.
#[derive(Debug, Clone, Copy)]
pub struct FailoverAttempt {
    pub verification_id: Uuid,
    pub replaces: Uuid,
}

/// A status change that a report made (a duplicate or late report makes none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub message_id: Uuid,
    pub verification_id: Option<Uuid>,
    pub provider: String,
    pub channel: Channel,
    pub status: MessageStatus,
    pub accepted_at: Option<OffsetDateTime>,
    pub at: OffsetDateTime,
}

const INSERT_MESSAGE: Sql = Sql::same(
    r#"
insert into message (message_id, verification_id, phone_number, country, channel, provider, status,
                     is_code, created_at, status_updated_at)
values ($1, null, $2, $3, $4, $5, 'sending', $6, $7, $7)
"#,
);

const INSERT_CODE_MESSAGE: Sql = Sql::same(
    r#"
insert into message (message_id, verification_id, phone_number, country, channel, provider, status,
                     is_code, created_at, status_updated_at)
values ($1, $7, $2, $3, $4, $5, 'sending', true, $6, $6)
"#,
);

// The code now travels in the new attempt, so an approval converts that message (approvals mark
// the message named by current_send_id), and a release after the last attempt voids the code. Only
// if no newer send replaced it meanwhile: that send's code is not ours to move or void.
const MOVE_CURRENT_SEND: Sql = Sql::same(
    "update verification set current_send_id = $2 where phone_number = $1 and current_send_id = $3",
);

// The never-moves-back rule as a condition of the update ($2 the new status): a higher rank only,
// and `read` only after `delivered`. Rank order as `MessageStatus::rank`.
macro_rules! forward_only {
    () => {
        r#"
  and case when $2 = 'read' then status = 'delivered'
           else (case $2 when 'sending' then 0 when 'accepted' then 1 when 'sent' then 2
                         when 'read' then 4 else 3 end)
              > (case status when 'sending' then 0 when 'accepted' then 1 when 'sent' then 2
                             when 'read' then 4 else 3 end) end
"#
    };
}

// Each update returns the change it made; for a status that events report, its event is written
// with it (`events::update_with_status_event` reads these columns).
macro_rules! returning_change {
    () => {
        "returning message_id, verification_id, channel, accepted_at, phone_number, error_code, status\n"
    };
}

// The provider's answer to the send itself (and the locale the message was sent for, $6).
const ANSWERED: Sql = Sql::same(concat!(
    r#"
update message set status = $2,
    provider_message_id = coalesce($3, provider_message_id),
    error_code = coalesce($4, error_code),
    locale = coalesce($6, locale),
    accepted_at = case when $2 in ('accepted', 'sent') then $5 else accepted_at end,
    status_updated_at = $5
where message_id = $1"#,
    forward_only!(),
    returning_change!()
));

// A delivery report: found by the provider's id, applied only forward, so of two instances that
// receive the same callback one changes the row and the other finds nothing to change.
const REPORTED: Sql = Sql::same(concat!(
    r#"
update message set status = $2,
    error_code = coalesce($4, error_code),
    accepted_at = coalesce(accepted_at, $5),
    status_updated_at = $5
where provider = $1 and provider_message_id = $3"#,
    forward_only!(),
    returning_change!()
));

// A report from our own gateway names our message id; the provider condition keeps it to the
// webhook's messages.
const REPORTED_BY_ID: Sql = Sql::same(concat!(
    r#"
update message set status = $2,
    error_code = coalesce($4, error_code),
    accepted_at = coalesce(accepted_at, $5),
    status_updated_at = $5
where message_id = $1 and provider = $3"#,
    forward_only!(),
    returning_change!()
));

static ANSWERED_EVENT: OnceLock<String> = OnceLock::new();
static REPORTED_EVENT: OnceLock<String> = OnceLock::new();
static REPORTED_BY_ID_EVENT: OnceLock<String> = OnceLock::new();

// What a fallback needs of the code message that did not arrive: where it went, in which locale.
const FALLBACK_SOURCE: Sql = Sql::same(
    "select phone_number, locale from message where message_id = $1 and verification_id is not null",
);

const PURGE: Sql = purge_sql!("message", "message_id", "created_at");

/// A code message that was not delivered, as a fallback reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackSource {
    pub phone_number: String,
    pub locale: Option<String>,
}

impl Storage {
    /// Records a custom SMS before it goes out (`sending`).
    pub async fn record_message(&self, m: &NewMessage<'_>) -> Result<(), StorageError> {
        let _turn = self.gate.enter().await?;
        let params = [
            Param::Uuid(m.message_id),
            Param::Text(m.phone.as_ref()),
            Param::Text(m.phone.region().unwrap_or("XX")),
            Param::Text(m.channel.as_str()),
            Param::Text(m.provider),
            Param::Bool(false),
            Param::Time(m.now),
        ];
        self.db.execute(INSERT_MESSAGE, &params).await.map(drop)
    }

    /// Records a code's next failover attempt before it goes out (`sending`), and makes it the
    /// verification's current send. Two statements: a failover is rare, and the record alone, if
    /// the second were lost, still shows the attempt.
    pub async fn record_failover_attempt(
        &self,
        m: &NewMessage<'_>,
        attempt: FailoverAttempt,
    ) -> Result<(), StorageError> {
        let _turn = self.gate.enter().await?;
        let params = [
            Param::Uuid(m.message_id),
            Param::Text(m.phone.as_ref()),
            Param::Text(m.phone.region().unwrap_or("XX")),
            Param::Text(m.channel.as_str()),
            Param::Text(m.provider),
            Param::Time(m.now),
            Param::Uuid(attempt.verification_id),
        ];
        self.db.execute(INSERT_CODE_MESSAGE, &params).await?;
        let moved = [
            Param::Text(m.phone.as_ref()),
            Param::Uuid(m.message_id),
            Param::Uuid(attempt.replaces),
        ];
        self.db.execute(MOVE_CURRENT_SEND, &moved).await.map(drop)
    }

    /// What the provider answered to the send: taken (with its id), refused, or unavailable.
    pub async fn message_answered(
        &self,
        message_id: Uuid,
        status: MessageStatus,
        provider_message_id: Option<&str>,
        error_code: Option<&str>,
        locale: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(), StorageError> {
        let _turn = self.gate.enter().await?;
        let params = [
            Param::Uuid(message_id),
            Param::Text(status.as_str()),
            Param::OptText(provider_message_id),
            Param::OptText(error_code),
            Param::Time(now),
            Param::OptText(locale),
        ];
        // A send that ended unavailable leaves its message `failed`: a change that events report.
        if self.events && events::reported(status) {
            let update = (ANSWERED, &ANSWERED_EVENT);
            return self
                .update_message(update, &params, status, now)
                .await
                .map(drop);
        }
        self.db.execute(ANSWERED, &params).await.map(drop)
    }

    /// The number and locale of a code message, for its fallback; `None` for an unknown id or a
    /// custom SMS. A read before the fallback's send, which decides nothing: the send's own
    /// statement checks that the message is still the verification's current send.
    pub async fn fallback_source(
        &self,
        message_id: Uuid,
    ) -> Result<Option<FallbackSource>, StorageError> {
        let _turn = self.gate.enter().await?;
        let Some(row) = self
            .db
            .fetch_optional(FALLBACK_SOURCE, &[Param::Uuid(message_id)])
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(FallbackSource {
            phone_number: row.get(0)?,
            locale: row.get(1)?,
        }))
    }

    /// A delivery report from a provider callback; applies only if it moves the status forward.
    /// `None`: unknown (provider, provider_message_id), or no change.
    pub async fn report_status(
        &self,
        provider: &str,
        provider_message_id: &str,
        status: MessageStatus,
        error_code: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Option<StatusChange>, StorageError> {
        let _turn = self.gate.enter().await?;
        let params = [
            Param::Text(provider),
            Param::Text(status.as_str()),
            Param::Text(provider_message_id),
            Param::OptText(error_code),
            Param::Time(now),
        ];
        let row = self
            .update_message((REPORTED, &REPORTED_EVENT), &params, status, now)
            .await?;
        status_change(row, provider, status, now)
    }

    /// A delivery report that names our own `message_id` (the webhook provider's); applies only
    /// if it moves the status of one of `provider`'s messages forward. `None`: unknown, or no change.
    pub async fn report_status_by_id(
        &self,
        message_id: Uuid,
        provider: &str,
        status: MessageStatus,
        error_code: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Option<StatusChange>, StorageError> {
        let _turn = self.gate.enter().await?;
        let params = [
            Param::Uuid(message_id),
            Param::Text(status.as_str()),
            Param::Text(provider),
            Param::OptText(error_code),
            Param::Time(now),
        ];
        let update = (REPORTED_BY_ID, &REPORTED_BY_ID_EVENT);
        let row = self.update_message(update, &params, status, now).await?;
        status_change(row, provider, status, now)
    }

    /// Runs a message update that returns the change, with its message.status event when events
    /// are on and the new status is one they report.
    async fn update_message(
        &self,
        (update, with_event): (Sql, &'static OnceLock<String>),
        params: &[Param<'_>],
        status: MessageStatus,
        now: OffsetDateTime,
    ) -> Result<Option<Row>, StorageError> {
        if self.events && events::reported(status) {
            events::update_with_status_event(&self.db, update, with_event, params, now).await
        } else {
            self.db.fetch_optional(update, params).await
        }
    }
}

/// The change a report statement made, from its `returning` row.
fn status_change(
    row: Option<Row>,
    provider: &str,
    status: MessageStatus,
    now: OffsetDateTime,
) -> Result<Option<StatusChange>, StorageError> {
    let Some(row) = row else {
        return Ok(None);
    };
    let channel: String = row.get(2)?;
    Ok(Some(StatusChange {
        message_id: row.get(0)?,
        verification_id: row.get(1)?,
        provider: provider.to_string(),
        channel: Channel::parse(&channel).unwrap_or(Channel::Sms),
        status,
        accepted_at: row.opt_time(3)?,
        at: now,
    }))
}

/// Deletes message records created before `before`, by the `created_at` index.
pub(super) async fn purge(db: &super::db::Db, before: OffsetDateTime) -> Result<u64, StorageError> {
    db.delete_in_batches(PURGE, before).await
}
