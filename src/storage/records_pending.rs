//! TEMPORARY: the message-record API of branch `msg`, to compile against until it is merged.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{Storage, StorageError};
use crate::domain::{Channel, MessageStatus, PhoneNumber};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerificationStatus {
    Pending,
    Approved,
    Expired,
    MaxAttemptsReached,
    Failed,
}

impl VerificationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Expired => "expired",
            Self::MaxAttemptsReached => "max_attempts_reached",
            Self::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct VerificationRecord {
    pub verification_id: Uuid,
    pub phone_number: String,
    pub status: VerificationStatus,
    pub created_at: OffsetDateTime,
    pub approved_at: Option<OffsetDateTime>,
    pub expires_at: OffsetDateTime,
    pub attempts: u32,
    pub messages: Vec<MessageRecord>,
}

#[derive(Debug, Clone)]
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

#[derive(Debug, Clone)]
pub struct StatsRow {
    pub country: String,
    pub channel: Channel,
    pub messages: u64,
    pub code_messages: u64,
    pub delivered: u64,
    pub undelivered: u64,
    pub rejected: u64,
    pub verified: u64,
}

impl Storage {
    pub async fn verification_record(
        &self,
        _id: Uuid,
        _now: OffsetDateTime,
        _max_attempts: u32,
    ) -> Result<Option<VerificationRecord>, StorageError> {
        Ok(None)
    }

    pub async fn verification_records_of(
        &self,
        _phone: &PhoneNumber,
        _since: OffsetDateTime,
        _now: OffsetDateTime,
        _max_attempts: u32,
    ) -> Result<Vec<VerificationRecord>, StorageError> {
        Ok(Vec::new())
    }

    pub async fn message_stats(
        &self,
        _since: OffsetDateTime,
    ) -> Result<Vec<StatsRow>, StorageError> {
        Ok(Vec::new())
    }
}
