//! `GET /api/verifications…` and `GET /api/stats`: what support tools read, behind the internal token.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, ResponseTemplate};

use crate::both_backends;
use crate::helpers::{
    Answer, AppOptions, Backend, TestApp, TestDatabase, spawn_app, spawn_app_with, wrong_code,
};

const TOKEN: &str = "internal-token-0123456789";

both_backends!(
    lookups_do_not_exist_without_a_token,
    a_missing_or_wrong_token_is_401_before_anything_else,
    a_malformed_id_is_422_and_an_unknown_one_404,
    a_missing_or_bad_number_is_422,
    hours_outside_1_to_720_are_422,
    a_sent_code_is_pending_with_its_message,
    a_verified_code_is_approved,
    an_expired_code_is_expired,
    wrong_codes_up_to_the_max_are_max_attempts_reached,
    a_number_lists_its_verifications_newest_first,
    verifications_older_than_the_retention_are_not_listed,
    stats_count_messages_and_verifications_per_country_and_channel,
    stats_count_a_refused_send_as_rejected,
    stats_cover_only_the_requested_hours,
);

async fn spawn(backend: Backend) -> (TestApp, TestDatabase) {
    spawn_with(backend, AppOptions::new()).await
}

async fn spawn_with(backend: Backend, options: AppOptions<'_>) -> (TestApp, TestDatabase) {
    spawn_app_with(backend, options.var("INTERNAL_API_TOKEN", TOKEN)).await
}

async fn lookup(app: &TestApp, path: &str) -> Answer {
    app.get_with_token(path, Some(TOKEN)).await
}

#[track_caller]
fn ok(answer: Answer) -> Value {
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.body
}

/// Sends a code, asserting it worked, and returns the send answer.
async fn send(app: &TestApp, phone: &str) -> Value {
    ok(app.send_code(phone).await)
}

async fn by_id(app: &TestApp, id: &Value) -> Value {
    ok(lookup(app, &format!("/api/verifications/{}", id.as_str().unwrap())).await)
}

async fn of_number(app: &TestApp, phone: &str) -> Vec<Value> {
    let path = format!(
        "/api/verifications?phone_number={}",
        phone.replace('+', "%2B")
    );
    let body = ok(lookup(app, &path).await);
    body["verifications"].as_array().unwrap().clone()
}

async fn lookups_do_not_exist_without_a_token(backend: Backend) {
    let (app, _db) = spawn_app(backend).await;

    for path in [
        "/api/verifications/0b6e8a3c-6f1e-4c47-9d51-2b7f2f0d9a10",
        "/api/verifications?phone_number=%2B12125551234",
        "/api/stats",
    ] {
        app.get_with_token(path, Some(TOKEN))
            .await
            .assert_problem(404, "not_found");
    }
}

async fn a_missing_or_wrong_token_is_401_before_anything_else(backend: Backend) {
    let (app, _db) = spawn(backend).await;

    for path in [
        "/api/verifications/0b6e8a3c-6f1e-4c47-9d51-2b7f2f0d9a10",
        "/api/verifications?phone_number=%2B12125551234",
        "/api/stats",
        // Without the token, even a malformed request learns nothing but 401.
        "/api/verifications/not-a-uuid",
        "/api/verifications?phone_number=12",
        "/api/verifications",
        "/api/stats?hours=0",
    ] {
        for token in [None, Some("internal-token-0123456780"), Some("x")] {
            app.get_with_token(path, token)
                .await
                .assert_problem(401, "unauthorized");
        }
    }
}

async fn a_malformed_id_is_422_and_an_unknown_one_404(backend: Backend) {
    let (app, _db) = spawn(backend).await;

    for id in ["not-a-uuid", "0b6e8a3c-6f1e-4c47-9d51", "123"] {
        lookup(&app, &format!("/api/verifications/{id}"))
            .await
            .assert_problem(422, "invalid_request");
    }
    lookup(
        &app,
        "/api/verifications/0b6e8a3c-6f1e-4c47-9d51-2b7f2f0d9a10",
    )
    .await
    .assert_problem(404, "verification_not_found");
}

async fn a_missing_or_bad_number_is_422(backend: Backend) {
    let (app, _db) = spawn(backend).await;

    for path in [
        "/api/verifications",
        "/api/verifications?phone=%2B12125551234",
        "/api/verifications?phone_number=%2B12125551234&limit=3",
    ] {
        lookup(&app, path)
            .await
            .assert_problem(422, "invalid_request");
    }
    for number in ["12125551234", "%2B1212", "%2B1212555123x", ""] {
        lookup(&app, &format!("/api/verifications?phone_number={number}"))
            .await
            .assert_problem(422, "invalid_phone_number");
    }
    // A valid number with nothing sent to it has no verifications.
    assert!(of_number(&app, "+12125551234").await.is_empty());
}

async fn hours_outside_1_to_720_are_422(backend: Backend) {
    let (app, _db) = spawn(backend).await;

    for hours in ["0", "721", "x", "-1", "1.5", ""] {
        lookup(&app, &format!("/api/stats?hours={hours}"))
            .await
            .assert_problem(422, "invalid_request");
    }
    lookup(&app, "/api/stats?days=1")
        .await
        .assert_problem(422, "invalid_request");
    for path in ["/api/stats?hours=1", "/api/stats?hours=720", "/api/stats"] {
        let body = ok(lookup(&app, path).await);
        assert_eq!(body["rows"], json!([]));
        assert_eq!(body["blocks"], json!([]));
    }
}

async fn a_sent_code_is_pending_with_its_message(backend: Backend) {
    let (app, _db) = spawn(backend).await;
    let sent = send(&app, "+12125551234").await;

    let answer = lookup(
        &app,
        &format!(
            "/api/verifications/{}",
            sent["verification_id"].as_str().unwrap()
        ),
    )
    .await;

    assert_eq!(answer.headers["cache-control"], "no-store");
    let found = ok(answer);
    assert_eq!(found["verification_id"], sent["verification_id"]);
    assert_eq!(found["phone_number"], "+12125551234");
    assert_eq!(found["status"], "pending");
    assert_eq!(found["approved_at"], Value::Null);
    assert_eq!(found["expires_at"], sent["expires_at"]);
    assert_eq!(found["attempts"], 0);
    let messages = found["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let message = &messages[0];
    assert!(uuid::Uuid::parse_str(message["message_id"].as_str().unwrap()).is_ok());
    assert_eq!(message["channel"], "sms");
    assert_eq!(message["provider"], "twilio-messaging");
    assert_eq!(
        message["provider_message_id"],
        "SM00000000000000000000000000000001"
    );
    assert_eq!(message["status"], "accepted");
    assert_eq!(message["error_code"], Value::Null);
    assert_eq!(message["fallback_of"], Value::Null);
    for time in [
        &found["created_at"],
        &message["created_at"],
        &message["status_updated_at"],
    ] {
        let time = time::OffsetDateTime::parse(
            time.as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert!(time <= time::OffsetDateTime::now_utc());
    }
}

async fn a_verified_code_is_approved(backend: Backend) {
    let (app, _db) = spawn(backend).await;
    let sent = send(&app, "+12125551234").await;
    let code = app.last_code_for("+12125551234").await;
    let verified = ok(app.verify("+12125551234", &code).await);

    let found = by_id(&app, &sent["verification_id"]).await;

    assert_eq!(found["status"], "approved");
    assert_eq!(found["approved_at"], verified["verified_at"]);
    assert_eq!(found["messages"].as_array().unwrap().len(), 1);
}

async fn an_expired_code_is_expired(backend: Backend) {
    let (app, _db) = spawn(backend).await;
    let sent = send(&app, "+12125551234").await;

    app.clock.advance(Duration::from_secs(601));

    let found = by_id(&app, &sent["verification_id"]).await;
    assert_eq!(found["status"], "expired");
    assert_eq!(found["approved_at"], Value::Null);
}

async fn wrong_codes_up_to_the_max_are_max_attempts_reached(backend: Backend) {
    let (app, _db) = spawn(backend).await;
    let sent = send(&app, "+12125551234").await;
    let wrong = wrong_code(&app.last_code_for("+12125551234").await);

    for left in (1..5).rev() {
        app.verify("+12125551234", &wrong)
            .await
            .assert_problem(400, "invalid_code");
        let found = by_id(&app, &sent["verification_id"]).await;
        assert_eq!(found["status"], "pending", "{left} left");
        assert_eq!(found["attempts"], 5 - left);
    }
    app.verify("+12125551234", &wrong).await;

    let found = by_id(&app, &sent["verification_id"]).await;
    assert_eq!(found["status"], "max_attempts_reached");
    assert_eq!(found["attempts"], 5);
}

async fn a_number_lists_its_verifications_newest_first(backend: Backend) {
    let (app, _db) = spawn(backend).await;
    let first = send(&app, "+12125551234").await;
    let code = app.last_code_for("+12125551234").await;
    ok(app.verify("+12125551234", &code).await);
    app.clock.advance(Duration::from_secs(31));
    let second = send(&app, "+12125551234").await;
    // Another number's verification stays out of the list.
    send(&app, "+12125551235").await;

    let listed = of_number(&app, "+12125551234").await;

    assert_ne!(first["verification_id"], second["verification_id"]);
    let ids: Vec<&Value> = listed.iter().map(|v| &v["verification_id"]).collect();
    assert_eq!(ids, [&second["verification_id"], &first["verification_id"]]);
    assert_eq!(listed[0]["status"], "pending");
    assert_eq!(listed[1]["status"], "approved");
    assert!(listed.iter().all(|v| v["phone_number"] == "+12125551234"));
    // The number may be sent in any form send-code accepts.
    assert_eq!(of_number(&app, "+1 (212) 555-1234").await, listed);
}

async fn verifications_older_than_the_retention_are_not_listed(backend: Backend) {
    let (app, _db) = spawn_with(backend, AppOptions::new().var("DATA_RETENTION_HOURS", 2)).await;
    let code = app.send_and_read_code("+12125551234").await;
    ok(app.verify("+12125551234", &code).await);
    app.clock.advance(Duration::from_secs(3_600 + 60));
    let recent = send(&app, "+12125551234").await;
    assert_eq!(of_number(&app, "+12125551234").await.len(), 2);

    app.clock.advance(Duration::from_secs(3_600));

    let listed = of_number(&app, "+12125551234").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["verification_id"], recent["verification_id"]);
}

/// A custom SMS, through `POST /api/sms/send`.
async fn send_custom(app: &TestApp, phone: &str) {
    let response = app
        .api
        .post(format!("{}/api/sms/send", app.address))
        .bearer_auth(TOKEN)
        .json(&json!({"phone_number": phone, "message": "Your parcel is on its way."}))
        .send()
        .await
        .unwrap();
    ok(TestApp::answer(response).await);
}

async fn stats_count_messages_and_verifications_per_country_and_channel(backend: Backend) {
    let (app, _db) = spawn(backend).await;
    // US: four codes, two verified, and a custom message. GB: four codes, one verified.
    for (phone, verify) in [
        ("+12125550101", true),
        ("+12125550102", false),
        ("+12125550103", true),
        ("+12125550104", false),
        ("+447400123401", false),
        ("+447400123402", true),
        ("+447400123403", false),
        ("+447400123404", false),
    ] {
        let code = app.send_and_read_code(phone).await;
        if verify {
            ok(app.verify(phone, &code).await);
        }
    }
    send_custom(&app, "+12125550105").await;

    let stats = ok(lookup(&app, "/api/stats?hours=24").await);

    assert_eq!(
        stats["rows"],
        json!([
            {"country": "GB", "channel": "sms", "messages": 4, "delivered": 0, "undelivered": 0,
             "rejected": 0, "verified": 1, "conversion_rate": 0.25},
            {"country": "US", "channel": "sms", "messages": 5, "delivered": 0, "undelivered": 0,
             "rejected": 0, "verified": 2, "conversion_rate": 0.5},
        ])
    );
    assert_eq!(
        stats["totals"],
        json!({"messages": 9, "delivered": 0, "undelivered": 0, "rejected": 0, "verified": 3,
               "conversion_rate": 0.375})
    );
    assert_eq!(stats["blocks"], json!([]));
    let time = |name: &str| {
        time::OffsetDateTime::parse(
            stats[name].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert_eq!(time("until") - time("since"), time::Duration::hours(24));
}

async fn stats_count_a_refused_send_as_rejected(backend: Backend) {
    let (app, _db) = spawn(backend).await;
    // Twilio refuses this one number (opted out); every other send goes through.
    Mock::given(method("POST"))
        .and(body_string_contains("To=%2B447400123409"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 21610,
            "message": "Attempt to send to unsubscribed recipient",
            "more_info": "https://www.twilio.com/docs/errors/21610",
            "status": 400
        })))
        .with_priority(1)
        .mount(&app.twilio)
        .await;
    app.send_code("+447400123409")
        .await
        .assert_problem(422, "invalid_phone_number");
    send(&app, "+447400123408").await;

    let stats = ok(lookup(&app, "/api/stats").await);

    let rows = stats["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["country"], "GB");
    assert_eq!(rows[0]["messages"], 2);
    assert_eq!(rows[0]["rejected"], 1);
    assert_eq!(rows[0]["verified"], 0);
    assert_eq!(stats["totals"]["rejected"], 1);
    // Support sees why: the verification failed, its message was refused.
    let listed = of_number(&app, "+447400123409").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["status"], "failed");
    assert_eq!(listed[0]["messages"][0]["status"], "rejected");
    assert_eq!(listed[0]["messages"][0]["error_code"], "21610");
}

async fn stats_cover_only_the_requested_hours(backend: Backend) {
    // Retention longer than the shift, so the purge cannot be what hides the old messages.
    let (app, _db) = spawn_with(backend, AppOptions::new().var("DATA_RETENTION_HOURS", 72)).await;
    send(&app, "+12125551234").await;

    app.clock.advance(Duration::from_secs(25 * 3_600));

    let last_day = ok(lookup(&app, "/api/stats?hours=24").await);
    assert_eq!(last_day["rows"], json!([]));
    assert_eq!(last_day["totals"]["messages"], 0);
    assert_eq!(last_day["totals"]["conversion_rate"], Value::Null);
    let two_days = ok(lookup(&app, "/api/stats?hours=48").await);
    assert_eq!(two_days["totals"]["messages"], 1);
    assert_eq!(two_days["totals"]["conversion_rate"], 0.0);
}
