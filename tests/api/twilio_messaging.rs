//! The Messaging provider against a fake of Twilio's Messages API: request shape (checked against
//! Twilio's OpenAPI document), every error mapping, retries, timeouts, refused connections.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{AppOptions, Backend, TWILIO_FROM, TestApp, spawn_app, spawn_app_with};
use crate::twilio_contract::{MESSAGES, assert_valid};

async fn answer_every_message_with(app: &TestApp, response: ResponseTemplate) {
    app.twilio.reset().await;
    Mock::given(method("POST"))
        .respond_with(response)
        .mount(&app.twilio)
        .await;
}

fn twilio_error(status: u16, code: i64, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_goes_out_as_one_form_post_that_matches_twilios_contract() {
    let (app, _db) = spawn_app(Backend::Sqlite).await;

    let code = app.send_and_read_code("+12125551234").await;

    let requests = app.twilio_requests().await;
    assert_eq!(requests.len(), 1);
    assert_valid(&requests[0], MESSAGES);
    assert_eq!(
        requests[0].url.path(),
        "/2010-04-01/Accounts/ACtest00000000000000000000000000/Messages.json"
    );
    let messages = app.sent_messages().await;
    assert_eq!(messages[0]["To"], "+12125551234");
    assert_eq!(messages[0]["From"], TWILIO_FROM);
    assert_eq!(
        messages[0]["Body"],
        format!("Your verification code is {code}")
    );
    assert_eq!(messages[0].len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_template_shapes_the_body() {
    let (app, _db) = spawn_app_with(
        Backend::Sqlite,
        AppOptions::new().var("SMS_TEMPLATE", "{code} is your Acme code. Don't share it."),
    )
    .await;

    let code = app.send_and_read_code("+12125551234").await;

    let messages = app.sent_messages().await;
    assert_eq!(
        messages[0]["Body"],
        format!("{code} is your Acme code. Don't share it.")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_errors_map_to_the_contracts_codes() {
    let (app, _db) = spawn_app(Backend::Sqlite).await;
    let cases: [(ResponseTemplate, u16, &str, Option<i64>); 10] = [
        (
            twilio_error(400, 21211, "Invalid 'To' Phone Number"),
            422,
            "invalid_phone_number",
            None,
        ),
        (
            twilio_error(400, 21614, "To number is not a mobile number"),
            422,
            "invalid_phone_number",
            None,
        ),
        (
            twilio_error(400, 21408, "Permission to send an SMS has not been enabled"),
            422,
            "invalid_phone_number",
            None,
        ),
        (
            twilio_error(401, 20003, "Authenticate"),
            502,
            "sms_rejected",
            Some(20003),
        ),
        (
            twilio_error(400, 21608, "The number is unverified"),
            502,
            "sms_rejected",
            Some(21608),
        ),
        (
            twilio_error(400, 21606, "The From phone number is not a valid"),
            502,
            "sms_rejected",
            Some(21606),
        ),
        (
            ResponseTemplate::new(403).set_body_string("<html>forbidden</html>"),
            502,
            "sms_rejected",
            None,
        ),
        (
            twilio_error(500, 20500, "Internal Server Error"),
            503,
            "sms_provider_unavailable",
            None,
        ),
        (
            twilio_error(429, 20429, "Too many requests"),
            503,
            "sms_provider_unavailable",
            None,
        ),
        (
            ResponseTemplate::new(503),
            503,
            "sms_provider_unavailable",
            None,
        ),
    ];
    for (i, (response, status, code, provider_code)) in cases.into_iter().enumerate() {
        answer_every_message_with(&app, response).await;
        // A new number each time: no cooldown in the way, and failures do not count anyway.
        let phone = format!("+1212555{:04}", 1000 + i);

        let answer = app.send_code(&phone).await;

        answer.assert_problem(status, code);
        assert_eq!(
            answer.body.get("provider_code").and_then(Value::as_i64),
            provider_code,
            "{code}"
        );
        if status == 503 {
            assert!(answer.retry_after_header().is_some());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_may_have_sent_an_sms_are_never_retried() {
    let (app, _db) = spawn_app(Backend::Sqlite).await;
    for response in [
        ResponseTemplate::new(500),
        ResponseTemplate::new(502),
        twilio_error(400, 21211, "Invalid 'To' Phone Number"),
        twilio_error(401, 20003, "Authenticate"),
    ] {
        answer_every_message_with(&app, response).await;
        app.send_code("+12125551234").await;
        assert_eq!(app.twilio_calls("/Messages.json").await, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_and_unavailable_answers_are_retried_with_backoff() {
    let (app, _db) = spawn_app_with(
        Backend::Sqlite,
        AppOptions::new().var("TWILIO_MAX_RETRIES", 2),
    )
    .await;
    for response in [
        twilio_error(429, 20429, "Too many requests"),
        ResponseTemplate::new(503),
    ] {
        answer_every_message_with(&app, response).await;

        app.send_code("+12125551234")
            .await
            .assert_problem(503, "sms_provider_unavailable");

        // One try and two retries.
        assert_eq!(app.twilio_calls("/Messages.json").await, 3);
    }

    // A retry that succeeds makes the send succeed.
    app.twilio.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&app.twilio)
        .await;
    Mock::given(method("POST"))
        .respond_with(crate::helpers::message_created())
        .with_priority(2)
        .mount(&app.twilio)
        .await;
    let answer = app.send_code("+12125551234").await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(app.twilio_calls("/Messages.json").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_number_limit_from_twilio_is_not_retried() {
    let (app, _db) = spawn_app(Backend::Sqlite).await;
    answer_every_message_with(&app, twilio_error(429, 60203, "Max send attempts reached")).await;

    app.send_code("+12125551234")
        .await
        .assert_problem(429, "too_many_sends");

    assert_eq!(app.twilio_calls("/Messages.json").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twilio_that_does_not_answer_in_time_is_503_without_retry() {
    let (app, _db) = spawn_app_with(
        Backend::Sqlite,
        AppOptions::new().var("TWILIO_TIMEOUT_MS", 300),
    )
    .await;
    answer_every_message_with(
        &app,
        crate::helpers::message_created().set_delay(Duration::from_secs(5)),
    )
    .await;

    let started = std::time::Instant::now();
    let answer = app.send_code("+12125551234").await;

    answer.assert_problem(503, "sms_provider_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(app.twilio_calls("/Messages.json").await, 1);
    // The timed-out send does not count: the number can try again at once.
    answer_every_message_with(&app, crate::helpers::message_created()).await;
    assert_eq!(app.send_code("+12125551234").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_retried_then_503() {
    // A port with nothing listening on it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (app, _db) = spawn_app_with(
        Backend::Sqlite,
        AppOptions::new().var("TWILIO_API_BASE_URL", format!("http://127.0.0.1:{port}")),
    )
    .await;

    let answer = app.send_code("+12125551234").await;

    answer.assert_problem(503, "sms_provider_unavailable");
    assert!(answer.retry_after_header().is_some());
}
