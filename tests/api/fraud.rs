//! The fraud guard: per prefix and per country, unverified code messages over the limit block the
//! scope; blocks hold across instances and restarts, and can be lifted.

use std::time::Duration;

use futures_util::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

use crate::both_backends;
use crate::helpers::{
    Answer, AppOptions, Backend, TestApp, TestDatabase, spawn_app_with, spawn_on,
};

const TOKEN: &str = "internal-token-0123456789";
/// US numbers in prefix +121255 (FRAUD_PREFIX_DIGITS=6), and in +121355.
const PREFIX: &str = "+121255";
const OTHER_PREFIX: &str = "+121355";

/// The fraud metrics are process-wide: the tests whose sends block anything (these, and the
/// fraud.blocked event's) take turns, so one test's deltas are its own.
pub(crate) static METRICS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

both_backends!(
    an_attack_on_one_prefix_gets_exactly_the_floor_through_two_instances,
    a_second_prefix_gets_through_until_the_country_floor,
    verified_codes_raise_the_allowance_by_the_ratio,
    approvals_racing_through_two_instances_each_count_once,
    promptly_verified_sends_are_never_refused,
    monitor_mode_refuses_nothing_but_records_the_block,
    off_counts_nothing,
    the_safe_list_and_test_numbers_are_never_counted,
    a_failed_send_is_taken_back_out,
    lifting_a_block_forgives_the_unverified,
    a_block_survives_a_restart,
    resends_and_custom_messages_into_a_blocked_prefix_are_refused,
    a_block_is_counted_and_logged_once,
    counts_leave_with_the_window_and_verifications_count_in_their_send_slot,
    sends_and_verifies_racing_on_one_prefix_never_fail,
    an_automatic_fallback_is_counted_and_refused_like_any_send,
);

fn number(prefix: &str, n: usize) -> String {
    format!("{prefix}5{n:04}")
}

/// Enforce mode with the given floors (prefix, country) and the internal token.
fn guarded(prefix_floor: u32, country_floor: u32) -> AppOptions<'static> {
    AppOptions::new()
        .var("FRAUD_GUARD", "enforce")
        .var("FRAUD_MIN_UNVERIFIED_PER_PREFIX", prefix_floor)
        .var("FRAUD_MIN_UNVERIFIED_PER_COUNTRY", country_floor)
        .var("INTERNAL_API_TOKEN", TOKEN)
}

async fn blocks(app: &TestApp) -> Vec<Value> {
    let answer = app.get_with_token("/api/fraud/blocks", Some(TOKEN)).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.body["blocks"].as_array().unwrap().clone()
}

async fn lift(app: &TestApp, key: &str) -> Answer {
    let response = app
        .api
        .delete(format!("{}/api/fraud/blocks/{key}", app.address))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    TestApp::answer(response).await
}

/// Sends codes to numbers `from..to` of `prefix`, one after another; returns the statuses.
async fn send_range(app: &TestApp, prefix: &str, from: usize, to: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for n in from..to {
        statuses.push(app.send_code(&number(prefix, n)).await.status.as_u16());
    }
    statuses
}

/// Sends and verifies a code for each of numbers `from..to`.
async fn send_and_verify(app: &TestApp, prefix: &str, from: usize, to: usize) {
    for n in from..to {
        let phone = number(prefix, n);
        let code = app.send_and_read_code(&phone).await;
        let answer = app.verify(&phone, &code).await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    }
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

async fn an_attack_on_one_prefix_gets_exactly_the_floor_through_two_instances(backend: Backend) {
    let _turn = METRICS.lock().await;
    let db = TestDatabase::new(backend).await;
    let a = spawn_on(&db, guarded(5, 100)).await;
    let b = spawn_on(&db, guarded(5, 100)).await;

    let (x, y) = tokio::join!(
        join_all((0..30).map(|n| send_owned(&a, number(PREFIX, n)))),
        join_all((30..60).map(|n| send_owned(&b, number(PREFIX, n)))),
    );
    let answers: Vec<&Answer> = x.iter().chain(&y).collect();

    let sent = a.sent_messages().await.len() + b.sent_messages().await.len();
    assert_eq!(sent, 5, "SMS that reached the provider");
    assert_eq!(
        answers
            .iter()
            .filter(|r| r.status == StatusCode::OK)
            .count(),
        5
    );
    for refused in answers.iter().filter(|r| r.status != StatusCode::OK) {
        refused.assert_problem(403, "destination_blocked");
    }
    let listed = blocks(&a).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["scope"], "prefix");
    assert_eq!(listed[0]["key"], PREFIX);
    assert_eq!(listed[0]["unverified"], 5);
    assert_eq!(listed[0]["verified"], 0);
    assert_eq!(blocks(&b).await, listed);
    a.stop().await;
    b.stop().await;
}

async fn a_second_prefix_gets_through_until_the_country_floor(backend: Backend) {
    let _turn = METRICS.lock().await;
    let (app, _db) = spawn_app_with(backend, guarded(5, 8)).await;

    let first = send_range(&app, PREFIX, 0, 7).await;
    assert_eq!(first, [200, 200, 200, 200, 200, 403, 403]);
    // The country has 5 of its 8; the second prefix gets the other 3.
    let second = send_range(&app, OTHER_PREFIX, 0, 5).await;
    assert_eq!(second, [200, 200, 200, 403, 403]);
    assert_eq!(app.sent_messages().await.len(), 8);

    let listed = blocks(&app).await;
    let keys: Vec<(&str, &str)> = listed
        .iter()
        .map(|b| (b["scope"].as_str().unwrap(), b["key"].as_str().unwrap()))
        .collect();
    assert!(keys.contains(&("prefix", PREFIX)), "{listed:?}");
    assert!(keys.contains(&("country", "US")), "{listed:?}");
    assert!(!keys.contains(&("prefix", OTHER_PREFIX)), "{listed:?}");
    // A third prefix in the country is refused as well.
    app.send_code("+13125551234")
        .await
        .assert_problem(403, "destination_blocked");
}

async fn verified_codes_raise_the_allowance_by_the_ratio(backend: Backend) {
    let _turn = METRICS.lock().await;
    for (ratio, allowed) in [("1.0", 4), ("0.5", 2)] {
        let (app, _db) = spawn_app_with(
            backend,
            guarded(2, 1000).var("FRAUD_UNVERIFIED_RATIO", ratio),
        )
        .await;
        // V = 4: the allowance is max(2, ratio x 4) unverified messages.
        send_and_verify(&app, PREFIX, 0, 4).await;
        let statuses = send_range(&app, PREFIX, 4, 4 + allowed + 2).await;
        assert_eq!(
            count(&statuses, 200),
            allowed,
            "ratio {ratio}: {statuses:?}"
        );
        assert_eq!(&statuses[..allowed], vec![200; allowed], "ratio {ratio}");
        let listed = blocks(&app).await;
        assert_eq!(listed[0]["unverified"], allowed, "ratio {ratio}");
        assert_eq!(listed[0]["verified"], 4, "ratio {ratio}");
    }
}

/// Approvals are counted by the scope's next send (Postgres) or at once (SQLite); either way each
/// counts exactly once, however the flows interleave across instances.
async fn approvals_racing_through_two_instances_each_count_once(backend: Backend) {
    let _turn = METRICS.lock().await;
    let db = TestDatabase::new(backend).await;
    let options = || guarded(30, 1000).var("FRAUD_UNVERIFIED_RATIO", "2.0");
    let a = spawn_on(&db, options()).await;
    let b = spawn_on(&db, options()).await;

    // 24 flows at once, each sent through one instance and verified through the other.
    let flow = |n: usize| {
        let (sender, verifier) = if n.is_multiple_of(2) {
            (&a, &b)
        } else {
            (&b, &a)
        };
        async move {
            let phone = number(PREFIX, n);
            let code = sender.send_and_read_code(&phone).await;
            verifier.verify(&phone, &code).await.status
        }
    };
    let verified = join_all((0..24).map(flow)).await;
    assert_eq!(verified, vec![StatusCode::OK; 24]);

    // V = 24, so exactly max(30, 2.0 x 24) = 48 unverified messages get through.
    let statuses = send_range(&a, PREFIX, 24, 24 + 50).await;
    assert_eq!(&statuses[..48], vec![200; 48]);
    assert_eq!(&statuses[48..], [403, 403]);
    let listed = blocks(&b).await;
    assert_eq!(listed[0]["unverified"], 48, "{listed:?}");
    assert_eq!(listed[0]["verified"], 24, "{listed:?}");
    a.stop().await;
    b.stop().await;
}

async fn promptly_verified_sends_are_never_refused(backend: Backend) {
    let _turn = METRICS.lock().await;
    let (app, _db) = spawn_app_with(backend, guarded(5, 5)).await;

    send_and_verify(&app, PREFIX, 0, 40).await;

    assert!(blocks(&app).await.is_empty());
    assert_eq!(app.sent_messages().await.len(), 40);
}

async fn monitor_mode_refuses_nothing_but_records_the_block(backend: Backend) {
    let _turn = METRICS.lock().await;
    let (app, _db) = spawn_app_with(backend, guarded(5, 1000).var("FRAUD_GUARD", "monitor")).await;

    let statuses = send_range(&app, PREFIX, 0, 10).await;

    assert_eq!(statuses, vec![200; 10]);
    let listed = blocks(&app).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["key"], PREFIX);
    assert_eq!(listed[0]["unverified"], 5);
}

async fn off_counts_nothing(backend: Backend) {
    let _turn = METRICS.lock().await;
    let (app, _db) = spawn_app_with(backend, guarded(2, 2).var("FRAUD_GUARD", "off")).await;

    let statuses = send_range(&app, PREFIX, 0, 6).await;

    assert_eq!(statuses, vec![200; 6]);
    assert!(blocks(&app).await.is_empty());
}

async fn the_safe_list_and_test_numbers_are_never_counted(backend: Backend) {
    let _turn = METRICS.lock().await;
    let test_numbers = (0..3)
        .map(|n| format!("{}=123456", number(OTHER_PREFIX, n)))
        .collect::<Vec<_>>()
        .join(",");
    let (app, _db) = spawn_app_with(
        backend,
        guarded(2, 1000)
            .var("FRAUD_SAFE_LIST", format!("{PREFIX},+13125551234"))
            .var("TEST_PHONE_NUMBERS", test_numbers),
    )
    .await;

    assert_eq!(send_range(&app, PREFIX, 0, 5).await, vec![200; 5]);
    assert_eq!(send_range(&app, OTHER_PREFIX, 0, 3).await, vec![200; 3]);
    assert_eq!(app.send_code("+13125551234").await.status, StatusCode::OK);
    assert!(blocks(&app).await.is_empty());
    // The test numbers left the other prefix's count at zero: two real ones still get through.
    assert_eq!(send_range(&app, OTHER_PREFIX, 3, 6).await, [200, 200, 403]);
}

async fn a_failed_send_is_taken_back_out(backend: Backend) {
    let _turn = METRICS.lock().await;
    let (app, _db) = spawn_app_with(backend, guarded(2, 1000).var("TWILIO_MAX_RETRIES", 0)).await;
    app.twilio.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&app.twilio)
        .await;

    let failed = send_range(&app, PREFIX, 0, 4).await;
    assert_eq!(failed, vec![503; 4]);

    app.twilio.reset().await;
    Mock::given(method("POST"))
        .respond_with(crate::helpers::message_created())
        .mount(&app.twilio)
        .await;
    assert_eq!(send_range(&app, PREFIX, 4, 7).await, [200, 200, 403]);
}

async fn lifting_a_block_forgives_the_unverified(backend: Backend) {
    let _turn = METRICS.lock().await;
    let (app, _db) = spawn_app_with(backend, guarded(3, 1000)).await;
    assert_eq!(send_range(&app, PREFIX, 0, 4).await, [200, 200, 200, 403]);

    let answer = lift(&app, "%2B121255").await;

    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{:?}", answer.body);
    assert!(blocks(&app).await.is_empty());
    // Forgiven: the floor's worth again, then blocked again.
    assert_eq!(send_range(&app, PREFIX, 4, 8).await, [200, 200, 200, 403]);
    assert_eq!(blocks(&app).await.len(), 1);
    // Nothing to lift under other keys.
    lift(&app, "US")
        .await
        .assert_problem(404, "block_not_found");
    lift(&app, "%2B447400")
        .await
        .assert_problem(404, "block_not_found");
    lift(&app, "not-a-key")
        .await
        .assert_problem(404, "block_not_found");
    assert_eq!(lift(&app, "%2B121255").await.status, StatusCode::NO_CONTENT);
    lift(&app, "%2B121255")
        .await
        .assert_problem(404, "block_not_found");
}

async fn a_block_survives_a_restart(backend: Backend) {
    let _turn = METRICS.lock().await;
    let db = TestDatabase::new(backend).await;
    let first = spawn_on(&db, guarded(2, 1000)).await;
    assert_eq!(send_range(&first, PREFIX, 0, 3).await, [200, 200, 403]);
    first.stop().await;

    let second = spawn_on(&db, guarded(2, 1000)).await;

    second
        .send_code(&number(PREFIX, 9))
        .await
        .assert_problem(403, "destination_blocked");
    assert!(second.sent_messages().await.is_empty());
    assert_eq!(blocks(&second).await.len(), 1);
}

async fn resends_and_custom_messages_into_a_blocked_prefix_are_refused(backend: Backend) {
    let _turn = METRICS.lock().await;
    let (app, _db) = spawn_app_with(backend, guarded(2, 1000)).await;
    // Custom messages have no code: never counted.
    for n in 0..4 {
        let answer = custom_sms(&app, &number(PREFIX, n)).await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    }
    assert!(blocks(&app).await.is_empty());
    assert_eq!(send_range(&app, PREFIX, 0, 3).await, [200, 200, 403]);
    app.clock.advance(Duration::from_secs(31));

    app.resend_code(&number(PREFIX, 0))
        .await
        .assert_problem(403, "destination_blocked");
    custom_sms(&app, &number(PREFIX, 7))
        .await
        .assert_problem(403, "destination_blocked");
    // 4 custom messages and 2 codes.
    assert_eq!(app.sent_messages().await.len(), 6);
}

async fn custom_sms(app: &TestApp, phone: &str) -> Answer {
    let response = app
        .api
        .post(format!("{}/api/sms/send", app.address))
        .bearer_auth(TOKEN)
        .json(&json!({"phone_number": phone, "message": "Your parcel is on the way"}))
        .send()
        .await
        .unwrap();
    TestApp::answer(response).await
}

async fn send_owned(app: &TestApp, phone: String) -> Answer {
    app.send_code(&phone).await
}

async fn metric(app: &TestApp, series: &str) -> f64 {
    let response = app.api.get(format!("{}/metrics", app.address)).send().await;
    let text = response.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().unwrap())
        .unwrap_or(0.0)
}

async fn a_block_is_counted_and_logged_once(backend: Backend) {
    let _turn = METRICS.lock().await;
    let (app, _db) = spawn_app_with(backend, guarded(2, 1000)).await;
    let blocks_before = metric(&app, r#"fraud_blocks_total{scope="prefix"}"#).await;
    let refusals_before = metric(&app, r#"fraud_refusals_total{scope="prefix"}"#).await;

    let statuses = join_all((0..12).map(|n| send_owned(&app, number(PREFIX, n)))).await;

    assert_eq!(
        statuses
            .iter()
            .filter(|a| a.status == StatusCode::OK)
            .count(),
        2
    );
    let blocks_after = metric(&app, r#"fraud_blocks_total{scope="prefix"}"#).await;
    let refusals_after = metric(&app, r#"fraud_refusals_total{scope="prefix"}"#).await;
    assert_eq!(blocks_after - blocks_before, 1.0);
    assert_eq!(refusals_after - refusals_before, 10.0);
}

async fn counts_leave_with_the_window_and_verifications_count_in_their_send_slot(backend: Backend) {
    let _turn = METRICS.lock().await;
    // A 60-minute window in 1-minute slots; blocks of 1 minute.
    let (app, _db) = spawn_app_with(
        backend,
        guarded(2, 1000)
            .var("FRAUD_WINDOW_MINUTES", 60)
            .var("FRAUD_BLOCK_MINUTES", 1),
    )
    .await;
    assert_eq!(send_range(&app, PREFIX, 0, 3).await, [200, 200, 403]);

    // The block is over, but the two unverified are still in the window: blocked again.
    app.clock.advance(Duration::from_secs(2 * 60));
    assert_eq!(send_range(&app, PREFIX, 3, 4).await, [403]);

    // An hour on they have left it: the floor's worth again. One is verified in a later slot
    // than its send, and still counts as verified where it was sent.
    app.clock.advance(Duration::from_secs(61 * 60));
    let phone = number(PREFIX, 10);
    let code = app.send_and_read_code(&phone).await;
    app.clock.advance(Duration::from_secs(3 * 60));
    assert_eq!(app.verify(&phone, &code).await.status, StatusCode::OK);
    // U = 0, V = 1: two more unverified are allowed (max(2, 1)), the third is refused.
    assert_eq!(send_range(&app, PREFIX, 11, 14).await, [200, 200, 403]);
    let listed = blocks(&app).await;
    assert_eq!(listed[0]["unverified"], 2, "{listed:?}");
    assert_eq!(listed[0]["verified"], 1, "{listed:?}");
}

/// Sends lock the number's row, then the prefix's and the country's; a verify holds the number's
/// row while it converts in the same two. Racing both on one number and one prefix must end in
/// answers, never in a deadlock's 500 or a lock timeout's 503.
async fn sends_and_verifies_racing_on_one_prefix_never_fail(backend: Backend) {
    let _turn = METRICS.lock().await;
    let (app, _db) = spawn_app_with(
        backend,
        guarded(1000, 1000)
            .var("RESEND_COOLDOWN_SECONDS", 0)
            .var("MAX_SENDS_PER_HOUR", 1000),
    )
    .await;
    let phones: Vec<String> = (0..8).map(|n| number(PREFIX, n)).collect();
    let mut codes = Vec::new();
    for phone in &phones {
        codes.push(app.send_and_read_code(phone).await);
    }

    let work = phones.iter().zip(&codes).flat_map(|(phone, code)| {
        let app = &app;
        [
            Box::pin(async move { app.verify(phone, code).await })
                as std::pin::Pin<Box<dyn std::future::Future<Output = Answer> + Send + '_>>,
            Box::pin(async move { app.send_code(phone).await }),
            Box::pin(async move { app.verify(phone, &crate::helpers::wrong_code(code)).await }),
            Box::pin(async move { app.send_code(phone).await }),
        ]
    });
    let answers = join_all(work).await;

    for answer in &answers {
        assert!(answer.status.as_u16() < 500, "{:?}", answer.body);
    }
    let verified = answers
        .iter()
        .filter(|a| a.body["status"] == "approved")
        .count();
    assert!(verified <= phones.len());
}

async fn an_automatic_fallback_is_counted_and_refused_like_any_send(backend: Backend) {
    let _turn = METRICS.lock().await;
    let options = crate::fallback::sms_then_call()
        .var("FRAUD_GUARD", "enforce")
        .var("FRAUD_MIN_UNVERIFIED_PER_PREFIX", 1)
        .var("FRAUD_MIN_UNVERIFIED_PER_COUNTRY", 100)
        .var("INTERNAL_API_TOKEN", TOKEN);
    let (app, _db) = spawn_app_with(backend, options).await;
    // The first code to the prefix is counted (one unverified, the floor)...
    app.send_and_read_code("+12125551234").await;

    // ...so its fallback, a send like any other, is over the floor: refused, and the block made.
    let report = crate::callbacks::message_report(crate::fallback::SID, "undelivered");
    let answer = crate::callbacks::post_signed(&app, &report).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert!(crate::channels::calls(&app).await.is_empty());
    let blocks = blocks(&app).await;
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(blocks[0]["key"], "+121255");
}
