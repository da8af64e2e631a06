//! Storage behaviour that HTTP alone does not reach: purging, and what a broken row does.

use std::time::Duration;

use phone_verify::domain::PhoneNumber;
use phone_verify::storage::{self, CounterCap, FraudCheck, NewSend, SendKind, SendOutcome};
use time::OffsetDateTime;

use crate::both_backends;
use crate::helpers::{AppOptions, Backend, TestDatabase, spawn_on};

both_backends!(purge_deletes_only_rows_older_than_the_cutoff);
both_backends!(purge_takes_old_verification_records_and_messages_too);

fn new_send(phone: &PhoneNumber, kind: SendKind, now: OffsetDateTime) -> NewSend<'_> {
    NewSend {
        phone,
        kind,
        code_hash: Some(vec![1; 32]),
        now,
        expires_at: now + Duration::from_secs(600),
        cooldown: Duration::from_secs(30),
        max_sends_per_hour: 5,
        new_verification_id: uuid::Uuid::new_v4(),
        send_id: uuid::Uuid::new_v4(),
        channel: phone_verify::domain::Channel::Sms,
        provider: Some("twilio-messaging"),
        ip_cap: Some(CounterCap {
            key: "192.0.2.1".into(),
            max: 100,
        }),
        country_cap: Some(CounterCap {
            key: "US".into(),
            max: 100,
        }),
        fraud: Some(FraudCheck {
            enforce: false,
            prefix: phone.as_ref()[..7].to_string(),
            country: "US".into(),
            // 24-minute slots, as for the default window.
            slot: now.unix_timestamp() / (24 * 60),
            min_per_prefix: 20,
            min_per_country: 100,
            ratio: 1.0,
            block_until: now + Duration::from_secs(12 * 3600),
        }),
    }
}

/// A store with one number sent a code 25 hours ago and another now: one each side of a 24 h purge.
async fn sent_25_hours_ago_and_now(
    backend: Backend,
) -> (
    TestDatabase,
    storage::Storage,
    OffsetDateTime,
    [PhoneNumber; 2],
    Vec<uuid::Uuid>,
) {
    let db = TestDatabase::new(backend).await;
    let store = storage::connect(&db.url, 2, Duration::from_secs(3))
        .await
        .unwrap();
    let now = OffsetDateTime::now_utc();
    let old = PhoneNumber::parse("+12125551234").unwrap();
    let recent = PhoneNumber::parse("+12125551235").unwrap();
    let mut ids = Vec::new();
    for (phone, at) in [(&old, now - Duration::from_secs(25 * 3600)), (&recent, now)] {
        match store
            .reserve_send(new_send(phone, SendKind::Start, at))
            .await
            .unwrap()
        {
            SendOutcome::Reserved(r) => ids.push(r.verification_id),
            other => panic!("{other:?}"),
        }
    }
    (db, store, now, [old, recent], ids)
}

fn cutoff(now: OffsetDateTime) -> OffsetDateTime {
    now - Duration::from_secs(24 * 3600)
}

async fn purge_deletes_only_rows_older_than_the_cutoff(backend: Backend) {
    let (_db, store, now, [old, recent], _) = sent_25_hours_ago_and_now(backend).await;

    let purged = store.purge(cutoff(now), cutoff(now), now).await.unwrap();

    assert_eq!(purged, 1);
    // The recent row is still there: its cooldown still holds.
    let again = store
        .reserve_send(new_send(&recent, SendKind::Resend, now))
        .await
        .unwrap();
    assert!(matches!(again, SendOutcome::TooSoon { .. }), "{again:?}");
    // The old one is gone: a resend finds nothing to renew.
    let gone = store
        .reserve_send(new_send(&old, SendKind::Resend, now))
        .await
        .unwrap();
    assert_eq!(gone, SendOutcome::NotFound);
}

async fn purge_takes_old_verification_records_and_messages_too(backend: Backend) {
    let (_db, store, now, _, ids) = sent_25_hours_ago_and_now(backend).await;

    store.purge(cutoff(now), cutoff(now), now).await.unwrap();

    // The old verification and its message are gone; the recent one keeps its message.
    assert_eq!(
        store.verification_record(ids[0], now, 5).await.unwrap(),
        None
    );
    let kept = store
        .verification_record(ids[1], now, 5)
        .await
        .unwrap()
        .expect("the recent verification is kept");
    assert_eq!(kept.messages.len(), 1);
    let stats = store
        .message_stats(now - Duration::from_secs(48 * 3600))
        .await
        .unwrap();
    assert_eq!(
        stats.iter().map(|r| r.messages).sum::<u64>(),
        1,
        "{stats:?}"
    );
}

/// A bug (here: a corrupted row) answers 500 internal_error with a generic body: no SQL, no
/// driver message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_internal_failure_is_500_without_details() {
    let db = TestDatabase::new(Backend::Sqlite).await;
    let app = spawn_on(&db, AppOptions::new()).await;
    app.send_and_read_code("+12125551234").await;
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    sqlx::query("update verification set send_times = 'not json'")
        .execute(&pool)
        .await
        .unwrap();

    let answer = app.send_code("+12125551234").await;

    answer.assert_problem(500, "internal_error");
    assert_eq!(answer.body["detail"], "An internal error occurred.");
    let text = answer.body.to_string().to_lowercase();
    assert!(
        !text.contains("json") || !text.contains("malformed"),
        "{text}"
    );
    assert!(!text.contains("sql"), "{text}");
}
