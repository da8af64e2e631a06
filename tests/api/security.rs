//! Browser access (CORS) and the headers every API answer carries.

use reqwest::Method;

use crate::helpers::{AppOptions, Backend, spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_only_the_configured_origins() {
    let (app, _db) = spawn_app_with(
        Backend::Sqlite,
        AppOptions::new().var("CORS_ALLOWED_ORIGINS", "http://localhost:3000"),
    )
    .await;
    let url = format!("{}/api/auth/phone/send-code", app.address);

    let preflight = app
        .api
        .request(Method::OPTIONS, &url)
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    let methods = preflight.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(methods.contains("POST"), "{methods}");

    let answer = app
        .api
        .post(&url)
        .header("origin", "http://localhost:3000")
        .json(&serde_json::json!({"phone_number": "+12125551234"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );

    let foreign = app
        .api
        .request(Method::OPTIONS, &url)
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_configured_origins_no_browser_origin_is_allowed() {
    let (app, _db) = spawn_app(Backend::Sqlite).await;

    let preflight = app
        .api
        .request(
            Method::OPTIONS,
            format!("{}/api/auth/phone/send-code", app.address),
        )
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();

    assert!(
        preflight
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}
