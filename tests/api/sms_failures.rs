//! A send whose SMS fails does not count and leaves no usable code.

use reqwest::StatusCode;
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

use crate::both_backends;
use crate::helpers::{Backend, spawn_app};

both_backends!(
    a_provider_outage_is_503_and_the_send_does_not_count,
    a_provider_refusal_is_502_with_the_provider_code,
    a_provider_verdict_on_the_number_is_422,
);

async fn a_provider_outage_is_503_and_the_send_does_not_count(backend: Backend) {
    let (app, _db) = spawn_app(backend).await;
    app.twilio.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&app.twilio)
        .await;

    let answer = app.send_code("+12125551234").await;

    answer.assert_problem(503, "sms_provider_unavailable");
    assert!(answer.retry_after_header().is_some());
    // The code in the failed message is not usable.
    let failed_code = app.last_code_for("+12125551234").await;
    app.verify("+12125551234", &failed_code)
        .await
        .assert_problem(404, "verification_not_found");

    // No cooldown and no hourly count from the failed sends: five more work right away... after
    // the provider is back.
    for _ in 0..3 {
        app.send_code("+12125551234")
            .await
            .assert_problem(503, "sms_provider_unavailable");
    }
    app.twilio.reset().await;
    Mock::given(method("POST"))
        .respond_with(crate::helpers::message_created())
        .mount(&app.twilio)
        .await;
    let answer = app.resend_code("+12125551234").await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let code = app.last_code_for("+12125551234").await;
    assert_eq!(
        app.verify("+12125551234", &code).await.status,
        StatusCode::OK
    );
    for _ in 0..4 {
        app.clock.advance(std::time::Duration::from_secs(31));
        assert_eq!(app.send_code("+12125551234").await.status, StatusCode::OK);
    }
}

async fn a_provider_refusal_is_502_with_the_provider_code(backend: Backend) {
    let (app, _db) = spawn_app(backend).await;
    app.twilio.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "code": 20003,
            "message": "Authenticate",
            "more_info": "https://www.twilio.com/docs/errors/20003",
            "status": 401
        })))
        .mount(&app.twilio)
        .await;

    let answer = app.send_code("+12125551234").await;

    answer.assert_problem(502, "sms_rejected");
    assert_eq!(answer.body["provider_code"], 20003);
    let code = app.last_code_for("+12125551234").await;
    app.verify("+12125551234", &code)
        .await
        .assert_problem(404, "verification_not_found");
}

async fn a_provider_verdict_on_the_number_is_422(backend: Backend) {
    let (app, _db) = spawn_app(backend).await;
    app.twilio.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 21614,
            "message": "To number: +12125551234, is not a mobile number",
            "more_info": "https://www.twilio.com/docs/errors/21614",
            "status": 400
        })))
        .mount(&app.twilio)
        .await;

    app.send_code("+12125551234")
        .await
        .assert_problem(422, "invalid_phone_number");
}
