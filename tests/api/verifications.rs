use reqwest::StatusCode;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::both_backends;
use crate::helpers::{Backend, TWILIO_FROM, spawn_app, wrong_code};

both_backends!(
    send_code_answers_pending_with_the_normalized_number_and_sends_one_sms,
    a_sent_code_verifies_once_and_only_once,
    invalid_phone_numbers_get_422_and_nothing_is_sent,
    verify_without_a_verification_is_404,
    a_badly_formatted_code_is_422_and_uses_no_attempt,
    wrong_codes_count_down_to_max_attempts_reached,
    resend_issues_a_new_code_and_voids_the_old_one,
    resend_without_a_pending_verification_is_404,
    send_code_after_approval_starts_a_new_verification,
);

async fn send_code_answers_pending_with_the_normalized_number_and_sends_one_sms(backend: Backend) {
    let (app, _db) = spawn_app(backend).await;

    let before = OffsetDateTime::now_utc();
    let answer = app.send_code("+1 (212) 555-1234").await;

    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.content_type(), "application/json");
    assert_eq!(answer.headers["cache-control"], "no-store");
    assert_eq!(answer.body["status"], "pending");
    assert_eq!(answer.body["phone_number"], "+12125551234");
    assert_eq!(answer.body["channel"], "sms");
    assert_eq!(answer.body["expires_in"], 600);
    assert_eq!(answer.body["resend_after"], 30);
    let expires_at =
        OffsetDateTime::parse(answer.body["expires_at"].as_str().unwrap(), &Rfc3339).unwrap();
    let lifetime = (expires_at - before).whole_seconds();
    assert!(
        (598..=601).contains(&lifetime),
        "expires_at is {lifetime}s away"
    );
    assert!(answer.body["expires_at"].as_str().unwrap().ends_with('Z'));

    let messages = app.sent_messages().await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["To"], "+12125551234");
    assert_eq!(messages[0]["From"], TWILIO_FROM);
    let code = app.last_code_for("+12125551234").await;
    assert_eq!(code.len(), 6);
    assert_eq!(
        messages[0]["Body"],
        format!("Your verification code is {code}")
    );
}

async fn a_sent_code_verifies_once_and_only_once(backend: Backend) {
    let (app, _db) = spawn_app(backend).await;
    let code = app.send_and_read_code("+12125551234").await;

    let answer = app.verify("+1 212 555 1234", &code).await;

    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.headers["cache-control"], "no-store");
    assert_eq!(answer.body["status"], "approved");
    assert_eq!(answer.body["phone_number"], "+12125551234");
    let verified_at =
        OffsetDateTime::parse(answer.body["verified_at"].as_str().unwrap(), &Rfc3339).unwrap();
    assert!(
        (OffsetDateTime::now_utc() - verified_at)
            .whole_seconds()
            .abs()
            <= 2
    );
    assert!(
        answer.body.get("token").is_none(),
        "no token without a secret"
    );

    let again = app.verify("+12125551234", &code).await;
    again.assert_problem(404, "verification_not_found");
}

async fn invalid_phone_numbers_get_422_and_nothing_is_sent(backend: Backend) {
    let (app, _db) = spawn_app(backend).await;

    for phone in [
        "",
        "12125551234",
        "+1 212 555 1234 ext. 99",
        "+1-800-FLOWERS",
        "+4420712345678",
        "+999123",
        "+1 212 555 12345678901234567890",
        &"+1".repeat(40),
    ] {
        let answer = app.send_code(phone).await;
        answer.assert_problem(422, "invalid_phone_number");
        assert_eq!(answer.headers["cache-control"], "no-store");

        app.resend_code(phone)
            .await
            .assert_problem(422, "invalid_phone_number");
        app.verify(phone, "123456")
            .await
            .assert_problem(422, "invalid_phone_number");
    }
    assert!(app.sent_messages().await.is_empty());
}

async fn verify_without_a_verification_is_404(backend: Backend) {
    let (app, _db) = spawn_app(backend).await;

    let answer = app.verify("+12125551234", "123456").await;

    answer.assert_problem(404, "verification_not_found");
}

async fn a_badly_formatted_code_is_422_and_uses_no_attempt(backend: Backend) {
    let (app, _db) = spawn_app(backend).await;
    let code = app.send_and_read_code("+12125551234").await;

    for bad in ["", "12345", "1234567", "12a456", " 123456", "１２３４５６"] {
        app.verify("+12125551234", bad)
            .await
            .assert_problem(422, "invalid_code_format");
    }
    let answer = app.verify("+12125551234", &wrong_code(&code)).await;
    answer.assert_problem(400, "invalid_code");
    assert_eq!(answer.body["attempts_remaining"], 4);
}

async fn wrong_codes_count_down_to_max_attempts_reached(backend: Backend) {
    let (app, _db) = spawn_app(backend).await;
    let code = app.send_and_read_code("+12125551234").await;
    let wrong = wrong_code(&code);

    for remaining in (0..5).rev() {
        let answer = app.verify("+12125551234", &wrong).await;
        answer.assert_problem(400, "invalid_code");
        assert_eq!(answer.body["attempts_remaining"], remaining);
    }
    app.verify("+12125551234", &wrong)
        .await
        .assert_problem(429, "max_attempts_reached");
    // Even the right code is refused now: the code is used up.
    app.verify("+12125551234", &code)
        .await
        .assert_problem(429, "max_attempts_reached");

    // A new code (after the cooldown) resets the attempts.
    app.clock.advance(std::time::Duration::from_secs(31));
    let answer = app.resend_code("+12125551234").await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let fresh = app.last_code_for("+12125551234").await;
    assert_eq!(
        app.verify("+12125551234", &fresh).await.status,
        StatusCode::OK
    );
}

async fn resend_issues_a_new_code_and_voids_the_old_one(backend: Backend) {
    let (app, _db) = spawn_app(backend).await;
    let first = app.send_and_read_code("+12125551234").await;
    app.clock.advance(std::time::Duration::from_secs(31));

    let answer = app.resend_code("+12125551234").await;

    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "pending");
    assert_eq!(answer.body["expires_in"], 600);
    assert_eq!(answer.body["resend_after"], 30);
    assert_eq!(app.sent_messages().await.len(), 2);
    let second = app.last_code_for("+12125551234").await;
    if first != second {
        app.verify("+12125551234", &first)
            .await
            .assert_problem(400, "invalid_code");
    }
    assert_eq!(
        app.verify("+12125551234", &second).await.status,
        StatusCode::OK
    );
}

async fn resend_without_a_pending_verification_is_404(backend: Backend) {
    let (app, _db) = spawn_app(backend).await;

    app.resend_code("+12125551234")
        .await
        .assert_problem(404, "verification_not_found");

    let code = app.send_and_read_code("+12125551234").await;
    assert_eq!(
        app.verify("+12125551234", &code).await.status,
        StatusCode::OK
    );
    app.clock.advance(std::time::Duration::from_secs(31));
    app.resend_code("+12125551234")
        .await
        .assert_problem(404, "verification_not_found");
    assert_eq!(app.sent_messages().await.len(), 1);
}

async fn send_code_after_approval_starts_a_new_verification(backend: Backend) {
    let (app, _db) = spawn_app(backend).await;
    let code = app.send_and_read_code("+12125551234").await;
    assert_eq!(
        app.verify("+12125551234", &code).await.status,
        StatusCode::OK
    );
    app.clock.advance(std::time::Duration::from_secs(31));

    let code = app.send_and_read_code("+12125551234").await;

    let answer = app.verify("+12125551234", &code).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let _ = json!(null);
}
