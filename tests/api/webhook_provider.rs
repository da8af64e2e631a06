//! `SMS_PROVIDER=webhook`: the signed request a gateway gets, and each answer a gateway can give,
//! read back through the API (codes come from what the gateway received).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

use crate::both_backends;
use crate::gateway::{FakeGateway, accepted};
use crate::helpers::{AppOptions, Backend, TestApp, TestDatabase, spawn_app_with};

pub const TOKEN: &str = "internal-token-for-gateway-tests";
const PHONE: &str = "+12125551234";

both_backends!(
    a_code_goes_to_the_gateway_signed_with_our_ids,
    an_answer_without_provider_message_id_is_still_sent,
    a_gateway_verdict_on_the_number_is_422_and_not_retried,
    another_4xx_is_502_with_the_http_status_as_provider_code,
    a_5xx_then_2xx_is_one_sms_with_one_webhook_id,
    a_gateway_always_failing_is_503_and_leaves_no_usable_code,
    a_gateway_that_times_out_is_503,
    a_custom_sms_goes_to_the_gateway_without_a_code,
);

pub async fn spawn(backend: Backend, options: AppOptions<'_>) -> (TestApp, TestDatabase) {
    spawn_app_with(backend, options.var("INTERNAL_API_TOKEN", TOKEN)).await
}

/// The messages of a verification, from the internal lookup.
pub async fn messages_of(app: &TestApp, verification_id: &Value) -> Vec<Value> {
    let path = format!("/api/verifications/{}", verification_id.as_str().unwrap());
    let answer = app.get_with_token(&path, Some(TOKEN)).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.body["messages"].as_array().unwrap().clone()
}

/// The number's only verification, from the by-number lookup.
pub async fn only_verification(app: &TestApp, phone: &str) -> Value {
    let path = format!(
        "/api/verifications?phone_number={}",
        phone.replace('+', "%2B")
    );
    let answer = app.get_with_token(&path, Some(TOKEN)).await;
    let list = answer.body["verifications"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "{list:?}");
    list[0].clone()
}

async fn a_code_goes_to_the_gateway_signed_with_our_ids(backend: Backend) {
    let gateway = FakeGateway::start().await;
    let (app, _db) = spawn(backend, gateway.options()).await;

    let answer = app.send_code(PHONE).await;

    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let received = gateway.received().await;
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert!(request.signed, "the gateway's own HMAC check passes");
    let body = &request.body;
    assert_eq!(body["type"], "verification_code");
    assert_eq!(body["to"], PHONE);
    assert_eq!(body["channel"], "sms");
    assert!(body["locale"].is_null());
    assert_eq!(body["verification_id"], answer.body["verification_id"]);
    assert_eq!(
        body["message_id"],
        request.id.as_str(),
        "webhook-id is the message id"
    );
    let code = body["code"].as_str().unwrap();
    assert_eq!(body["body"], format!("Your verification code is {code}"));

    let messages = messages_of(&app, &answer.body["verification_id"]).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["message_id"], body["message_id"]);
    assert_eq!(messages[0]["provider"], "webhook");
    assert_eq!(messages[0]["provider_message_id"], "gw-1");
    assert_eq!(messages[0]["status"], "accepted");
    assert_eq!(app.verify(PHONE, code).await.status, StatusCode::OK);
}

async fn an_answer_without_provider_message_id_is_still_sent(backend: Backend) {
    let gateway = FakeGateway::start().await;
    gateway.answer_next([accepted(None)]);
    let (app, _db) = spawn(backend, gateway.options()).await;

    let answer = app.send_code(PHONE).await;

    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let messages = messages_of(&app, &answer.body["verification_id"]).await;
    assert!(messages[0]["provider_message_id"].is_null());
    assert_eq!(messages[0]["status"], "accepted");
    let code = gateway.last_code_for(PHONE).await;
    assert_eq!(app.verify(PHONE, &code).await.status, StatusCode::OK);
}

async fn a_gateway_verdict_on_the_number_is_422_and_not_retried(backend: Backend) {
    let gateway = FakeGateway::start().await;
    gateway.answer_next([ResponseTemplate::new(400)
        .set_body_json(json!({"error": "invalid_phone_number", "message": "not mobile"}))]);
    let (app, _db) = spawn(backend, gateway.options()).await;

    app.send_code(PHONE)
        .await
        .assert_problem(422, "invalid_phone_number");

    assert_eq!(gateway.received().await.len(), 1);
    let code = gateway.last_code_for(PHONE).await;
    app.verify(PHONE, &code)
        .await
        .assert_problem(404, "verification_not_found");
    let verification = only_verification(&app, PHONE).await;
    assert_eq!(verification["messages"][0]["status"], "rejected");
    assert_eq!(verification["messages"][0]["error_code"], "400");
}

async fn another_4xx_is_502_with_the_http_status_as_provider_code(backend: Backend) {
    let gateway = FakeGateway::start().await;
    gateway.answer_next([ResponseTemplate::new(403).set_body_json(json!({"error": "no credit"}))]);
    let (app, _db) = spawn(backend, gateway.options()).await;

    let answer = app.send_code(PHONE).await;

    answer.assert_problem(502, "sms_rejected");
    assert_eq!(answer.body["provider_code"], 403);
    assert_eq!(
        gateway.received().await.len(),
        1,
        "a refusal is not retried"
    );
    // The failed send did not count: the next one is not held back by the cooldown.
    assert_eq!(app.send_code(PHONE).await.status, StatusCode::OK);
}

async fn a_5xx_then_2xx_is_one_sms_with_one_webhook_id(backend: Backend) {
    let gateway = FakeGateway::start().await;
    gateway.answer_next([ResponseTemplate::new(503), ResponseTemplate::new(500)]);
    let (app, _db) = spawn(backend, gateway.options()).await;

    let answer = app.send_code(PHONE).await;

    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let received = gateway.received().await;
    assert_eq!(received.len(), 3, "two retries (the default), then taken");
    assert!(received.iter().all(|r| r.signed));
    assert!(
        received.iter().all(|r| r.id == received[0].id),
        "one webhook-id"
    );
    assert!(
        received.iter().all(|r| r.body == received[0].body),
        "one message"
    );
    let messages = messages_of(&app, &answer.body["verification_id"]).await;
    assert_eq!(messages.len(), 1, "one record: retries are one message");
    let code = gateway.last_code_for(PHONE).await;
    assert_eq!(app.verify(PHONE, &code).await.status, StatusCode::OK);
}

async fn a_gateway_always_failing_is_503_and_leaves_no_usable_code(backend: Backend) {
    let gateway = FakeGateway::start().await;
    gateway.answer_next((0..10).map(|_| ResponseTemplate::new(502)));
    let (app, _db) = spawn(backend, gateway.options().var("SMS_WEBHOOK_MAX_RETRIES", 1)).await;

    let answer = app.send_code(PHONE).await;

    answer.assert_problem(503, "sms_provider_unavailable");
    assert!(answer.retry_after_header().is_some());
    assert_eq!(
        gateway.received().await.len(),
        2,
        "SMS_WEBHOOK_MAX_RETRIES=1"
    );
    let code = gateway.last_code_for(PHONE).await;
    app.verify(PHONE, &code)
        .await
        .assert_problem(404, "verification_not_found");
    let verification = only_verification(&app, PHONE).await;
    assert_eq!(verification["status"], "failed");
    assert_eq!(verification["messages"][0]["status"], "failed");
}

async fn a_gateway_that_times_out_is_503(backend: Backend) {
    let gateway = FakeGateway::start().await;
    let slow = || accepted(Some("late")).set_delay(Duration::from_secs(5));
    gateway.answer_next([slow(), slow()]);
    let options = gateway
        .options()
        .var("SMS_WEBHOOK_TIMEOUT_MS", 200)
        .var("SMS_WEBHOOK_MAX_RETRIES", 1);
    let (app, _db) = spawn(backend, options).await;

    app.send_code(PHONE)
        .await
        .assert_problem(503, "sms_provider_unavailable");

    // Both tries reached the gateway, with the same id; neither answer was waited for.
    let received = gateway.received().await;
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].id, received[1].id);
    let verification = only_verification(&app, PHONE).await;
    assert_eq!(verification["messages"][0]["status"], "failed");
}

async fn a_custom_sms_goes_to_the_gateway_without_a_code(backend: Backend) {
    let gateway = FakeGateway::start().await;
    gateway.answer_next([accepted(Some("gw-custom"))]);
    let (app, _db) = spawn(backend, gateway.options()).await;

    let answer = app
        .api
        .post(format!("{}/api/sms/send", app.address))
        .bearer_auth(TOKEN)
        .json(&json!({"phone_number": PHONE, "message": "Your parcel is here"}))
        .send()
        .await
        .unwrap();
    let answer = TestApp::answer(answer).await;

    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.body["provider_message_id"], "gw-custom");
    let received = gateway.received().await;
    assert_eq!(received.len(), 1);
    let body = &received[0].body;
    assert!(received[0].signed);
    assert_eq!(body["type"], "message");
    assert_eq!(body["body"], "Your parcel is here");
    assert_eq!(body["message_id"], answer.body["message_id"]);
    assert!(body["verification_id"].is_null());
    assert!(body.get("code").is_none(), "{body}");
}
