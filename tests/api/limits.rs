//! Expiry, cooldown and the hourly cap, moved through with the test clock instead of sleeping.

use std::time::Duration;

use reqwest::StatusCode;

use crate::both_backends;
use crate::helpers::{AppOptions, Backend, spawn_app, spawn_app_with};

both_backends!(
    a_code_past_its_configured_ttl_is_410_code_expired,
    a_second_send_within_the_cooldown_is_429_with_retry_after,
    the_sixth_send_within_an_hour_is_429_too_many_sends,
    the_hourly_cap_is_a_rolling_window,
);

async fn a_code_past_its_configured_ttl_is_410_code_expired(backend: Backend) {
    let (app, _db) = spawn_app_with(backend, AppOptions::new().var("CODE_TTL_SECONDS", 60)).await;
    let answer = app.send_code("+12125551234").await;
    assert_eq!(answer.body["expires_in"], 60);
    let code = app.last_code_for("+12125551234").await;

    app.clock.advance(Duration::from_secs(59));
    let still_valid = app
        .verify("+12125551234", &crate::helpers::wrong_code(&code))
        .await;
    still_valid.assert_problem(400, "invalid_code");

    app.clock.advance(Duration::from_secs(2));
    app.verify("+12125551234", &code)
        .await
        .assert_problem(410, "code_expired");

    // A resend renews an expired verification.
    let answer = app.resend_code("+12125551234").await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let fresh = app.last_code_for("+12125551234").await;
    assert_eq!(
        app.verify("+12125551234", &fresh).await.status,
        StatusCode::OK
    );
}

async fn a_second_send_within_the_cooldown_is_429_with_retry_after(backend: Backend) {
    let (app, _db) = spawn_app(backend).await;
    app.send_and_read_code("+12125551234").await;

    app.clock.advance(Duration::from_secs(3));
    for answer in [
        app.send_code("+12125551234").await,
        app.resend_code("+12125551234").await,
    ] {
        answer.assert_problem(429, "resend_too_soon");
        assert_eq!(answer.body["retry_after"], 27);
        assert_eq!(answer.retry_after_header(), Some(27));
    }
    assert_eq!(app.sent_messages().await.len(), 1);

    app.clock.advance(Duration::from_secs(27));
    assert_eq!(app.resend_code("+12125551234").await.status, StatusCode::OK);
    assert_eq!(app.sent_messages().await.len(), 2);
}

async fn the_sixth_send_within_an_hour_is_429_too_many_sends(backend: Backend) {
    let (app, _db) = spawn_app(backend).await;
    for _ in 0..5 {
        app.send_and_read_code("+12125551234").await;
        app.clock.advance(Duration::from_secs(30));
    }

    let answer = app.send_code("+12125551234").await;

    answer.assert_problem(429, "too_many_sends");
    // The first send leaves the window 3600 s after it was made, 150 s ago.
    assert_eq!(answer.body["retry_after"], 3_450);
    assert_eq!(answer.retry_after_header(), Some(3_450));
    app.resend_code("+12125551234")
        .await
        .assert_problem(429, "too_many_sends");
    assert_eq!(app.sent_messages().await.len(), 5);
    // Other numbers are not affected.
    assert_eq!(app.send_code("+12125551235").await.status, StatusCode::OK);
}

async fn the_hourly_cap_is_a_rolling_window(backend: Backend) {
    let (app, _db) = spawn_app(backend).await;
    // Sends at t = 0, 1000, 2000, 3000, 3100 s.
    for step in [1_000, 1_000, 1_000, 100, 0] {
        app.send_and_read_code("+12125551234").await;
        app.clock.advance(Duration::from_secs(step));
    }
    app.clock.advance(Duration::from_secs(400)); // t = 3500
    app.send_code("+12125551234")
        .await
        .assert_problem(429, "too_many_sends");

    app.clock.advance(Duration::from_secs(101)); // t = 3601: the send at 0 has left the window
    assert_eq!(app.send_code("+12125551234").await.status, StatusCode::OK);
    app.clock.advance(Duration::from_secs(31)); // t = 3632: five sends in (2632, 3632]
    let answer = app.send_code("+12125551234").await;
    answer.assert_problem(429, "too_many_sends");
    // The next to leave is the send at 1000, at 4600.
    assert_eq!(answer.body["retry_after"], 4_600 - 3_632);
}
