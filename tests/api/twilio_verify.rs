//! The Verify provider: Twilio makes and checks the code; our limits still hold on top.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, ResponseTemplate};

use crate::both_backends;
use crate::helpers::{AppOptions, Backend, spawn_app_with, wrong_code};
use crate::twilio_contract::{VERIFICATION_CHECK, VERIFICATIONS, assert_valid};

both_backends!(
    send_then_verify_through_twilio_verify,
    local_attempt_limit_holds_whatever_twilio_allows,
    parallel_checks_cannot_exceed_the_attempt_limit,
);

async fn send_then_verify_through_twilio_verify(backend: Backend) {
    let (app, _db) = spawn_app_with(backend, AppOptions::new().twilio_verify()).await;

    let answer = app.send_code("+1 212 555 1234").await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.body["expires_in"], 600);
    let code = app.verify_code_for("+12125551234");

    let wrong = app.verify("+12125551234", &wrong_code(&code)).await;
    wrong.assert_problem(400, "invalid_code");
    assert_eq!(wrong.body["attempts_remaining"], 4);

    let answer = app.verify("+12125551234", &code).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "approved");
    app.verify("+12125551234", &code)
        .await
        .assert_problem(404, "verification_not_found");

    let requests = app.twilio_requests().await;
    let creates: Vec<_> = requests
        .iter()
        .filter(|r| r.url.path().ends_with("/Verifications"))
        .collect();
    let checks: Vec<_> = requests
        .iter()
        .filter(|r| r.url.path().ends_with("/VerificationCheck"))
        .collect();
    assert_eq!(creates.len(), 1);
    // The third verify was answered locally: the verification is approved.
    assert_eq!(checks.len(), 2);
    for r in &creates {
        assert_valid(r, VERIFICATIONS);
    }
    for r in &checks {
        assert_valid(r, VERIFICATION_CHECK);
    }
    let create: std::collections::HashMap<String, String> =
        serde_urlencoded::from_bytes(&creates[0].body).unwrap();
    assert_eq!(create["To"], "+12125551234");
    assert_eq!(create["Channel"], "sms");
    assert!(
        app.sent_messages().await.is_empty(),
        "Verify sends, not Messaging"
    );
}

async fn local_attempt_limit_holds_whatever_twilio_allows(backend: Backend) {
    let (app, _db) = spawn_app_with(
        backend,
        AppOptions::new()
            .twilio_verify()
            .var("MAX_VERIFY_ATTEMPTS", 3),
    )
    .await;
    app.send_code("+12125551234").await;
    let code = app.verify_code_for("+12125551234");

    for remaining in [2, 1, 0] {
        let answer = app.verify("+12125551234", &wrong_code(&code)).await;
        answer.assert_problem(400, "invalid_code");
        assert_eq!(answer.body["attempts_remaining"], remaining);
    }
    app.verify("+12125551234", &code)
        .await
        .assert_problem(429, "max_attempts_reached");
    assert_eq!(app.twilio_calls("/VerificationCheck").await, 3);
}

async fn parallel_checks_cannot_exceed_the_attempt_limit(backend: Backend) {
    let (app, _db) = spawn_app_with(backend, AppOptions::new().twilio_verify()).await;
    app.send_code("+12125551234").await;
    let wrong = wrong_code(&app.verify_code_for("+12125551234"));

    let answers =
        futures_util::future::join_all((0..30).map(|_| app.verify("+12125551234", &wrong))).await;

    let invalid = answers
        .iter()
        .filter(|a| a.code() == "invalid_code")
        .count();
    let locked = answers
        .iter()
        .filter(|a| a.code() == "max_attempts_reached")
        .count();
    assert_eq!((invalid, locked), (5, 25));
    assert_eq!(app.twilio_calls("/VerificationCheck").await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_local_verification_is_410_without_asking_twilio() {
    let (app, _db) = spawn_app_with(
        Backend::Sqlite,
        AppOptions::new()
            .twilio_verify()
            .var("CODE_TTL_SECONDS", 60),
    )
    .await;
    app.send_code("+12125551234").await;
    let code = app.verify_code_for("+12125551234");
    app.clock.advance(Duration::from_secs(61));

    app.verify("+12125551234", &code)
        .await
        .assert_problem(410, "code_expired");
    assert_eq!(app.twilio_calls("/VerificationCheck").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_verify_answers_map_to_the_contract() {
    let (app, _db) = spawn_app_with(Backend::Sqlite, AppOptions::new().twilio_verify()).await;

    // Twilio no longer has the verification (approved, expired or locked on its side): 404.
    app.send_code("+12125551234").await;
    app.fake_verify.codes.lock().unwrap().clear();
    app.verify("+12125551234", "123456")
        .await
        .assert_problem(404, "verification_not_found");

    // 60202: Twilio locked it after its own maximum.
    app.twilio.reset().await;
    Mock::given(method("POST"))
        .and(path_regex("/VerificationCheck$"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({
            "code": 60202, "message": "Max check attempts reached",
            "more_info": "https://www.twilio.com/docs/errors/60202", "status": 429
        })))
        .mount(&app.twilio)
        .await;
    app.verify("+12125551234", "123456")
        .await
        .assert_problem(429, "max_attempts_reached");
    app.verify("+12125551234", "123456")
        .await
        .assert_problem(429, "max_attempts_reached");

    // 60203 on create: Twilio's per-number send limit.
    Mock::given(method("POST"))
        .and(path_regex("/Verifications$"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({
            "code": 60203, "message": "Max send attempts reached",
            "more_info": "https://www.twilio.com/docs/errors/60203", "status": 429
        })))
        .mount(&app.twilio)
        .await;
    let answer = app.send_code("+12125551235").await;
    answer.assert_problem(429, "too_many_sends");
    assert!(answer.retry_after_header().is_some());

    // 60200 on To and 60205 (landline): the number.
    for (code, message, status) in [
        (60200, "Invalid parameter: To", 400),
        (60205, "SMS is not supported by landline phone number", 403),
    ] {
        app.twilio.reset().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).set_body_json(json!({
                "code": code, "message": message,
                "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status
            })))
            .mount(&app.twilio)
            .await;
        app.send_code("+12125551236")
            .await
            .assert_problem(422, "invalid_phone_number");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twilio_outage_during_a_check_does_not_use_up_an_attempt() {
    let (app, _db) = spawn_app_with(Backend::Sqlite, AppOptions::new().twilio_verify()).await;
    app.send_code("+12125551234").await;
    let code = app.verify_code_for("+12125551234");
    let fake = app.fake_verify.clone();

    app.twilio.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&app.twilio)
        .await;
    for _ in 0..6 {
        app.verify("+12125551234", &code)
            .await
            .assert_problem(503, "sms_provider_unavailable");
    }

    app.twilio.reset().await;
    crate::helpers::mount_fake_verify(&app.twilio, &fake).await;
    let answer = app.verify("+12125551234", &wrong_code(&code)).await;
    assert_eq!(answer.body["attempts_remaining"], 4);
    assert_eq!(
        app.verify("+12125551234", &code).await.status,
        StatusCode::OK
    );
}
