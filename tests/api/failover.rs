//! `SMS_PROVIDER` lists: a send that finds one provider unavailable is made on the next with the
//! same code and a record of its own; a refusal is final; both down is 503 with no usable code.

use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

use crate::both_backends;
use crate::gateway::FakeGateway;
use crate::helpers::{Backend, TestApp};
use crate::webhook_provider::{TOKEN, messages_of, only_verification, spawn};

const PHONE: &str = "+12125551234";
const WEBHOOK_SENT: &str = r#"sms_sends_total{provider="webhook",outcome="sent"}"#;
const TWILIO_UNAVAILABLE: &str =
    r#"sms_sends_total{provider="twilio-messaging",outcome="unavailable"}"#;

/// The recorder is one per process: tests that compare a count before and after take turns.
static METRICS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

both_backends!(
    twilio_down_sends_the_same_code_through_the_webhook,
    the_gateway_down_sends_through_twilio,
    both_down_is_503_and_leaves_no_usable_code,
    a_refusal_is_not_failed_over,
    a_custom_sms_fails_over_too,
);

async fn twilio_answers(app: &TestApp, response: ResponseTemplate) {
    app.twilio.reset().await;
    Mock::given(method("POST"))
        .respond_with(response)
        .mount(&app.twilio)
        .await;
}

async fn metric(app: &TestApp, series: &str) -> f64 {
    let response = app.api.get(format!("{}/metrics", app.address)).send();
    let text = response.await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

/// (provider, status) of each message, sorted: attempts may share a millisecond.
fn attempts(messages: &[Value]) -> Vec<(String, String)> {
    let mut list: Vec<_> = messages
        .iter()
        .map(|m| {
            let text = |k: &str| m[k].as_str().unwrap().to_string();
            (text("provider"), text("status"))
        })
        .collect();
    list.sort();
    list
}

fn pair(provider: &str, status: &str) -> (String, String) {
    (provider.to_string(), status.to_string())
}

async fn twilio_down_sends_the_same_code_through_the_webhook(backend: Backend) {
    let _turn = METRICS.lock().await;
    let gateway = FakeGateway::start().await;
    let options = gateway
        .options()
        .var("SMS_PROVIDER", "twilio-messaging,webhook");
    let (app, _db) = spawn(backend, options).await;
    twilio_answers(&app, ResponseTemplate::new(500)).await;
    let (sent_before, down_before) = (
        metric(&app, WEBHOOK_SENT).await,
        metric(&app, TWILIO_UNAVAILABLE).await,
    );

    let answer = app.send_code(PHONE).await;

    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let code = gateway.last_code_for(PHONE).await;
    assert_eq!(app.last_code_for(PHONE).await, code, "the same code");
    let messages = messages_of(&app, &answer.body["verification_id"]).await;
    assert_eq!(
        attempts(&messages),
        [
            pair("twilio-messaging", "failed"),
            pair("webhook", "accepted")
        ]
    );
    let webhook_message = messages
        .iter()
        .find(|m| m["provider"] == "webhook")
        .unwrap();
    assert_eq!(
        webhook_message["message_id"],
        gateway.received().await[0].body["message_id"]
    );
    assert_eq!(metric(&app, WEBHOOK_SENT).await, sent_before + 1.0);
    assert!(metric(&app, TWILIO_UNAVAILABLE).await > down_before);

    assert_eq!(app.verify(PHONE, &code).await.status, StatusCode::OK);
    // The approval converts one message: the one that carried the code.
    let stats = app.get_with_token("/api/stats", Some(TOKEN)).await;
    assert_eq!(stats.body["totals"]["messages"], 2, "{:?}", stats.body);
    assert_eq!(stats.body["totals"]["verified"], 1, "{:?}", stats.body);
}

async fn the_gateway_down_sends_through_twilio(backend: Backend) {
    let gateway = FakeGateway::start().await;
    gateway.answer_next([ResponseTemplate::new(503)]);
    let options = gateway
        .options()
        .var("SMS_PROVIDER", "webhook,twilio-messaging")
        .var("SMS_WEBHOOK_MAX_RETRIES", 0);
    let (app, _db) = spawn(backend, options).await;

    let answer = app.send_code(PHONE).await;

    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let code = app.last_code_for(PHONE).await;
    assert_eq!(gateway.last_code_for(PHONE).await, code);
    let verification = only_verification(&app, PHONE).await;
    assert_eq!(
        attempts(verification["messages"].as_array().unwrap()),
        [
            pair("twilio-messaging", "accepted"),
            pair("webhook", "failed")
        ]
    );
    assert_eq!(app.verify(PHONE, &code).await.status, StatusCode::OK);
}

async fn both_down_is_503_and_leaves_no_usable_code(backend: Backend) {
    let gateway = FakeGateway::start().await;
    gateway.answer_next((0..3).map(|_| ResponseTemplate::new(500)));
    let options = gateway
        .options()
        .var("SMS_PROVIDER", "twilio-messaging,webhook")
        .var("SMS_WEBHOOK_MAX_RETRIES", 0);
    let (app, _db) = spawn(backend, options).await;
    twilio_answers(&app, ResponseTemplate::new(500)).await;

    app.send_code(PHONE)
        .await
        .assert_problem(503, "sms_provider_unavailable");

    let code = gateway.last_code_for(PHONE).await;
    app.verify(PHONE, &code)
        .await
        .assert_problem(404, "verification_not_found");
    let verification = only_verification(&app, PHONE).await;
    assert_eq!(verification["status"], "failed");
    assert_eq!(
        attempts(verification["messages"].as_array().unwrap()),
        [
            pair("twilio-messaging", "failed"),
            pair("webhook", "failed")
        ]
    );
    // Released: no cooldown from the failed send, so the next one goes when a provider is back.
    twilio_answers(&app, crate::helpers::message_created()).await;
    assert_eq!(app.send_code(PHONE).await.status, StatusCode::OK);
}

async fn a_refusal_is_not_failed_over(backend: Backend) {
    let gateway = FakeGateway::start().await;
    let options = gateway
        .options()
        .var("SMS_PROVIDER", "twilio-messaging,webhook");
    let (app, _db) = spawn(backend, options).await;
    twilio_answers(
        &app,
        ResponseTemplate::new(400).set_body_json(json!({
            "code": 21211, "message": "Invalid 'To' Phone Number", "status": 400
        })),
    )
    .await;

    app.send_code(PHONE)
        .await
        .assert_problem(422, "invalid_phone_number");

    assert!(gateway.received().await.is_empty(), "no second SMS");
    let verification = only_verification(&app, PHONE).await;
    assert_eq!(
        attempts(verification["messages"].as_array().unwrap()),
        [pair("twilio-messaging", "rejected")]
    );
}

async fn a_custom_sms_fails_over_too(backend: Backend) {
    let gateway = FakeGateway::start().await;
    let options = gateway
        .options()
        .var("SMS_PROVIDER", "twilio-messaging,webhook");
    let (app, _db) = spawn(backend, options).await;
    twilio_answers(&app, ResponseTemplate::new(503)).await;

    let response = app
        .api
        .post(format!("{}/api/sms/send", app.address))
        .bearer_auth(TOKEN)
        .json(&json!({"phone_number": PHONE, "message": "Your parcel is here"}))
        .send()
        .await
        .unwrap();
    let answer = TestApp::answer(response).await;

    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.body["provider_message_id"], "gw-1");
    let received = gateway.received().await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body["body"], "Your parcel is here");
    assert_eq!(received[0].body["message_id"], answer.body["message_id"]);
    let stats = app.get_with_token("/api/stats", Some(TOKEN)).await;
    assert_eq!(stats.body["totals"]["messages"], 2, "a record per attempt");
}
