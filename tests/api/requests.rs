//! Bodies axum would reject with its own plain-text answers come back as problem+json.

use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, spawn_app};

both_backends!(
    body_errors_are_problem_json,
    unknown_routes_and_methods_are_problem_json
);

const ENDPOINTS: [&str; 3] = [
    "/api/auth/phone/send-code",
    "/api/auth/phone/resend-code",
    "/api/auth/phone/verify",
];

async fn body_errors_are_problem_json(backend: Backend) {
    let (app, _db) = spawn_app(backend).await;

    for path in ENDPOINTS {
        app.post_raw(path, Some("application/json"), "{\"phone_number\": ")
            .await
            .assert_problem(400, "malformed_json");
        app.post_raw(path, Some("application/json"), "not json")
            .await
            .assert_problem(400, "malformed_json");
        app.post_raw(path, None, r#"{"phone_number":"+12125551234"}"#)
            .await
            .assert_problem(415, "unsupported_media_type");
        app.post_raw(
            path,
            Some("text/plain"),
            r#"{"phone_number":"+12125551234"}"#,
        )
        .await
        .assert_problem(415, "unsupported_media_type");
        let big = json!({"phone_number": "+12125551234", "pad": "x".repeat(5000)});
        app.post_json(path, &big)
            .await
            .assert_problem(413, "payload_too_large");
        app.post_json(path, &json!({}))
            .await
            .assert_problem(422, "invalid_request");
        app.post_json(
            path,
            &json!({"phone_number": 12125551234u64, "code": "123456"}),
        )
        .await
        .assert_problem(422, "invalid_request");
        app.post_json(path, &json!([1, 2]))
            .await
            .assert_problem(422, "invalid_request");
    }
    app.post_json(
        "/api/auth/phone/send-code",
        &json!({"phone_number": "+12125551234", "extra": true}),
    )
    .await
    .assert_problem(422, "invalid_request");
    app.post_json(
        "/api/auth/phone/verify",
        &json!({"phone_number": "+12125551234"}),
    )
    .await
    .assert_problem(422, "invalid_request");
    assert!(app.sent_messages().await.is_empty());
}

async fn unknown_routes_and_methods_are_problem_json(backend: Backend) {
    let (app, _db) = spawn_app(backend).await;

    app.get("/api/auth/phone/nothing-here")
        .await
        .assert_problem(404, "not_found");
    app.get("/api/auth/phone/send-code")
        .await
        .assert_problem(405, "method_not_allowed");
}
