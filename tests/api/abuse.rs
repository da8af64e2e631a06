//! Abuse limits: per-IP request rate, per-IP / per-country hourly send caps (across instances),
//! the country allow-list, and the signed verification token.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{AppOptions, Backend, TestApp, TestDatabase, spawn_app_with, spawn_on};

async fn send_from(
    app: &TestApp,
    phone: impl AsRef<str>,
    forwarded_for: impl AsRef<str>,
) -> crate::helpers::Answer {
    let response = app
        .api
        .post(format!("{}/api/auth/phone/send-code", app.address))
        .header("x-forwarded-for", forwarded_for.as_ref())
        .json(&json!({"phone_number": phone.as_ref()}))
        .send()
        .await
        .unwrap();
    TestApp::answer(response).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_request_rate_is_429_rate_limited_and_forwarded_for_does_not_escape_it() {
    let (app, _db) = spawn_app_with(
        Backend::Sqlite,
        AppOptions::new().var("RATE_LIMIT_PER_IP_PER_MINUTE", 3),
    )
    .await;

    // A burst of 3 (any /api/ route counts), each "from" a different forwarded address.
    for i in 0..3 {
        let answer = send_from(
            &app,
            format!("+1212555{:04}", 1000 + i),
            format!("203.0.113.{i}"),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    }
    let answer = send_from(&app, "+12125559999", "198.51.100.77").await;

    answer.assert_problem(429, "rate_limited");
    let retry = answer.body["retry_after"].as_u64().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(answer.retry_after_header(), Some(retry));
    app.verify("+12125551000", "123456")
        .await
        .assert_problem(429, "rate_limited");
    // Health checks are not rate limited.
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(app.sent_messages().await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_rate() {
    let (app, _db) = spawn_app_with(
        Backend::Sqlite,
        AppOptions::new()
            .var("RATE_LIMIT_PER_IP_PER_MINUTE", 2)
            .var("TRUST_PROXY_HEADERS", "true"),
    )
    .await;

    for client in ["203.0.113.1", "203.0.113.2"] {
        for i in 0..2 {
            let phone = format!("+1212555{}{:03}", &client[client.len() - 1..], i);
            assert_eq!(send_from(&app, &phone, client).await.status, StatusCode::OK);
        }
        send_from(&app, "+12125559999", client)
            .await
            .assert_problem(429, "rate_limited");
    }
    // The client cannot pick its key: only the last entry (our proxy's) counts.
    send_from(&app, "+12125559998", "10.9.9.9, 203.0.113.1")
        .await
        .assert_problem(429, "rate_limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_per_ip_per_hour_are_capped_and_failed_sends_do_not_count() {
    let (app, _db) = spawn_app_with(
        Backend::Sqlite,
        AppOptions::new().var("MAX_SENDS_PER_IP_PER_HOUR", 3),
    )
    .await;

    // A failed SMS gives its count back.
    app.twilio.reset().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(500))
        .mount(&app.twilio)
        .await;
    app.send_code("+12125550000")
        .await
        .assert_problem(503, "sms_provider_unavailable");
    app.twilio.reset().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(crate::helpers::message_created())
        .mount(&app.twilio)
        .await;

    for i in 0..3 {
        let answer = app.send_code(&format!("+1212555{:04}", 1000 + i)).await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    }
    let answer = app.send_code("+12125559999").await;

    answer.assert_problem(429, "too_many_sends");
    let retry = answer.body["retry_after"].as_u64().unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    assert_eq!(answer.retry_after_header(), Some(retry));

    // The next clock hour has a fresh count.
    app.clock.advance(Duration::from_secs(retry));
    assert_eq!(app.send_code("+12125559999").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_per_country_per_hour_are_capped_for_that_country_only() {
    let (app, _db) = spawn_app_with(
        Backend::Sqlite,
        AppOptions::new().var("MAX_SENDS_PER_COUNTRY_PER_HOUR", 2),
    )
    .await;

    assert_eq!(app.send_code("+12125551000").await.status, StatusCode::OK);
    assert_eq!(app.send_code("+12125551001").await.status, StatusCode::OK);
    let answer = app.send_code("+12125551002").await;
    answer.assert_problem(429, "too_many_sends");
    assert!(answer.retry_after_header().is_some());

    assert_eq!(app.send_code("+33612345678").await.status, StatusCode::OK);
    assert_eq!(app.sent_messages().await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_outside_allowed_countries_are_403_and_nothing_is_sent() {
    let (app, _db) = spawn_app_with(
        Backend::Sqlite,
        AppOptions::new().var("ALLOWED_COUNTRIES", "fr, DE"),
    )
    .await;

    for answer in [
        app.send_code("+12125551234").await,
        app.resend_code("+12125551234").await,
    ] {
        answer.assert_problem(403, "country_not_allowed");
    }
    assert!(app.sent_messages().await.is_empty());
    assert_eq!(app.send_code("+33612345678").await.status, StatusCode::OK);
    assert_eq!(app.send_code("+4915123456789").await.status, StatusCode::OK);
}

/// Every bound at once, attacked in parallel through two instances sharing one Postgres database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_hold_under_parallel_sends_across_two_instances() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let options = || {
        AppOptions::new()
            .var("MAX_SENDS_PER_IP_PER_HOUR", 4)
            .var("MAX_SENDS_PER_COUNTRY_PER_HOUR", 6)
            .var("TRUST_PROXY_HEADERS", "true")
    };
    let a = spawn_on(&db, options()).await;
    let b = spawn_on(&db, options().clock(a.clock.clone())).await;
    let ok = |answers: &[crate::helpers::Answer]| {
        answers
            .iter()
            .filter(|x| x.status == StatusCode::OK)
            .count()
    };

    // Per number: 20 parallel sends to one number, half through each instance.
    let answers = futures_util::future::join_all((0..20).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        send_from(app, "+12125550001", format!("198.51.100.{i}"))
    }))
    .await;
    assert_eq!(ok(&answers), 1);

    // Per IP: 12 numbers from one client address → 4 (the first send above was from another IP).
    let answers = futures_util::future::join_all((0..12).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        send_from(app, format!("+1212555{:04}", 2000 + i), "203.0.113.50")
    }))
    .await;
    assert_eq!(ok(&answers), 4);
    assert!(
        answers
            .iter()
            .filter(|x| x.status != StatusCode::OK)
            .all(|x| x.code() == "too_many_sends")
    );

    // Per country: 6 US sends per hour; 1 + 4 are used, so 12 clients on 12 numbers get 1.
    let answers = futures_util::future::join_all((0..12).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        send_from(
            app,
            format!("+1212555{:04}", 3000 + i),
            format!("192.0.2.{i}"),
        )
    }))
    .await;
    assert_eq!(ok(&answers), 1);
    let total = a.sent_messages().await.len() + b.sent_messages().await.len();
    assert_eq!(total, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_secret_verify_returns_a_jwt_other_backends_can_check() {
    let secret = "a-shared-secret-of-32-bytes-or-more!";
    let (app, _db) = spawn_app_with(
        Backend::Sqlite,
        AppOptions::new()
            .var("VERIFICATION_TOKEN_SECRET", secret)
            .var("VERIFICATION_TOKEN_TTL_SECONDS", 600),
    )
    .await;
    let code = app.send_and_read_code("+12125551234").await;

    let answer = app.verify("+12125551234", &code).await;

    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["token_expires_in"], 600);
    let token = answer.body["token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::HS256);
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &Validation::new(Algorithm::HS256),
    )
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], "+12125551234");
    assert_eq!(claims["phone_number_verified"], true);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );
    assert!(uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).is_ok());
    // Each verification has its own id.
    app.clock.advance(Duration::from_secs(31));
    let code = app.send_and_read_code("+12125551234").await;
    let second = app.verify("+12125551234", &code).await;
    let second_claims = jsonwebtoken::decode::<serde_json::Value>(
        second.body["token"].as_str().unwrap(),
        &DecodingKey::from_secret(secret.as_bytes()),
        &Validation::new(Algorithm::HS256),
    )
    .unwrap()
    .claims;
    assert_ne!(second_claims["jti"], claims["jti"]);
}
