use reqwest::StatusCode;

use crate::both_backends;
use crate::helpers::{AppOptions, Backend, spawn_app, spawn_app_with};

both_backends!(healthz_and_readyz_answer_while_the_database_does);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_sends_verifications_and_rejections() {
    let (app, _db) = spawn_app(Backend::Sqlite).await;
    let code = app.send_and_read_code("+12125551234").await;
    app.verify("+12125551234", "000000").await;
    app.verify("+12125551234", &code).await;
    app.send_code("+12125551234").await; // resend_too_soon

    let response = app
        .api
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for expected in [
        r#"http_requests_total{method="POST",route="/api/auth/phone/send-code",status="200"}"#,
        r#"http_requests_total{method="POST",route="/api/auth/phone/send-code",status="429"}"#,
        r#"http_request_duration_seconds_bucket{method="POST",route="/api/auth/phone/verify",le="0.01"}"#,
        r#"sms_sends_total{provider="twilio-messaging",outcome="sent"}"#,
        r#"verifications_total{outcome="approved"}"#,
        r#"verifications_total{outcome="invalid_code"}"#,
        r#"rate_limit_rejections_total{kind="resend_cooldown"}"#,
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    // Labels hold route templates, never numbers.
    assert!(!text.contains("2125551234"));
}

async fn healthz_and_readyz_answer_while_the_database_does(backend: Backend) {
    let (app, _db) = spawn_app(backend).await;

    let health = app.get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body, serde_json::json!({"status": "ok"}));

    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body, serde_json::json!({"status": "ready"}));
}

/// Postgres refusing connections (here: the test database closed to new connections and its
/// sessions ended) gives 503 storage_unavailable with Retry-After, on readiness and on the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_gives_503_storage_unavailable() {
    let (app, db) = spawn_app_with(
        Backend::Postgres,
        AppOptions::new().var("DATABASE_ACQUIRE_TIMEOUT_SECONDS", 1),
    )
    .await;
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);

    let name = db.url.rsplit('/').next().unwrap().to_string();
    let admin = sqlx::PgPool::connect(&db.url.replace(&name, "postgres"))
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "alter database {name} allow_connections false"
    )))
    .execute(&admin)
    .await
    .unwrap();
    sqlx::query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1")
        .bind(&name)
        .execute(&admin)
        .await
        .unwrap();

    let ready = app.get("/readyz").await;
    ready.assert_problem(503, "storage_unavailable");
    assert!(ready.retry_after_header().is_some());

    let send = app.send_code("+12125551234").await;
    send.assert_problem(503, "storage_unavailable");
    assert!(send.retry_after_header().is_some());
    let verify = app.verify("+12125551234", "123456").await;
    verify.assert_problem(503, "storage_unavailable");
    assert!(app.sent_messages().await.is_empty());

    // Back again without a restart.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "alter database {name} allow_connections true"
    )))
    .execute(&admin)
    .await
    .unwrap();
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    assert_eq!(app.send_code("+12125551234").await.status, StatusCode::OK);
}
