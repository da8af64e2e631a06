//! TEMPORARY: the signature of engineer A's `Storage::report_status`, until branch `msg` lands.

use time::OffsetDateTime;
use uuid::Uuid;

use super::{Storage, StorageError};
use crate::domain::{Channel, MessageStatus};

pub struct StatusChange {
    pub message_id: Uuid,
    pub verification_id: Option<Uuid>,
    pub provider: String,
    pub channel: Channel,
    pub status: MessageStatus,
    pub accepted_at: Option<OffsetDateTime>,
    pub at: OffsetDateTime,
}

impl Storage {
    pub async fn report_status(
        &self,
        _provider: &str,
        _provider_message_id: &str,
        _status: MessageStatus,
        _error_code: Option<&str>,
        _now: OffsetDateTime,
    ) -> Result<Option<StatusChange>, StorageError> {
        Ok(None)
    }
}
