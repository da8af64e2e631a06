//! `spawn_app()`: the real application on a random port, a fresh database, and a fake Twilio.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use phone_verify::clock::ShiftedClock;
use phone_verify::config::Config;
use phone_verify::startup::Application;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Admin connection used to create one database per test. Override with `TEST_DATABASE_URL`.
const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub const TWILIO_SID: &str = "ACtest00000000000000000000000000";
pub const TWILIO_TOKEN: &str = "test-auth-token-never-logged";
pub const TWILIO_FROM: &str = "+15005550006";
pub const VERIFY_SERVICE: &str = "VAtest00000000000000000000000000";

/// A fake of Twilio Verify that behaves like the real one: it makes a code per number, re-sends the
/// same one while pending, answers a check with approved / pending (wrong code) / 404 (no
/// verification), and forgets a verification once approved.
#[derive(Clone, Default)]
pub struct FakeVerify {
    pub codes: Arc<Mutex<HashMap<String, String>>>,
}

struct CreateVerification(FakeVerify);
struct CheckVerification(FakeVerify);

fn form(request: &Request) -> HashMap<String, String> {
    serde_urlencoded::from_bytes(&request.body).unwrap_or_default()
}

impl Respond for CreateVerification {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let to = form(request).remove("To").unwrap_or_default();
        let mut codes = self.0.codes.lock().unwrap();
        codes.entry(to.clone()).or_insert_with(|| {
            phone_verify::domain::VerificationCode::generate(6)
                .expose()
                .to_string()
        });
        ResponseTemplate::new(201).set_body_json(json!({
            "sid": "VE00000000000000000000000000000001",
            "service_sid": VERIFY_SERVICE,
            "to": to,
            "channel": "sms",
            "status": "pending",
            "valid": false,
        }))
    }
}

impl Respond for CheckVerification {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut fields = form(request);
        let to = fields.remove("To").unwrap_or_default();
        let code = fields.remove("Code").unwrap_or_default();
        let mut codes = self.0.codes.lock().unwrap();
        match codes.get(&to) {
            None => ResponseTemplate::new(404).set_body_json(json!({
                "code": 20404,
                "message": "The requested resource /Services/VA/VerificationCheck was not found",
                "more_info": "https://www.twilio.com/docs/errors/20404",
                "status": 404
            })),
            Some(expected) if *expected == code => {
                codes.remove(&to);
                ResponseTemplate::new(200).set_body_json(json!({
                    "sid": "VE00000000000000000000000000000001",
                    "to": to, "channel": "sms", "status": "approved", "valid": true
                }))
            }
            Some(_) => ResponseTemplate::new(200).set_body_json(json!({
                "sid": "VE00000000000000000000000000000001",
                "to": to, "channel": "sms", "status": "pending", "valid": false
            })),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A database that lives as long as the test: a fresh Postgres database or a temp SQLite file.
pub struct TestDatabase {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    /// The server and name of a Postgres database this test made, dropped with it.
    made: Option<(String, String)>,
}

impl TestDatabase {
    /// A database someone else made (and cleans up): the drills' private clusters.
    #[allow(dead_code)]
    pub fn existing(url: String) -> Self {
        Self {
            url,
            _dir: None,
            made: None,
        }
    }

    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Postgres => {
                let admin_url = std::env::var("TEST_DATABASE_URL")
                    .unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_string());
                let name = format!("pv_test_{}", uuid::Uuid::new_v4().simple());
                let pool = sqlx::PgPool::connect(&admin_url).await.unwrap_or_else(|e| {
                    panic!(
                        "The Postgres tests need a server: could not connect to {admin_url} ({e}). \
                         Start one (pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start) \
                         or point TEST_DATABASE_URL at a server where this user may CREATE DATABASE."
                    )
                });
                sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
                    .execute(&pool)
                    .await
                    .expect("create the test database");
                pool.close().await;
                let url = match admin_url.rsplit_once('/') {
                    Some((server, _)) => format!("{server}/{name}"),
                    None => panic!("TEST_DATABASE_URL must end in /<database>"),
                };
                Self {
                    url,
                    _dir: None,
                    made: Some((admin_url, name)),
                }
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}/phone-verify.db", dir.path().display());
                Self {
                    url,
                    _dir: Some(dir),
                    made: None,
                }
            }
        }
    }
}

/// Drops the test's Postgres database, so that test runs do not fill the disk (each is ~8 MB).
/// On a thread of its own: `Drop` cannot await, and the test's runtime may be shutting down.
impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.made.take() else {
            return;
        };
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test database");
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                // `force`: an instance of the test may still hold connections.
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "drop database if exists {name} with (force)"
                )))
                .execute(&mut admin)
                .await
                .map(drop)
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop a test database: {e}");
        }
    }
}

pub struct TestApp {
    pub address: String,
    pub api: reqwest::Client,
    pub twilio: MockServer,
    pub fake_verify: FakeVerify,
    pub clock: ShiftedClock,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

/// Builder for one instance: extra variables, and the database and clock it shares with others.
pub struct AppOptions<'a> {
    pub vars: Vec<(&'a str, String)>,
    pub clock: Option<ShiftedClock>,
}

impl<'a> AppOptions<'a> {
    pub fn new() -> Self {
        Self {
            vars: Vec::new(),
            clock: None,
        }
    }

    pub fn var(mut self, name: &'a str, value: impl ToString) -> Self {
        self.vars.push((name, value.to_string()));
        self
    }

    pub fn clock(mut self, clock: ShiftedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Codes through Twilio Verify (the fake) instead of Messaging.
    pub fn twilio_verify(self) -> Self {
        self.var("SMS_PROVIDER", "twilio-verify")
            .var("TWILIO_VERIFY_SERVICE_SID", VERIFY_SERVICE)
    }
}

/// Starts the app on a fresh database of the given backend.
pub async fn spawn_app(backend: Backend) -> (TestApp, TestDatabase) {
    spawn_app_with(backend, AppOptions::new()).await
}

pub async fn spawn_app_with(backend: Backend, options: AppOptions<'_>) -> (TestApp, TestDatabase) {
    let db = TestDatabase::new(backend).await;
    let app = spawn_on(&db, options).await;
    (app, db)
}

/// Starts one more instance on an existing database.
pub async fn spawn_on(db: &TestDatabase, options: AppOptions<'_>) -> TestApp {
    init_test_logging();
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/2010-04-01/Accounts/[^/]+/Messages\.json$"))
        .respond_with(message_created())
        .mount(&twilio)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/2010-04-01/Accounts/[^/]+/Calls\.json$"))
        .respond_with(call_created())
        .mount(&twilio)
        .await;
    let fake_verify = FakeVerify::default();
    mount_fake_verify(&twilio, &fake_verify).await;

    let mut vars: HashMap<String, String> = [
        ("BIND_ADDR", "127.0.0.1:0".to_string()),
        ("DATABASE_URL", db.url.clone()),
        ("SMS_PROVIDER", "twilio-messaging".into()),
        ("TWILIO_ACCOUNT_SID", TWILIO_SID.into()),
        ("TWILIO_AUTH_TOKEN", TWILIO_TOKEN.into()),
        ("TWILIO_PHONE_NUMBER", TWILIO_FROM.into()),
        ("TWILIO_API_BASE_URL", twilio.uri()),
        ("TWILIO_VERIFY_BASE_URL", twilio.uri()),
        ("TWILIO_RETRY_BASE_MS", "1".to_string()),
        // Every test comes from 127.0.0.1: the per-IP limits have tests of their own.
        ("RATE_LIMIT_PER_IP_PER_MINUTE", "100000".to_string()),
        ("MAX_SENDS_PER_IP_PER_HOUR", "100000".to_string()),
        // The fraud guard counts every send (monitor mode) but blocks nothing: its blocks, and the
        // process-wide metrics they count, have tests of their own (fraud.rs).
        ("FRAUD_MIN_UNVERIFIED_PER_PREFIX", "1000000".to_string()),
        ("FRAUD_MIN_UNVERIFIED_PER_COUNTRY", "1000000".to_string()),
        (
            "CODE_HASH_SECRET",
            "test-code-hash-secret-0123456789abcdef".into(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in options.vars {
        vars.insert(k.to_string(), v);
    }
    let config = Config::from_source(&vars).expect("test configuration is valid");
    let clock = options.clock.unwrap_or_default();
    let app = Application::build_with_clock(config, Arc::new(clock.clone()))
        .await
        .expect("the application starts");
    let address = format!("http://{}", app.local_addr());
    let (tx, rx) = oneshot::channel();
    let server = tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    TestApp {
        address,
        api: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        twilio,
        fake_verify,
        clock,

        shutdown: Some(tx),
        server: Some(server),
    }
}

pub async fn mount_fake_verify(server: &MockServer, fake: &FakeVerify) {
    Mock::given(method("POST"))
        .and(path_regex(r"^/v2/Services/[^/]+/Verifications$"))
        .respond_with(CreateVerification(fake.clone()))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/v2/Services/[^/]+/VerificationCheck$"))
        .respond_with(CheckVerification(fake.clone()))
        .mount(server)
        .await;
}

pub fn message_created() -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "sid": "SM00000000000000000000000000000001",
        "status": "queued",
        "to": "+12125551234",
        "from": TWILIO_FROM,
    }))
}

pub fn call_created() -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "sid": "CA00000000000000000000000000000001",
        "status": "queued",
        "to": "+12125551234",
        "from": TWILIO_FROM,
    }))
}

/// The answer an API test reads: status, headers and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    pub fn retry_after_header(&self) -> Option<u64> {
        self.headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }

    /// Asserts a problem+json answer with this status and code.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{:?}", self.body);
        assert_eq!(self.code(), code, "{:?}", self.body);
        assert_eq!(self.content_type(), "application/problem+json");
        assert_eq!(self.body["status"], status);
        assert_eq!(self.body["type"], "about:blank");
        assert!(self.body["title"].is_string());
        assert!(self.body["detail"].is_string());
        // The occurrence is the request id the answer carries in its header.
        let request_id = self.headers["x-request-id"].to_str().unwrap();
        assert_eq!(self.body["instance"], format!("urn:uuid:{request_id}"));
    }
}

impl TestApp {
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Answer {
        let mut request = self.api.post(format!("{}{}", self.address, path));
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = request.body(body).send().await.expect("request sent");
        Self::answer(response).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Answer {
        self.post_raw(path, Some("application/json"), body.to_string())
            .await
    }

    pub async fn get(&self, path: &str) -> Answer {
        let response = self
            .api
            .get(format!("{}{}", self.address, path))
            .send()
            .await
            .expect("request sent");
        Self::answer(response).await
    }

    /// A GET with `Authorization: Bearer <token>`, as the internal endpoints want.
    pub async fn get_with_token(&self, path: &str, token: Option<&str>) -> Answer {
        let mut request = self.api.get(format!("{}{}", self.address, path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Self::answer(request.send().await.expect("request sent")).await
    }

    /// Reads a response the way a client would: status, headers, JSON body (or null).
    pub async fn answer(response: reqwest::Response) -> Answer {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body read");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn send_code(&self, phone: &str) -> Answer {
        self.post_json("/api/auth/phone/send-code", &json!({"phone_number": phone}))
            .await
    }

    pub async fn resend_code(&self, phone: &str) -> Answer {
        self.post_json(
            "/api/auth/phone/resend-code",
            &json!({"phone_number": phone}),
        )
        .await
    }

    pub async fn verify(&self, phone: &str, code: &str) -> Answer {
        self.post_json(
            "/api/auth/phone/verify",
            &json!({"phone_number": phone, "code": code}),
        )
        .await
    }

    /// The form fields of every message the fake Twilio received, oldest first.
    pub async fn sent_messages(&self) -> Vec<HashMap<String, String>> {
        self.twilio
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.url.path().ends_with("/Messages.json"))
            .map(|r| serde_urlencoded::from_bytes(&r.body).expect("form body"))
            .collect()
    }

    /// Every request the fake Twilio received, oldest first.
    pub async fn twilio_requests(&self) -> Vec<Request> {
        self.twilio.received_requests().await.unwrap_or_default()
    }

    /// How many requests went to paths ending in `suffix`.
    pub async fn twilio_calls(&self, suffix: &str) -> usize {
        self.twilio_requests()
            .await
            .iter()
            .filter(|r| r.url.path().ends_with(suffix))
            .count()
    }

    /// The code the fake Twilio Verify holds for this number.
    pub fn verify_code_for(&self, e164: &str) -> String {
        self.fake_verify
            .codes
            .lock()
            .unwrap()
            .get(e164)
            .cloned()
            .unwrap_or_else(|| panic!("Twilio Verify has no verification for {e164}"))
    }

    /// The code in the last SMS the fake received for this E.164 number.
    pub async fn last_code_for(&self, e164: &str) -> String {
        let messages = self.sent_messages().await;
        let message = messages
            .iter()
            .rev()
            .find(|m| m.get("To").map(String::as_str) == Some(e164))
            .unwrap_or_else(|| panic!("no SMS was sent to {e164}"));
        message["Body"]
            .chars()
            .filter(char::is_ascii_digit)
            .collect()
    }

    /// Sends a code and returns it, asserting the send worked.
    pub async fn send_and_read_code(&self, phone: &str) -> String {
        let answer = self.send_code(phone).await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        self.last_code_for(answer.body["phone_number"].as_str().unwrap())
            .await
    }

    /// Stops accepting connections and waits for in-flight requests.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }
}

/// Tests are quiet unless `TEST_LOG=1`.
fn init_test_logging() {
    if std::env::var("TEST_LOG").is_ok_and(|v| v == "1" || v == "true") {
        phone_verify::telemetry::init(phone_verify::telemetry::LogFormat::Pretty, std::io::stdout);
    }
}

/// A code that differs from `code` in every digit.
pub fn wrong_code(code: &str) -> String {
    code.chars()
        .map(|c| char::from(b'0' + ((c as u8 - b'0' + 1) % 10)))
        .collect()
}

/// Runs a test against both storage backends.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            }
        )*
    };
}
