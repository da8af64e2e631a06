//! Races: many requests at once must not get past any limit.

use futures_util::future::join_all;
use reqwest::StatusCode;

use crate::both_backends;
use crate::helpers::{Backend, spawn_app, wrong_code};

both_backends!(
    fifty_parallel_verifies_with_the_right_code_approve_exactly_once,
    fifty_parallel_wrong_guesses_are_counted_exactly_max_attempts_times,
    twenty_parallel_sends_to_one_number_send_exactly_one_sms,
);

fn count(statuses: &[(StatusCode, String)], status: u16, code: &str) -> usize {
    statuses
        .iter()
        .filter(|(s, c)| s.as_u16() == status && c == code)
        .count()
}

async fn fifty_parallel_verifies_with_the_right_code_approve_exactly_once(backend: Backend) {
    let (app, _db) = spawn_app(backend).await;
    let code = app.send_and_read_code("+12125551234").await;

    let answers = join_all((0..50).map(|_| app.verify("+12125551234", &code))).await;

    let statuses: Vec<_> = answers
        .iter()
        .map(|a| (a.status, a.code().to_string()))
        .collect();
    assert_eq!(count(&statuses, 200, ""), 1, "{statuses:?}");
    assert_eq!(
        count(&statuses, 404, "verification_not_found"),
        49,
        "{statuses:?}"
    );
}

async fn fifty_parallel_wrong_guesses_are_counted_exactly_max_attempts_times(backend: Backend) {
    let (app, _db) = spawn_app(backend).await;
    let code = app.send_and_read_code("+12125551234").await;
    let wrong = wrong_code(&code);

    let answers = join_all((0..50).map(|_| app.verify("+12125551234", &wrong))).await;

    let statuses: Vec<_> = answers
        .iter()
        .map(|a| (a.status, a.code().to_string()))
        .collect();
    assert_eq!(count(&statuses, 400, "invalid_code"), 5, "{statuses:?}");
    assert_eq!(
        count(&statuses, 429, "max_attempts_reached"),
        45,
        "{statuses:?}"
    );
    let mut remaining: Vec<_> = answers
        .iter()
        .filter_map(|a| a.body["attempts_remaining"].as_u64())
        .collect();
    remaining.sort();
    assert_eq!(remaining, [0, 1, 2, 3, 4]);
    // The right code gets no sixth chance.
    app.verify("+12125551234", &code)
        .await
        .assert_problem(429, "max_attempts_reached");
}

async fn twenty_parallel_sends_to_one_number_send_exactly_one_sms(backend: Backend) {
    let (app, _db) = spawn_app(backend).await;

    let answers = join_all((0..20).map(|_| app.send_code("+12125551234"))).await;

    let statuses: Vec<_> = answers
        .iter()
        .map(|a| (a.status, a.code().to_string()))
        .collect();
    assert_eq!(count(&statuses, 200, ""), 1, "{statuses:?}");
    assert_eq!(count(&statuses, 429, "resend_too_soon"), 19, "{statuses:?}");
    assert_eq!(app.sent_messages().await.len(), 1);
    let code = app.last_code_for("+12125551234").await;
    assert_eq!(
        app.verify("+12125551234", &code).await.status,
        StatusCode::OK
    );
}
