//! Several instances on one database, and restarts.

use std::time::Duration;

use reqwest::StatusCode;

use crate::both_backends;
use crate::helpers::{AppOptions, Backend, TestDatabase, spawn_on};

both_backends!(a_restart_keeps_pending_codes_verifiable);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_postgres_database_share_codes_and_limits() {
    let db = TestDatabase::new(Backend::Postgres).await;
    let a = spawn_on(&db, AppOptions::new()).await;
    let b = spawn_on(&db, AppOptions::new().clock(a.clock.clone())).await;

    // A code sent through one instance verifies on the other.
    let code = a.send_and_read_code("+12125551234").await;
    assert_eq!(b.verify("+12125551234", &code).await.status, StatusCode::OK);

    // The cooldown set through one holds on the other.
    a.clock.advance(Duration::from_secs(31));
    let code = b.send_and_read_code("+12125551234").await;
    a.send_code("+12125551234")
        .await
        .assert_problem(429, "resend_too_soon");
    a.resend_code("+12125551234")
        .await
        .assert_problem(429, "resend_too_soon");

    // Wrong attempts add up across instances.
    let wrong = crate::helpers::wrong_code(&code);
    for _ in 0..3 {
        a.verify("+12125551234", &wrong).await;
    }
    let answer = b.verify("+12125551234", &wrong).await;
    assert_eq!(answer.body["attempts_remaining"], 1);

    // Parallel sends through both instances: one SMS in total.
    a.clock.advance(Duration::from_secs(31));
    let (x, y) = tokio::join!(
        futures_util::future::join_all((0..10).map(|_| a.send_code("+12125550000"))),
        futures_util::future::join_all((0..10).map(|_| b.send_code("+12125550000"))),
    );
    let ok = x
        .iter()
        .chain(&y)
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert_eq!(ok, 1);

    a.stop().await;
    b.stop().await;
}

async fn a_restart_keeps_pending_codes_verifiable(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let first = spawn_on(&db, AppOptions::new()).await;
    let code = first.send_and_read_code("+12125551234").await;
    let clock = first.clock.clone();
    first.stop().await;

    let second = spawn_on(&db, AppOptions::new().clock(clock)).await;

    second
        .send_code("+12125551234")
        .await
        .assert_problem(429, "resend_too_soon");
    assert_eq!(
        second.verify("+12125551234", &code).await.status,
        StatusCode::OK
    );
    second.stop().await;
}
