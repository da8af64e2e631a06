//! Outgoing events: each type as the receiver gets it (signature checked by the receiver's own
//! HMAC), nothing written without EVENTS_WEBHOOK_URL, a receiver failing or down then up, restarts,
//! two instances, order per verification, and the age limit.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::event_receiver::{EventReceiver, closed_port, events_to, with_events};
use crate::gateway::{FakeGateway, gateway_sign};
use crate::helpers::{
    AppOptions, Backend, TestApp, TestDatabase, spawn_app_with, spawn_on, wrong_code,
};
use crate::receiver_signature::unix_now;
use crate::webhook_provider::{TOKEN, messages_of};

const PHONE: &str = "+12125551234";
const OTHER: &str = "+12125559876";

both_backends!(
    an_approval_is_delivered_signed_with_the_verification_and_its_message,
    the_wrong_code_that_uses_the_last_attempt_is_delivered_once,
    a_delivery_report_is_delivered_once_as_message_status,
    a_send_that_fails_is_delivered_as_message_status_failed,
    a_fraud_block_is_delivered_as_fraud_blocked,
    twilio_verify_approvals_and_lockouts_are_delivered_too,
    nothing_is_written_without_events_webhook_url,
    a_receiver_that_fails_gets_the_same_event_again_until_it_takes_it,
    a_receiver_that_is_down_gets_the_event_once_it_is_up,
    pending_events_are_delivered_after_a_restart,
    a_shutdown_lets_the_delivery_in_flight_finish,
    events_of_one_verification_arrive_in_the_order_they_happened,
    an_event_past_its_max_age_is_dropped_and_counted,
);

/// (events in the outbox, the most tries any of them had), read from the database itself.
async fn outbox(db: &TestDatabase) -> (i64, i64) {
    let sql = "select count(*), cast(coalesce(max(attempts), 0) as bigint) from event";
    if db.url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let row: (i64, i64) = sqlx::query_as(sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        row
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let row: (i64, i64) = sqlx::query_as(sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        row
    }
}

/// Waits until the outbox says `done(count, max attempts)`.
async fn wait_for_outbox(db: &TestDatabase, what: &str, done: impl Fn(i64, i64) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (count, attempts) = outbox(db).await;
        if done(count, attempts) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: outbox {count} events, {attempts} tries"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends a code to `phone`, verifies it; returns the verification id.
async fn approve(app: &TestApp, phone: &str) -> Value {
    let code = app.send_and_read_code(phone).await;
    let answer = app.verify(phone, &code).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.body["verification_id"].clone()
}

async fn metrics_text(app: &TestApp) -> String {
    let response = app.api.get(format!("{}/metrics", app.address)).send().await;
    response.unwrap().text().await.unwrap()
}

async fn metric(app: &TestApp, series: &str) -> f64 {
    metrics_text(app)
        .await
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().unwrap())
        .unwrap_or(0.0)
}

fn is_rfc3339(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
    })
}

async fn an_approval_is_delivered_signed_with_the_verification_and_its_message(backend: Backend) {
    let receiver = EventReceiver::start().await;
    let options = events_to(&receiver.url()).var("INTERNAL_API_TOKEN", TOKEN);
    let (app, _db) = spawn_app_with(backend, options).await;

    let code = app.send_and_read_code(PHONE).await;
    let id = app.verify(PHONE, &code).await.body["verification_id"].clone();

    let event = receiver.wait_for_kind("verification.approved").await;
    assert!(event.signed);
    assert!(
        event.id.starts_with("evt_") && event.id.len() == 36,
        "{}",
        event.id
    );
    let message_id = messages_of(&app, &id).await[0]["message_id"].clone();
    assert!(is_rfc3339(&event.body["timestamp"]), "{}", event.raw);
    assert_eq!(
        event.body,
        json!({
            "type": "verification.approved",
            "timestamp": event.body["timestamp"],
            "data": {"verification_id": id, "phone_number": PHONE, "message_id": message_id,
                     "channel": "sms"}
        })
    );
    assert!(
        !event.raw.contains(&code),
        "the code is in the event: {}",
        event.raw
    );
}

async fn the_wrong_code_that_uses_the_last_attempt_is_delivered_once(backend: Backend) {
    let receiver = EventReceiver::start().await;
    let options = events_to(&receiver.url()).var("MAX_VERIFY_ATTEMPTS", 3);
    let (app, _db) = spawn_app_with(backend, options).await;
    let code = app.send_and_read_code(PHONE).await;

    for remaining in [2, 1, 0] {
        let answer = app.verify(PHONE, &wrong_code(&code)).await;
        assert_eq!(
            answer.body["attempts_remaining"], remaining,
            "{:?}",
            answer.body
        );
    }
    // Refused: locked already, so no second event.
    app.verify(PHONE, &wrong_code(&code))
        .await
        .assert_problem(429, "max_attempts_reached");
    approve(&app, OTHER).await;

    // The approval came after: once it is in, the first event would be too, twice or not.
    let taken = receiver
        .wait_for("the marker", |t| {
            t.iter().any(|d| d.kind() == "verification.approved")
        })
        .await;
    let locked: Vec<_> = taken
        .iter()
        .filter(|d| d.kind() == "verification.max_attempts_reached")
        .collect();
    assert_eq!(locked.len(), 1, "{taken:#?}");
    let data = &locked[0].body["data"];
    assert_eq!(data["phone_number"], PHONE);
    assert_eq!(data["channel"], "sms");
    assert!(data["verification_id"].is_string() && data["message_id"].is_string());
    assert!(!locked[0].raw.contains(&code));
}

/// A code through the webhook provider, and its gateway's signed report on it.
async fn report(app: &TestApp, message_id: &Value, status: &str) {
    let body = json!({"message_id": message_id, "status": status, "error_code": null}).to_string();
    let timestamp = unix_now();
    let response = app
        .api
        .post(format!("{}/webhooks/sms/status", app.address))
        .header("content-type", "application/json")
        .header("webhook-id", "msg_report")
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            gateway_sign("msg_report", timestamp, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

async fn a_delivery_report_is_delivered_once_as_message_status(backend: Backend) {
    let receiver = EventReceiver::start().await;
    let gateway = FakeGateway::start().await;
    let options = with_events(gateway.options(), &receiver.url()).var("INTERNAL_API_TOKEN", TOKEN);
    let (app, _db) = spawn_app_with(backend, options).await;
    let answer = app.send_code(PHONE).await;
    let id = answer.body["verification_id"].clone();
    let message_id = messages_of(&app, &id).await[0]["message_id"].clone();

    report(&app, &message_id, "delivered").await;
    // Changes nothing (the first final status wins): no event.
    report(&app, &message_id, "undelivered").await;
    let code = gateway.last_code_for(PHONE).await;
    assert_eq!(app.verify(PHONE, &code).await.status, StatusCode::OK);

    let taken = receiver
        .wait_for("the approval", |t| {
            t.iter().any(|d| d.kind() == "verification.approved")
        })
        .await;
    let statuses: Vec<_> = taken
        .iter()
        .filter(|d| d.kind() == "message.status")
        .collect();
    assert_eq!(statuses.len(), 1, "{taken:#?}");
    assert!(statuses[0].signed);
    assert_eq!(
        statuses[0].body["data"],
        json!({"message_id": message_id, "verification_id": id, "phone_number": PHONE,
               "channel": "sms", "status": "delivered", "error_code": null})
    );
    // Same verification: the status came first, and is delivered first.
    assert_eq!(taken[0].kind(), "message.status", "{taken:#?}");
}

async fn a_send_that_fails_is_delivered_as_message_status_failed(backend: Backend) {
    let receiver = EventReceiver::start().await;
    let gateway = FakeGateway::start().await;
    gateway.answer_next([wiremock::ResponseTemplate::new(503)]);
    let options = with_events(gateway.options(), &receiver.url())
        .var("SMS_WEBHOOK_MAX_RETRIES", 0)
        .var("INTERNAL_API_TOKEN", TOKEN);
    let (app, _db) = spawn_app_with(backend, options).await;

    app.send_code(PHONE)
        .await
        .assert_problem(503, "sms_provider_unavailable");

    let event = receiver.wait_for_kind("message.status").await;
    assert_eq!(event.body["data"]["status"], "failed");
    assert_eq!(event.body["data"]["phone_number"], PHONE);
    assert!(event.body["data"]["verification_id"].is_string());
}

async fn a_fraud_block_is_delivered_as_fraud_blocked(backend: Backend) {
    // Blocks count in the fraud tests' process-wide metrics: take turns with them.
    let _turn = crate::fraud::METRICS.lock().await;
    let receiver = EventReceiver::start().await;
    let options = events_to(&receiver.url())
        .var("FRAUD_GUARD", "enforce")
        .var("FRAUD_MIN_UNVERIFIED_PER_PREFIX", 2);
    let (app, _db) = spawn_app_with(backend, options).await;

    for (phone, status) in [
        ("+12125550001", 200u16),
        ("+12125550002", 200),
        ("+12125550003", 403),
    ] {
        assert_eq!(app.send_code(phone).await.status.as_u16(), status);
    }

    let event = receiver.wait_for_kind("fraud.blocked").await;
    let data = &event.body["data"];
    assert_eq!(data["scope"], "prefix");
    assert_eq!(data["key"], "+121255");
    assert_eq!(
        (data["unverified"].clone(), data["verified"].clone()),
        (json!(2), json!(0))
    );
    assert!(
        is_rfc3339(&data["since"]) && is_rfc3339(&data["until"]),
        "{}",
        event.raw
    );
    assert!(!event.raw.contains("+1212555000"), "{}", event.raw);
}

async fn twilio_verify_approvals_and_lockouts_are_delivered_too(backend: Backend) {
    let receiver = EventReceiver::start().await;
    let options = with_events(AppOptions::new().twilio_verify(), &receiver.url())
        .var("MAX_VERIFY_ATTEMPTS", 2);
    let (app, _db) = spawn_app_with(backend, options).await;
    for phone in [PHONE, OTHER] {
        assert_eq!(app.send_code(phone).await.status, StatusCode::OK);
    }

    let code = app.verify_code_for(PHONE);
    assert_eq!(app.verify(PHONE, &code).await.status, StatusCode::OK);
    let other = app.verify_code_for(OTHER);
    for remaining in [1, 0] {
        let answer = app.verify(OTHER, &wrong_code(&other)).await;
        assert_eq!(
            answer.body["attempts_remaining"], remaining,
            "{:?}",
            answer.body
        );
    }

    let taken = receiver.wait_for("both events", |t| t.len() >= 2).await;
    let by_number = |phone: &str| -> Vec<&str> {
        taken
            .iter()
            .filter(|d| d.body["data"]["phone_number"] == phone)
            .map(|d| d.kind())
            .collect()
    };
    assert_eq!(by_number(PHONE), ["verification.approved"]);
    assert_eq!(by_number(OTHER), ["verification.max_attempts_reached"]);
}

async fn nothing_is_written_without_events_webhook_url(backend: Backend) {
    let (app, db) = spawn_app_with(backend, AppOptions::new().var("MAX_VERIFY_ATTEMPTS", 1)).await;

    approve(&app, PHONE).await;
    let code = app.send_and_read_code(OTHER).await;
    app.verify(OTHER, &wrong_code(&code)).await;

    assert_eq!(outbox(&db).await.0, 0);
}

async fn a_receiver_that_fails_gets_the_same_event_again_until_it_takes_it(backend: Backend) {
    let receiver = EventReceiver::start().await;
    receiver.answer_next([503, 500]);
    let (app, db) = spawn_app_with(backend, events_to(&receiver.url())).await;

    approve(&app, PHONE).await;

    receiver.wait_for("the third try", |t| !t.is_empty()).await;
    let tries = receiver.deliveries();
    assert_eq!(
        tries.iter().map(|d| d.answered).collect::<Vec<_>>(),
        [503, 500, 204]
    );
    assert!(
        tries
            .iter()
            .all(|d| d.id == tries[0].id && d.raw == tries[0].raw && d.signed)
    );
    wait_for_outbox(&db, "the delivered event removed", |count, _| count == 0).await;
}

async fn a_receiver_that_is_down_gets_the_event_once_it_is_up(backend: Backend) {
    let port = closed_port();
    let url = format!(
        "http://127.0.0.1:{port}{}",
        crate::event_receiver::EVENTS_PATH
    );
    let (app, db) = spawn_app_with(backend, events_to(&url)).await;
    approve(&app, PHONE).await;
    wait_for_outbox(&db, "a failed try", |count, tries| count == 1 && tries >= 1).await;

    let receiver = EventReceiver::start_on(port).await;

    let event = receiver.wait_for_kind("verification.approved").await;
    assert_eq!(event.body["data"]["phone_number"], PHONE);
    assert_eq!(receiver.deliveries().len(), 1);
    wait_for_outbox(&db, "the delivered event removed", |count, _| count == 0).await;
}

async fn pending_events_are_delivered_after_a_restart(backend: Backend) {
    let port = closed_port();
    let url = format!(
        "http://127.0.0.1:{port}{}",
        crate::event_receiver::EVENTS_PATH
    );
    let db = TestDatabase::new(backend).await;
    let first = spawn_on(&db, events_to(&url)).await;
    let id = approve(&first, PHONE).await;
    wait_for_outbox(&db, "a failed try", |count, tries| count == 1 && tries >= 1).await;
    let clock = first.clock.clone();
    first.stop().await;

    let receiver = EventReceiver::start_on(port).await;
    let second = spawn_on(&db, events_to(&url).clock(clock)).await;

    let event = receiver.wait_for_kind("verification.approved").await;
    assert_eq!(event.body["data"]["verification_id"], id);
    second.stop().await;
}

async fn a_shutdown_lets_the_delivery_in_flight_finish(backend: Backend) {
    let receiver = EventReceiver::start().await;
    receiver.hold_next(Duration::from_secs(1));
    let (app, db) = spawn_app_with(backend, events_to(&receiver.url())).await;
    approve(&app, PHONE).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.deliveries().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the event never reached the receiver"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    app.stop().await;

    // It got its answer and was removed: nothing is left to send twice.
    assert_eq!(outbox(&db).await.0, 0);
    assert_eq!(receiver.deliveries().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgres_database_deliver_each_event_once() {
    let receiver = EventReceiver::start().await;
    let db = TestDatabase::new(Backend::Postgres).await;
    let a = spawn_on(&db, events_to(&receiver.url())).await;
    let b = spawn_on(&db, events_to(&receiver.url()).clock(a.clock.clone())).await;

    let phones: Vec<String> = (0..12)
        .map(|n| format!("+1212555{:04}", 7000 + n))
        .collect();
    let approvals = phones.iter().enumerate().map(|(n, phone)| {
        let app = if n % 2 == 0 { &a } else { &b };
        approve(app, phone)
    });
    let ids = futures_util::future::join_all(approvals).await;
    receiver.wait_for("all twelve", |t| t.len() >= 12).await;
    // A marker after them all: a second delivery of any of them would have had its chance.
    approve(&b, "+12125558000").await;
    let taken = receiver.wait_for("the marker", |t| t.len() >= 13).await;

    assert_eq!(taken.len(), 13, "{taken:#?}");
    let mut webhook_ids: Vec<_> = taken.iter().map(|d| d.id.clone()).collect();
    webhook_ids.sort();
    webhook_ids.dedup();
    assert_eq!(webhook_ids.len(), 13);
    for id in &ids {
        let n = taken
            .iter()
            .filter(|d| d.body["data"]["verification_id"] == *id)
            .count();
        assert_eq!(n, 1, "{id}");
    }
    a.stop().await;
    b.stop().await;
}

async fn events_of_one_verification_arrive_in_the_order_they_happened(backend: Backend) {
    let receiver = EventReceiver::start().await;
    // The first event is refused once: the second, written meanwhile, must wait for it.
    receiver.answer_next([503]);
    let options = events_to(&receiver.url()).var("MAX_VERIFY_ATTEMPTS", 2);
    let (app, _db) = spawn_app_with(backend, options).await;
    let code = app.send_and_read_code(PHONE).await;
    for _ in 0..2 {
        app.verify(PHONE, &wrong_code(&code)).await;
    }
    app.clock.advance(Duration::from_secs(31));
    assert_eq!(app.resend_code(PHONE).await.status, StatusCode::OK);
    let code = app.last_code_for(PHONE).await;
    assert_eq!(app.verify(PHONE, &code).await.status, StatusCode::OK);

    receiver.wait_for("both", |t| t.len() >= 2).await;
    let deliveries = receiver.deliveries();
    let tries: Vec<(&str, u16)> = deliveries.iter().map(|d| (d.kind(), d.answered)).collect();
    let (locked, approved) = ("verification.max_attempts_reached", "verification.approved");
    assert_eq!(tries, [(locked, 503), (locked, 204), (approved, 204)]);
    let taken = receiver.taken();
    assert_eq!(
        taken[0].body["data"]["verification_id"],
        taken[1].body["data"]["verification_id"]
    );
}

async fn an_event_past_its_max_age_is_dropped_and_counted(backend: Backend) {
    let receiver = EventReceiver::start().await;
    receiver.answer_next([503; 1000]);
    let options = events_to(&receiver.url()).var("EVENTS_MAX_AGE_HOURS", 1);
    let (app, db) = spawn_app_with(backend, options).await;
    let series = r#"events_dropped_total{type="verification.approved"}"#;
    let before = metric(&app, series).await;
    approve(&app, PHONE).await;
    wait_for_outbox(&db, "a failed try", |count, tries| count == 1 && tries >= 1).await;

    app.clock.advance(Duration::from_secs(3_601));

    wait_for_outbox(&db, "the event dropped", |count, _| count == 0).await;
    assert!(metric(&app, series).await >= before + 1.0);
    assert!(receiver.taken().is_empty());
    let text = metrics_text(&app).await;
    assert!(
        text.lines().any(|l| l.starts_with("events_pending ")),
        "{text}"
    );
    assert!(text.contains(r#"events_failed_total{type="verification.approved"}"#));
}
