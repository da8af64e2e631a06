use reqwest::StatusCode;

use crate::both_backends;
use crate::helpers::{AppOptions, Backend, spawn_app, spawn_app_with};

both_backends!(healthz_and_readyz_answer_while_the_database_does);

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
