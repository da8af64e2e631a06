//! `POST /api/sms/send`: custom messages for other backends, behind a bearer token.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{AppOptions, Backend, TWILIO_FROM, TestApp, spawn_app, spawn_app_with};
use crate::twilio_contract::{MESSAGES, assert_valid};

const TOKEN: &str = "internal-token-0123456789";

async fn post_sms(
    app: &TestApp,
    token: Option<&str>,
    body: serde_json::Value,
) -> crate::helpers::Answer {
    let mut request = app
        .api
        .post(format!("{}/api/sms/send", app.address))
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    TestApp::answer(response).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_does_not_exist_without_a_token() {
    let (app, _db) = spawn_app(Backend::Sqlite).await;

    let answer = post_sms(
        &app,
        Some(TOKEN),
        json!({"phone_number": "+12125551234", "message": "hi"}),
    )
    .await;

    answer.assert_problem(404, "not_found");
    assert!(app.sent_messages().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_token_is_401() {
    let (app, _db) = spawn_app_with(
        Backend::Sqlite,
        AppOptions::new().var("INTERNAL_API_TOKEN", TOKEN),
    )
    .await;
    let body = json!({"phone_number": "+12125551234", "message": "hi"});

    post_sms(&app, None, body.clone())
        .await
        .assert_problem(401, "unauthorized");
    post_sms(&app, Some("internal-token-0123456780"), body.clone())
        .await
        .assert_problem(401, "unauthorized");
    post_sms(&app, Some("x"), body.clone())
        .await
        .assert_problem(401, "unauthorized");
    post_sms(&app, Some(&format!("{TOKEN}x")), body)
        .await
        .assert_problem(401, "unauthorized");
    // Even a broken body gets 401 first: no information without the token.
    app.post_raw("/api/sms/send", Some("application/json"), "{")
        .await
        .assert_problem(401, "unauthorized");
    assert!(app.sent_messages().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_message_goes_through_messaging() {
    let (app, _db) = spawn_app_with(
        Backend::Sqlite,
        AppOptions::new().var("INTERNAL_API_TOKEN", TOKEN),
    )
    .await;

    let answer = post_sms(
        &app,
        Some(TOKEN),
        json!({"phone_number": "+1 212 555 1234", "message": "Your delivery is on the way!"}),
    )
    .await;

    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "sent");
    assert_eq!(answer.body["phone_number"], "+12125551234");
    assert_eq!(
        answer.body["provider_message_id"],
        "SM00000000000000000000000000000001"
    );
    let messages = app.sent_messages().await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["To"], "+12125551234");
    assert_eq!(messages[0]["From"], TWILIO_FROM);
    assert_eq!(messages[0]["Body"], "Your delivery is on the way!");
    assert_valid(&app.twilio_requests().await[0], MESSAGES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_length_and_number_are_checked() {
    let (app, _db) = spawn_app_with(
        Backend::Sqlite,
        AppOptions::new().var("INTERNAL_API_TOKEN", TOKEN),
    )
    .await;

    post_sms(
        &app,
        Some(TOKEN),
        json!({"phone_number": "+12125551234", "message": ""}),
    )
    .await
    .assert_problem(422, "invalid_request");
    // 1,600 characters is the limit; "é" is one character of two bytes (the body stays under 4 KiB).
    let ok = post_sms(
        &app,
        Some(TOKEN),
        json!({"phone_number": "+12125551234", "message": "é".repeat(1600)}),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);
    post_sms(
        &app,
        Some(TOKEN),
        json!({"phone_number": "+12125551234", "message": "x".repeat(1601)}),
    )
    .await
    .assert_problem(422, "invalid_request");
    post_sms(
        &app,
        Some(TOKEN),
        json!({"phone_number": "12125551234", "message": "hi"}),
    )
    .await
    .assert_problem(422, "invalid_phone_number");
    post_sms(&app, Some(TOKEN), json!({"phone_number": "+12125551234"}))
        .await
        .assert_problem(422, "invalid_request");
    assert_eq!(app.sent_messages().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_verify_provider_custom_messages_still_use_messaging() {
    let (app, _db) = spawn_app_with(
        Backend::Sqlite,
        AppOptions::new()
            .twilio_verify()
            .var("INTERNAL_API_TOKEN", TOKEN),
    )
    .await;

    let answer = post_sms(
        &app,
        Some(TOKEN),
        json!({"phone_number": "+12125551234", "message": "hello"}),
    )
    .await;

    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(app.sent_messages().await.len(), 1);
    assert_eq!(app.twilio_calls("/Verifications").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_console_provider_nothing_is_sent_and_there_is_no_id() {
    let (app, _db) = spawn_app_with(
        Backend::Sqlite,
        AppOptions::new()
            .var("SMS_PROVIDER", "console")
            .var("INTERNAL_API_TOKEN", TOKEN),
    )
    .await;

    let answer = post_sms(
        &app,
        Some(TOKEN),
        json!({"phone_number": "+12125551234", "message": "hello"}),
    )
    .await;

    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "sent");
    assert!(answer.body.get("provider_message_id").is_none());
    assert!(app.twilio_requests().await.is_empty());
}
