//! TEST_PHONE_NUMBERS: fixed codes, nothing sent.

use reqwest::StatusCode;

use crate::helpers::{AppOptions, Backend, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_number_gets_its_fixed_code_and_no_sms() {
    for options in [AppOptions::new(), AppOptions::new().twilio_verify()] {
        let (app, _db) = spawn_app_with(
            Backend::Sqlite,
            options.var(
                "TEST_PHONE_NUMBERS",
                "+15005550006=123456, +15005550007=000111",
            ),
        )
        .await;

        let answer = app.send_code("+1 500 555 0006").await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        app.verify("+15005550006", "654321")
            .await
            .assert_problem(400, "invalid_code");
        assert_eq!(
            app.verify("+15005550006", "123456").await.status,
            StatusCode::OK
        );

        assert!(
            app.twilio_requests().await.is_empty(),
            "nothing goes to Twilio"
        );
        // Other numbers are sent as usual.
        assert_eq!(app.send_code("+12125551234").await.status, StatusCode::OK);
        assert_eq!(app.twilio_requests().await.len(), 1);
    }
}
