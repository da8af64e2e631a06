//! `POST /webhooks/sms/status`: the gateway's delivery reports, signed per Standard Webhooks with
//! the provider's secret, applied only forward and only to the webhook's own messages.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::gateway::{FakeGateway, gateway_sign};
use crate::helpers::{Answer, Backend, TestApp, spawn_app};
use crate::receiver_signature::unix_now;
use crate::webhook_provider::{messages_of, spawn};

const PATH: &str = "/webhooks/sms/status";
const PHONE: &str = "+12125551234";

both_backends!(
    a_signed_report_moves_the_status_forward_only,
    a_wrong_or_missing_signature_is_403_and_changes_nothing,
    a_stale_timestamp_is_refused_like_a_bad_signature,
    an_unknown_message_id_is_taken_and_ignored,
    a_signed_body_that_is_not_a_report_is_422,
    a_report_cannot_touch_another_providers_message,
    the_path_does_not_exist_without_the_webhook_provider,
);

/// Posts `body` with the Standard Webhooks headers; `signature` overrides the right one.
async fn post_report(
    app: &TestApp,
    body: &Value,
    timestamp: i64,
    signature: Option<&str>,
) -> Answer {
    let bytes = body.to_string();
    let id = "msg_report_1";
    let good = gateway_sign(id, timestamp, bytes.as_bytes());
    let response = app
        .api
        .post(format!("{}{PATH}", app.address))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature.unwrap_or(&good))
        .body(bytes)
        .send()
        .await
        .unwrap();
    TestApp::answer(response).await
}

async fn report(app: &TestApp, message_id: &Value, status: &str) -> Answer {
    let body = json!({"message_id": message_id, "status": status, "error_code": null});
    post_report(app, &body, unix_now(), None).await
}

/// Sends a code through the gateway; returns (verification_id, message_id).
async fn sent(app: &TestApp) -> (Value, Value) {
    let answer = app.send_code(PHONE).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let id = answer.body["verification_id"].clone();
    let message_id = messages_of(app, &id).await[0]["message_id"].clone();
    (id, message_id)
}

async fn status_of(app: &TestApp, verification_id: &Value) -> Value {
    messages_of(app, verification_id).await[0]["status"].clone()
}

async fn a_signed_report_moves_the_status_forward_only(backend: Backend) {
    let gateway = FakeGateway::start().await;
    let (app, _db) = spawn(backend, gateway.options()).await;
    let (id, message_id) = sent(&app).await;

    assert_eq!(
        report(&app, &message_id, "delivered").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(status_of(&app, &id).await, "delivered");

    // The first final status wins; a later one is taken and changes nothing.
    assert_eq!(
        report(&app, &message_id, "undelivered").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(status_of(&app, &id).await, "delivered");
}

async fn a_wrong_or_missing_signature_is_403_and_changes_nothing(backend: Backend) {
    let gateway = FakeGateway::start().await;
    let (app, _db) = spawn(backend, gateway.options()).await;
    let (id, message_id) = sent(&app).await;
    let body = json!({"message_id": message_id, "status": "failed"});
    let now = unix_now();
    let tampered = json!({"message_id": message_id, "status": "delivered"});
    let signature_of_other_body =
        gateway_sign("msg_report_1", now, tampered.to_string().as_bytes());

    for signature in [
        signature_of_other_body.as_str(),
        "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "",
    ] {
        post_report(&app, &body, now, Some(signature))
            .await
            .assert_problem(403, "invalid_signature");
    }
    let unsigned = app.post_json(PATH, &body).await;
    unsigned.assert_problem(403, "invalid_signature");
    assert_eq!(status_of(&app, &id).await, "accepted");
}

async fn a_stale_timestamp_is_refused_like_a_bad_signature(backend: Backend) {
    let gateway = FakeGateway::start().await;
    let (app, _db) = spawn(backend, gateway.options()).await;
    let (id, message_id) = sent(&app).await;
    let body = json!({"message_id": message_id, "status": "delivered"});

    for timestamp in [unix_now() - 301 - 5, unix_now() + 301 + 5] {
        // Correctly signed, but outside the 5 minutes either way.
        post_report(&app, &body, timestamp, None)
            .await
            .assert_problem(403, "invalid_signature");
    }
    assert_eq!(status_of(&app, &id).await, "accepted");
    let fresh = post_report(&app, &body, unix_now() - 60, None).await;
    assert_eq!(fresh.status, StatusCode::NO_CONTENT);
    assert_eq!(status_of(&app, &id).await, "delivered");
}

async fn an_unknown_message_id_is_taken_and_ignored(backend: Backend) {
    let gateway = FakeGateway::start().await;
    let (app, _db) = spawn(backend, gateway.options()).await;

    for unknown in [json!(uuid::Uuid::new_v4()), json!("not-our-id")] {
        assert_eq!(
            report(&app, &unknown, "delivered").await.status,
            StatusCode::NO_CONTENT
        );
    }
}

async fn a_signed_body_that_is_not_a_report_is_422(backend: Backend) {
    let gateway = FakeGateway::start().await;
    let (app, _db) = spawn(backend, gateway.options()).await;
    let (id, message_id) = sent(&app).await;

    for body in [
        json!({"status": "delivered"}),
        json!({"message_id": message_id, "status": "sent"}),
        json!({"message_id": message_id, "status": "lost in the post"}),
    ] {
        post_report(&app, &body, unix_now(), None)
            .await
            .assert_problem(422, "invalid_request");
    }
    assert_eq!(status_of(&app, &id).await, "accepted");
}

async fn a_report_cannot_touch_another_providers_message(backend: Backend) {
    let gateway = FakeGateway::start().await;
    let options = gateway
        .options()
        .var("SMS_PROVIDER", "twilio-messaging,webhook");
    let (app, _db) = spawn(backend, options).await;
    // Twilio is up, so the code goes through Twilio: its record is not the gateway's to report on.
    let (id, message_id) = sent(&app).await;
    assert_eq!(
        messages_of(&app, &id).await[0]["provider"],
        "twilio-messaging"
    );

    assert_eq!(
        report(&app, &message_id, "delivered").await.status,
        StatusCode::NO_CONTENT
    );

    assert_eq!(status_of(&app, &id).await, "accepted");
}

async fn the_path_does_not_exist_without_the_webhook_provider(backend: Backend) {
    let (app, _db) = spawn_app(backend).await;

    let answer = report(&app, &json!(uuid::Uuid::new_v4()), "delivered").await;

    answer.assert_problem(404, "not_found");
}
