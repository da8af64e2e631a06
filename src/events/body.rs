//! What a receiver gets: the `webhook-id` and the JSON body of an event, as the README shows them.
//! Made from the stored event alone, so every try of one event sends the same bytes.

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::storage::{FRAUD_BLOCKED, StoredEvent};

/// `{"type", "timestamp", "data"}`: the Standard Webhooks payload shape.
#[derive(Debug, Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    timestamp: OffsetDateTime,
    data: Data<'a>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Data<'a> {
    /// verification.approved and verification.max_attempts_reached: the verification and the
    /// message that carried its code (none for a test number).
    Verification {
        verification_id: Option<Uuid>,
        phone_number: Option<&'a str>,
        message_id: Option<Uuid>,
        channel: Option<&'a str>,
    },
    /// message.status: the new status (`verification_id` is null for a custom SMS).
    Message {
        message_id: Option<Uuid>,
        verification_id: Option<Uuid>,
        phone_number: Option<&'a str>,
        channel: Option<&'a str>,
        status: Option<&'a str>,
        error_code: Option<&'a str>,
    },
    /// fraud.blocked: the block as `GET /api/fraud/blocks` lists it.
    Block {
        scope: &'a str,
        key: &'a str,
        #[serde(with = "time::serde::rfc3339")]
        since: OffsetDateTime,
        #[serde(with = "time::serde::rfc3339")]
        until: OffsetDateTime,
        unverified: i64,
        verified: i64,
    },
}

/// The `webhook-id`: stable across tries, unique across databases.
pub fn webhook_id(event: &StoredEvent) -> String {
    format!("evt_{}", event.id.simple())
}

pub fn body(event: &StoredEvent) -> Vec<u8> {
    let data = match (&event.block, event.event_type.as_str()) {
        (Some(block), FRAUD_BLOCKED) => Data::Block {
            scope: &block.scope,
            key: &block.key,
            since: event.created_at,
            until: block.until,
            unverified: block.unverified,
            verified: block.verified,
        },
        (_, crate::storage::MESSAGE_STATUS) => Data::Message {
            message_id: event.message_id,
            verification_id: event.verification_id,
            phone_number: event.phone_number.as_deref(),
            channel: event.channel.as_deref(),
            status: event.status.as_deref(),
            error_code: event.error_code.as_deref(),
        },
        _ => Data::Verification {
            verification_id: event.verification_id,
            phone_number: event.phone_number.as_deref(),
            message_id: event.message_id,
            channel: event.channel.as_deref(),
        },
    };
    let envelope = Envelope {
        kind: &event.event_type,
        timestamp: event.created_at,
        data,
    };
    // Plain strings, numbers and RFC 3339 times: serializing cannot fail.
    serde_json::to_vec(&envelope).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use time::macros::datetime;

    use super::*;
    use crate::storage::{MESSAGE_STATUS, StoredBlock, VERIFICATION_APPROVED};

    fn event(event_type: &str) -> StoredEvent {
        StoredEvent {
            seq: 7,
            id: Uuid::from_u128(0x0b6e8a3c_6f1e_4c47_9d51_2b7f2f0d9a10),
            event_type: event_type.into(),
            verification_id: Some(Uuid::from_u128(1)),
            message_id: Some(Uuid::from_u128(2)),
            phone_number: Some("+12125551234".into()),
            channel: Some("sms".into()),
            status: None,
            error_code: None,
            block: None,
            created_at: datetime!(2026-12-01 12:00:00 UTC),
            attempts: 1,
        }
    }

    fn json_of(event: &StoredEvent) -> Value {
        serde_json::from_slice(&body(event)).unwrap()
    }

    #[test]
    fn an_approval_names_the_verification_and_its_message() {
        assert_eq!(
            json_of(&event(VERIFICATION_APPROVED)),
            json!({
                "type": "verification.approved",
                "timestamp": "2026-12-01T12:00:00Z",
                "data": {
                    "verification_id": "00000000-0000-0000-0000-000000000001",
                    "phone_number": "+12125551234",
                    "message_id": "00000000-0000-0000-0000-000000000002",
                    "channel": "sms"
                }
            })
        );
    }

    #[test]
    fn a_status_carries_the_status_and_the_error_code() {
        let mut e = event(MESSAGE_STATUS);
        e.status = Some("undelivered".into());
        e.error_code = Some("30003".into());
        e.verification_id = None;
        let data = &json_of(&e)["data"];
        assert_eq!(data["status"], "undelivered");
        assert_eq!(data["error_code"], "30003");
        assert!(data["verification_id"].is_null());
    }

    #[test]
    fn a_block_carries_its_scope_times_and_counts_and_no_number() {
        let mut e = event(FRAUD_BLOCKED);
        e.verification_id = None;
        e.message_id = None;
        e.phone_number = None;
        e.channel = None;
        e.block = Some(StoredBlock {
            scope: "prefix".into(),
            key: "+447400".into(),
            until: datetime!(2026-12-02 00:00:00 UTC),
            unverified: 20,
            verified: 0,
        });
        assert_eq!(
            json_of(&e)["data"],
            json!({
                "scope": "prefix", "key": "+447400", "since": "2026-12-01T12:00:00Z",
                "until": "2026-12-02T00:00:00Z", "unverified": 20, "verified": 0
            })
        );
    }

    #[test]
    fn the_webhook_id_is_the_events_own_and_the_body_is_the_same_each_time() {
        let e = event(VERIFICATION_APPROVED);
        assert_eq!(webhook_id(&e), "evt_0b6e8a3c6f1e4c479d512b7f2f0d9a10");
        assert_eq!(body(&e), body(&e.clone()));
    }
}
