//! Load generator for phone-verify (issue 6).
//!
//! * hosts a fake Twilio Messaging endpoint on 127.0.0.1 (random port, `--fake-latency-ms`) that
//!   keeps the code from each message's `Body` per `To` number, for the virtual users to pick up;
//! * starts a phone-verify binary (`--service-bin` + `--database-url`: sets the environment, times
//!   start-up to a ready `/readyz`) or targets a running one (`--target` + optional `--pid`);
//! * runs `--users` virtual users, each repeating send-code → code from the fake → verify on a
//!   fresh valid number per flow, for `--duration-secs` or `--flows`, optionally paced to `--rate`;
//! * reports flows/s, requests/s, errors by status and `code`, latency percentiles per endpoint
//!   (hdrhistogram), and the service's RSS (VmRSS sampled every 100 ms, VmHWM) and CPU from /proc;
//! * `--rss-trace FILE`: a CSV with one row per second of the measured window (flows and errors so
//!   far, VmRSS, RssAnon, RssFile), and always (with a pid) a growth summary of the window's RSS
//!   samples: first-10 % vs last-10 % mean, and the second half's slope per 10,000 flows.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;

const SEND_PATH: &str = "/api/auth/phone/send-code";
const RESEND_PATH: &str = "/api/auth/phone/resend-code";
const VERIFY_PATH: &str = "/api/auth/phone/verify";
const TWILIO_SID: &str = "AC0123456789abcdef0123456789abcdef";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// send-code → code → verify
    Flow,
    /// send-code → code → one wrong verify (expects 400 invalid_code) → verify
    WrongCode,
    /// send-code → code → resend-code → new code → verify (needs RESEND_COOLDOWN_SECONDS=0,
    /// which this tool sets when it starts the service itself)
    Resend,
}

#[derive(Debug, Parser)]
#[command(about = "Load generator for phone-verify, with a fake Twilio Messaging endpoint")]
struct Args {
    /// phone-verify binary to start (with --database-url); the tool sets its environment.
    #[arg(long, conflicts_with = "target", requires = "database_url")]
    service_bin: Option<PathBuf>,
    /// DATABASE_URL for the started service (use a fresh database: postgres://… or sqlite://…).
    #[arg(long)]
    database_url: Option<String>,
    /// Extra KEY=VALUE environment for the started service (repeatable); wins over the defaults.
    #[arg(long = "service-env")]
    service_env: Vec<String>,
    /// Write the started service's stdout (JSON log) here.
    #[arg(long)]
    service_log: Option<PathBuf>,
    /// Target a running service instead (e.g. http://127.0.0.1:8080). It must use this tool's
    /// fake: see --fake-port.
    #[arg(long)]
    target: Option<String>,
    /// pid of the targeted service, for RSS and CPU sampling.
    #[arg(long)]
    pid: Option<u32>,
    /// Port for the fake Twilio endpoint (0: random). Point TWILIO_API_BASE_URL of a targeted
    /// service at http://127.0.0.1:<port>.
    #[arg(long, default_value_t = 0)]
    fake_port: u16,
    /// Latency the fake Twilio adds to every message, in milliseconds.
    #[arg(long, default_value_t = 0)]
    fake_latency_ms: u64,
    /// Concurrent virtual users.
    #[arg(long, default_value_t = 16)]
    users: usize,
    /// Measured duration (after the warm-up). Default 10 s unless --flows is given.
    #[arg(long)]
    duration_secs: Option<f64>,
    /// Stop after this many measured flows instead of after a duration.
    #[arg(long, conflicts_with = "duration_secs")]
    flows: Option<u64>,
    /// Time limit for a --flows run (safety bound).
    #[arg(long, default_value_t = 300.0)]
    max_secs: f64,
    /// Warm-up before measuring: flows run but are not recorded.
    #[arg(long, default_value_t = 2.0)]
    warmup_secs: f64,
    #[arg(long, value_enum, default_value_t = Mode::Flow)]
    mode: Mode,
    /// Pace flow starts to this many flows/s in total: one schedule shared by all users (a flow
    /// starts at its slot, or as soon as a user is free if all are busy; latencies are measured
    /// from the actual request start). Use enough users for the rate.
    #[arg(long)]
    rate: Option<f64>,
    /// First number index. Numbers are +1 212 NXX XXXX with the exchange NXX counting from 200
    /// (8 million numbers), then the same in 646, 718, 917, 347 and 929; one per flow, unique
    /// across users. Default: 0 when the tool starts the service (fresh database),
    /// else derived from the clock so back-to-back runs do not reuse numbers within the cooldown.
    #[arg(long)]
    number_start: Option<u64>,
    /// Per-request timeout.
    #[arg(long, default_value_t = 30)]
    request_timeout_secs: u64,
    /// Label stored in the JSON output.
    #[arg(long)]
    label: Option<String>,
    /// Write the results as JSON to this file ("-" for stdout, then the table goes to stderr).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a CSV trace of the measured window to this file, one row per second:
    /// elapsed_s,flows,errors,vmrss_kib,rss_anon_kib,rss_file_kib (flows: flows completed OK so
    /// far; errors: errors so far; both as counted in the report; RSS columns empty without a pid).
    /// Written as the run goes, plus a last row at the end of the window.
    #[arg(long)]
    rss_trace: Option<PathBuf>,
}

// ---------------------------------------------------------------------------------------------
// Fake Twilio Messaging

enum Slot {
    Code(String),
    Waiting(oneshot::Sender<String>),
}

struct Fake {
    latency: Duration,
    slots: Mutex<HashMap<String, Slot>>,
    messages: AtomicU64,
}

impl Fake {
    /// The newest code for a number wins (a resend replaces the previous code).
    fn deliver(&self, to: String, code: String) {
        let mut slots = self.slots.lock().unwrap();
        match slots.remove(&to) {
            Some(Slot::Waiting(tx)) => {
                if let Err(code) = tx.send(code) {
                    slots.insert(to, Slot::Code(code));
                }
            }
            _ => {
                slots.insert(to, Slot::Code(code));
            }
        }
    }

    /// Takes the code sent to `to`, waiting for it if it has not arrived yet.
    async fn take(&self, to: &str, timeout: Duration) -> Option<String> {
        let rx = {
            let mut slots = self.slots.lock().unwrap();
            match slots.remove(to) {
                Some(Slot::Code(code)) => return Some(code),
                _ => {
                    let (tx, rx) = oneshot::channel();
                    slots.insert(to.to_string(), Slot::Waiting(tx));
                    rx
                }
            }
        };
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(code)) => Some(code),
            _ => {
                let mut slots = self.slots.lock().unwrap();
                if matches!(slots.get(to), Some(Slot::Waiting(_))) {
                    slots.remove(to);
                }
                None
            }
        }
    }
}

/// The last run of digits in the body ("Your verification code is 123456").
fn extract_code(body: &str) -> Option<String> {
    let bytes = body.as_bytes();
    let end = bytes.iter().rposition(u8::is_ascii_digit)? + 1;
    let start = bytes[..end]
        .iter()
        .rposition(|b| !b.is_ascii_digit())
        .map_or(0, |i| i + 1);
    Some(body[start..end].to_string())
}

async fn fake_messages(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if !fake.latency.is_zero() {
        tokio::time::sleep(fake.latency).await;
    }
    let basic_auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Basic "));
    if !basic_auth {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"code": 20003, "message": "Authenticate", "status": 401})),
        )
            .into_response();
    }
    let (Some(to), Some(body)) = (form.get("To"), form.get("Body")) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"code": 21604, "message": "A 'To' and a 'Body' are required", "status": 400})),
        )
            .into_response();
    };
    let n = fake.messages.fetch_add(1, Ordering::Relaxed);
    if let Some(code) = extract_code(body) {
        fake.deliver(to.clone(), code);
    }
    (
        StatusCode::CREATED,
        Json(json!({"sid": format!("SM{n:032x}"), "status": "queued", "to": to})),
    )
        .into_response()
}

async fn start_fake(latency: Duration, port: u16) -> std::io::Result<(Arc<Fake>, u16)> {
    let fake = Arc::new(Fake {
        latency,
        slots: Mutex::new(HashMap::new()),
        messages: AtomicU64::new(0),
    });
    let app = Router::new()
        .route(
            "/2010-04-01/Accounts/{sid}/Messages.json",
            post(fake_messages),
        )
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((fake, port))
}

// ---------------------------------------------------------------------------------------------
// Numbers: +1 AAA EEE LLLL with a real NYC area code AAA, exchange EEE in 200..=999 and any line:
// libphonenumber accepts [2-9]XX-XXXX after these area codes. 8 million numbers per area code.

const AREA_CODES: [u32; 6] = [212, 646, 718, 917, 347, 929];
const PER_AREA: u64 = 8_000_000;

fn phone_number(n: u64) -> String {
    let area = AREA_CODES[((n / PER_AREA) % AREA_CODES.len() as u64) as usize];
    let r = n % PER_AREA;
    format!("+1{area}{:03}{:04}", 200 + r / 10_000, r % 10_000)
}

// ---------------------------------------------------------------------------------------------
// Statistics

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ep {
    Send,
    Resend,
    VerifyWrong,
    Verify,
    Flow,
}

const EPS: [Ep; 5] = [Ep::Send, Ep::Resend, Ep::VerifyWrong, Ep::Verify, Ep::Flow];

impl Ep {
    fn name(self) -> &'static str {
        match self {
            Ep::Send => "send-code",
            Ep::Resend => "resend-code",
            Ep::VerifyWrong => "verify (wrong code)",
            Ep::Verify => "verify",
            Ep::Flow => "whole flow",
        }
    }
    fn key(self) -> &'static str {
        match self {
            Ep::Send => "send_code",
            Ep::Resend => "resend_code",
            Ep::VerifyWrong => "verify_wrong",
            Ep::Verify => "verify",
            Ep::Flow => "flow",
        }
    }
}

fn histogram() -> Histogram<u64> {
    // microseconds, 1 µs .. 10 min, 3 significant digits
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

struct Stats {
    hist: Vec<Histogram<u64>>,
    requests: u64,
    flows_ok: u64,
    flows_failed: u64,
    /// (endpoint, status, code) → count, within the measured window.
    errors: BTreeMap<(String, String, String), u64>,
    /// Errors outside the measured window (warm-up, tail).
    errors_outside: u64,
    last_done: Option<Instant>,
}

impl Stats {
    fn new() -> Self {
        Self {
            hist: EPS.iter().map(|_| histogram()).collect(),
            requests: 0,
            flows_ok: 0,
            flows_failed: 0,
            errors: BTreeMap::new(),
            errors_outside: 0,
            last_done: None,
        }
    }
    fn record(&mut self, ep: Ep, d: Duration) {
        self.hist[ep as usize].saturating_record(d.as_micros().max(1) as u64);
    }
    fn merge(&mut self, other: Stats) {
        for (a, b) in self.hist.iter_mut().zip(other.hist.iter()) {
            a.add(b).expect("same bounds");
        }
        self.requests += other.requests;
        self.flows_ok += other.flows_ok;
        self.flows_failed += other.flows_failed;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.errors_outside += other.errors_outside;
        self.last_done = self.last_done.max(other.last_done);
    }
}

// ---------------------------------------------------------------------------------------------
// Virtual users

enum Outcome {
    Ok(Value),
    Problem(u16, String),
    Io(String),
}

struct Ctx {
    client: reqwest::Client,
    base: String,
    fake: Arc<Fake>,
    mode: Mode,
    start: Instant,
    warm_end: Instant,
    /// End of the measured window (duration runs).
    window_end: Option<Instant>,
    /// No flow starts after this.
    stop_at: Instant,
    flows_limit: Option<u64>,
    tickets: AtomicU64,
    numbers: AtomicU64,
    number_start: u64,
    rate: Option<f64>,
    slots: AtomicU64,
    code_timeout: Duration,
    /// Live totals for the RSS trace (the same counts as the merged `Stats`' `flows_ok` and
    /// in-window errors).
    live: Arc<Live>,
}

#[derive(Default)]
struct Live {
    flows_ok: AtomicU64,
    errors: AtomicU64,
}

fn io_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else if e.is_body() || e.is_decode() {
        "body".into()
    } else {
        "request".into()
    }
}

fn wrong_code(code: &str) -> String {
    let mut bytes = code.as_bytes().to_vec();
    if let Some(last) = bytes.last_mut() {
        *last = b'0' + (*last - b'0' + 1) % 10;
    }
    String::from_utf8(bytes).unwrap()
}

impl Ctx {
    fn in_window(&self, t: Instant) -> bool {
        t >= self.warm_end && self.window_end.is_none_or(|e| t <= e)
    }

    async fn call(&self, ep: Ep, path: &str, body: &Value, stats: &mut Stats) -> Outcome {
        let t0 = Instant::now();
        let outcome = match self
            .client
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
        {
            Ok(resp) => {
                let status = resp.status().as_u16();
                match resp.bytes().await {
                    Ok(bytes) => {
                        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                        if status == 200 {
                            Outcome::Ok(v)
                        } else {
                            let code = v["code"].as_str().unwrap_or("-").to_string();
                            Outcome::Problem(status, code)
                        }
                    }
                    Err(e) => Outcome::Io(io_kind(&e)),
                }
            }
            Err(e) => Outcome::Io(io_kind(&e)),
        };
        let t1 = Instant::now();
        if self.in_window(t1) {
            stats.requests += 1;
            stats.record(ep, t1 - t0);
        }
        outcome
    }

    fn fail(&self, ep: Ep, outcome: Outcome, stats: &mut Stats) {
        let (status, code) = match outcome {
            Outcome::Ok(v) => (
                "200".to_string(),
                format!("unexpected status {}", v["status"].as_str().unwrap_or("?")),
            ),
            Outcome::Problem(s, c) => (s.to_string(), c),
            Outcome::Io(kind) => ("io".to_string(), kind),
        };
        if self.in_window(Instant::now()) {
            *stats
                .errors
                .entry((ep.name().to_string(), status, code))
                .or_default() += 1;
            self.live.errors.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.errors_outside += 1;
        }
    }

    async fn code(&self, phone: &str, stats: &mut Stats) -> Option<String> {
        let code = self.fake.take(phone, self.code_timeout).await;
        if code.is_none() {
            self.fail(
                Ep::Send,
                Outcome::Problem(0, "no SMS reached the fake".into()),
                stats,
            );
        }
        code
    }

    async fn flow(&self, phone: &str, stats: &mut Stats) -> bool {
        let body = json!({ "phone_number": phone });
        match self.call(Ep::Send, SEND_PATH, &body, stats).await {
            Outcome::Ok(v) if v["status"] == "pending" => {}
            other => {
                self.fail(Ep::Send, other, stats);
                return false;
            }
        }
        let Some(mut code) = self.code(phone, stats).await else {
            return false;
        };
        if self.mode == Mode::Resend {
            match self.call(Ep::Resend, RESEND_PATH, &body, stats).await {
                Outcome::Ok(v) if v["status"] == "pending" => {}
                other => {
                    self.fail(Ep::Resend, other, stats);
                    return false;
                }
            }
            let Some(new_code) = self.code(phone, stats).await else {
                return false;
            };
            code = new_code;
        }
        if self.mode == Mode::WrongCode {
            let wrong = json!({ "phone_number": phone, "code": wrong_code(&code) });
            match self.call(Ep::VerifyWrong, VERIFY_PATH, &wrong, stats).await {
                Outcome::Problem(400, c) if c == "invalid_code" => {}
                other => {
                    self.fail(Ep::VerifyWrong, other, stats);
                    return false;
                }
            }
        }
        let verify = json!({ "phone_number": phone, "code": code });
        match self.call(Ep::Verify, VERIFY_PATH, &verify, stats).await {
            Outcome::Ok(v) if v["status"] == "approved" => true,
            other => {
                self.fail(Ep::Verify, other, stats);
                false
            }
        }
    }
}

async fn virtual_user(ctx: Arc<Ctx>) -> Stats {
    let mut stats = Stats::new();
    loop {
        if let Some(rate) = ctx.rate {
            let slot = ctx.slots.fetch_add(1, Ordering::Relaxed);
            let at = ctx.start + Duration::from_secs_f64(slot as f64 / rate);
            if at >= ctx.stop_at {
                break;
            }
            tokio::time::sleep_until(at.into()).await;
        }
        let now = Instant::now();
        if now >= ctx.stop_at {
            break;
        }
        let mut ticketed = false;
        if now >= ctx.warm_end
            && let Some(limit) = ctx.flows_limit
        {
            if ctx.tickets.fetch_add(1, Ordering::Relaxed) >= limit {
                break;
            }
            ticketed = true;
        }
        let n = ctx.number_start + ctx.numbers.fetch_add(1, Ordering::Relaxed);
        let phone = phone_number(n);
        let t0 = Instant::now();
        let ok = ctx.flow(&phone, &mut stats).await;
        let t1 = Instant::now();
        let counted = if ctx.flows_limit.is_some() {
            ticketed
        } else {
            ctx.in_window(t1)
        };
        if counted {
            if ok {
                stats.flows_ok += 1;
                ctx.live.flows_ok.fetch_add(1, Ordering::Relaxed);
                stats.record(Ep::Flow, t1 - t0);
            } else {
                stats.flows_failed += 1;
            }
            stats.last_done = stats.last_done.max(Some(t1));
        }
        if !ok {
            // Do not spin on a failing service.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    stats
}

// ---------------------------------------------------------------------------------------------
// /proc sampling

/// (VmRSS, VmHWM, RssAnon, RssFile) in KiB.
fn proc_status_kib(pid: u32) -> Option<(u64, u64, u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        s.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((
        field("VmRSS:")?,
        field("VmHWM:")?,
        field("RssAnon:").unwrap_or(0),
        field("RssFile:").unwrap_or(0),
    ))
}

/// utime + stime of a process, in clock ticks.
fn proc_cpu_ticks(path: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    // comm may contain spaces: fields after the closing parenthesis.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// (busy, total) jiffies of the whole machine.
fn machine_ticks() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

/// CPU ticks of all processes named `postgres` (the server's backends and helpers: the database's
/// share of the machine, whoever's sessions they serve), including reaped children.
fn postgres_ticks() -> Option<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{name}/stat")) else {
            continue;
        };
        if stat.contains("(postgres)") {
            let rest = &stat[stat.rfind(')').unwrap_or(0) + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            // utime, stime, cutime, cstime: exited backends count in the postmaster's c*time.
            total += f
                .iter()
                .skip(11)
                .take(4)
                .map(|x| x.parse::<u64>().unwrap_or(0))
                .sum::<u64>();
        }
    }
    Some(total)
}

#[derive(Default, Debug, Clone)]
struct Sample {
    at: Option<Instant>,
    service_ticks: Option<u64>,
    self_ticks: Option<u64>,
    postgres_ticks: Option<u64>,
    machine: Option<(u64, u64)>,
}

fn sample(pid: Option<u32>) -> Sample {
    Sample {
        at: Some(Instant::now()),
        service_ticks: pid.and_then(|p| proc_cpu_ticks(&format!("/proc/{p}/stat"))),
        self_ticks: proc_cpu_ticks("/proc/self/stat"),
        postgres_ticks: postgres_ticks(),
        machine: machine_ticks(),
    }
}

#[derive(Default, Debug)]
struct MemReport {
    rss_peak_kib: u64,
    /// RssAnon and RssFile of the sample with the highest VmRSS.
    anon_at_peak_kib: u64,
    file_at_peak_kib: u64,
    rss_sum_kib: u64,
    rss_samples: u64,
    hwm_kib: u64,
    window_start: Sample,
    window_end: Sample,
    /// (flows OK so far, VmRSS KiB) of every sample in the measured window, in time order.
    window_rss: Vec<(u64, u64)>,
    /// First error writing the --rss-trace file.
    trace_error: Option<String>,
}

/// The --rss-trace CSV, written as the run goes.
struct Trace {
    out: std::io::BufWriter<std::fs::File>,
    /// Next whole second of the window to write a row for.
    next_row_s: f64,
    /// The latest in-window row not yet written (for the last row at the end of the window).
    pending: Option<String>,
}

impl Trace {
    const HEADER: &str = "elapsed_s,flows,errors,vmrss_kib,rss_anon_kib,rss_file_kib";

    fn create(path: &std::path::Path) -> std::io::Result<Self> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(out, "{}", Self::HEADER)?;
        out.flush()?;
        Ok(Self {
            out,
            next_row_s: 0.0,
            pending: None,
        })
    }

    fn row(elapsed: f64, flows: u64, errors: u64, status: Option<(u64, u64, u64, u64)>) -> String {
        match status {
            Some((rss, _, anon, file)) => {
                format!("{elapsed:.2},{flows},{errors},{rss},{anon},{file}")
            }
            None => format!("{elapsed:.2},{flows},{errors},,,"),
        }
    }

    /// Offers an in-window sample: written if it is the first one at or after the next whole
    /// second, else kept as the candidate for the final row.
    fn offer(&mut self, elapsed: f64, row: String) -> std::io::Result<()> {
        if elapsed >= self.next_row_s {
            self.next_row_s = elapsed.floor() + 1.0;
            self.pending = None;
            writeln!(self.out, "{row}")?;
            self.out.flush()
        } else {
            self.pending = Some(row);
            Ok(())
        }
    }

    fn finish(mut self) -> std::io::Result<()> {
        if let Some(row) = self.pending.take() {
            writeln!(self.out, "{row}")?;
        }
        self.out.flush()
    }
}

async fn sampler(
    pid: Option<u32>,
    warm_end: Instant,
    window_end: Option<Instant>,
    stop: Arc<AtomicBool>,
    live: Arc<Live>,
    mut trace: Option<Trace>,
) -> MemReport {
    let mut r = MemReport::default();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let stopping = stop.load(Ordering::Relaxed);
        let in_window = now >= warm_end && window_end.is_none_or(|e| now <= e);
        // Counters first, then /proc: the RSS read is never older than the flow count.
        let (flows, errors) = (
            live.flows_ok.load(Ordering::Relaxed),
            live.errors.load(Ordering::Relaxed),
        );
        let status = pid.and_then(proc_status_kib);
        if let Some((rss, hwm, anon, file)) = status {
            if rss > r.rss_peak_kib {
                r.rss_peak_kib = rss;
                r.anon_at_peak_kib = anon;
                r.file_at_peak_kib = file;
            }
            r.hwm_kib = r.hwm_kib.max(hwm);
            if in_window {
                r.rss_sum_kib += rss;
                r.rss_samples += 1;
                r.window_rss.push((flows, rss));
            }
        }
        if in_window
            && let Some(t) = trace.as_mut()
            && r.trace_error.is_none()
        {
            let elapsed = (now - warm_end).as_secs_f64();
            if let Err(e) = t.offer(elapsed, Trace::row(elapsed, flows, errors, status)) {
                r.trace_error = Some(e.to_string());
            }
        }
        if now >= warm_end && r.window_start.at.is_none() {
            r.window_start = sample(pid);
        }
        if in_window && !stopping {
            r.window_end = sample(pid);
        }
        if stopping {
            if let Some(t) = trace.take()
                && r.trace_error.is_none()
                && let Err(e) = t.finish()
            {
                r.trace_error = Some(e.to_string());
            }
            return r;
        }
    }
}

/// RSS growth over the measured window, from its VmRSS samples.
#[derive(Debug, Clone, PartialEq)]
struct RssSummary {
    samples: usize,
    /// Mean VmRSS of the first and the last 10 % of the samples (at least one each).
    first_mean_kib: f64,
    last_mean_kib: f64,
    /// Least-squares slope of VmRSS on flows completed, over the second half of the samples, in
    /// KiB per 10,000 flows (None when the flow count does not move there).
    slope_kib_per_10k_flows: Option<f64>,
    slope_samples: usize,
    slope_flows: (u64, u64),
}

fn rss_summary(points: &[(u64, u64)]) -> Option<RssSummary> {
    let n = points.len();
    if n == 0 {
        return None;
    }
    let tenth = n.div_ceil(10);
    let mean = |s: &[(u64, u64)]| s.iter().map(|p| p.1 as f64).sum::<f64>() / s.len() as f64;
    let half = &points[n / 2..];
    let (xm, ym) = (
        half.iter().map(|p| p.0 as f64).sum::<f64>() / half.len() as f64,
        mean(half),
    );
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for &(x, y) in half {
        let dx = x as f64 - xm;
        sxy += dx * (y as f64 - ym);
        sxx += dx * dx;
    }
    Some(RssSummary {
        samples: n,
        first_mean_kib: mean(&points[..tenth]),
        last_mean_kib: mean(&points[n - tenth..]),
        slope_kib_per_10k_flows: (sxx > 0.0).then(|| sxy / sxx * 10_000.0),
        slope_samples: half.len(),
        slope_flows: (half[0].0, half[half.len() - 1].0),
    })
}

// ---------------------------------------------------------------------------------------------
// The service

struct Service {
    child: tokio::process::Child,
    pid: u32,
    base: String,
    startup_ms: f64,
    internal_startup_ms: Arc<Mutex<Option<f64>>>,
    warnings: Arc<Mutex<Vec<String>>>,
}

fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

async fn start_service(args: &Args, fake_port: u16) -> Result<Service, String> {
    let bin = args.service_bin.as_ref().unwrap();
    let port = free_port().map_err(|e| format!("no free port: {e}"))?;
    let mut env: Vec<(String, String)> = vec![
        ("BIND_ADDR".into(), format!("127.0.0.1:{port}")),
        ("DATABASE_URL".into(), args.database_url.clone().unwrap()),
        ("SMS_PROVIDER".into(), "twilio-messaging".into()),
        ("TWILIO_ACCOUNT_SID".into(), TWILIO_SID.into()),
        ("TWILIO_AUTH_TOKEN".into(), "loadgen-auth-token".into()),
        ("TWILIO_PHONE_NUMBER".into(), "+15005550006".into()),
        (
            "TWILIO_API_BASE_URL".into(),
            format!("http://127.0.0.1:{fake_port}"),
        ),
        ("RATE_LIMIT_PER_IP_PER_MINUTE".into(), "0".into()),
        ("MAX_SENDS_PER_IP_PER_HOUR".into(), "0".into()),
        ("MAX_SENDS_PER_COUNTRY_PER_HOUR".into(), "0".into()),
        (
            "CODE_HASH_SECRET".into(),
            "loadgen-code-hash-secret-0123456789abcdef".into(),
        ),
        ("LOG_FORMAT".into(), "json".into()),
        // warn for everything; the one "listening … startup_ms" line is read from the log.
        ("RUST_LOG".into(), "warn,phone_verify::startup=info".into()),
    ];
    if args.mode == Mode::Resend {
        env.push(("RESEND_COOLDOWN_SECONDS".into(), "0".into()));
    }
    for kv in &args.service_env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--service-env {kv}: expected KEY=VALUE"))?;
        env.retain(|(ek, _)| ek != k);
        env.push((k.into(), v.into()));
    }
    let mut cmd = tokio::process::Command::new(bin);
    // A clean environment (no stray .env or variables from the caller's shell).
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(std::env::temp_dir())
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let pid = child.id().ok_or("service exited at once")?;
    let internal = Arc::new(Mutex::new(None));
    let warnings = Arc::new(Mutex::new(Vec::new()));
    {
        let stdout = child.stdout.take().unwrap();
        let internal = internal.clone();
        let warnings = warnings.clone();
        let mut log = match &args.service_log {
            Some(p) => Some(
                tokio::fs::File::create(p)
                    .await
                    .map_err(|e| format!("--service-log {}: {e}", p.display()))?,
            ),
            None => None,
        };
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(f) = log.as_mut() {
                    let _ = f.write_all(line.as_bytes()).await;
                    let _ = f.write_all(b"\n").await;
                }
                let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                let ms = v["fields"]["startup_ms"]
                    .as_f64()
                    .or_else(|| v["startup_ms"].as_f64());
                if let Some(ms) = ms {
                    *internal.lock().unwrap() = Some(ms);
                } else if matches!(v["level"].as_str(), Some("WARN" | "ERROR")) {
                    let mut w = warnings.lock().unwrap();
                    if w.len() < 20 {
                        w.push(line);
                    }
                }
            }
        });
    }
    let base = format!("http://127.0.0.1:{port}");
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| e.to_string())?;
    let deadline = t0 + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("service exited during start-up: {status}"));
        }
        if let Ok(r) = probe.get(format!("{base}/readyz")).send().await
            && r.status() == StatusCode::OK
        {
            break;
        }
        if Instant::now() > deadline {
            return Err("service not ready within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let startup_ms = t0.elapsed().as_secs_f64() * 1000.0;
    // Let the log reader see the "listening" line.
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok(Service {
        child,
        pid,
        base,
        startup_ms,
        internal_startup_ms: internal,
        warnings,
    })
}

async fn stop_service(svc: &mut Service) -> Option<i32> {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &svc.pid.to_string()])
        .status();
    match tokio::time::timeout(Duration::from_secs(15), svc.child.wait()).await {
        Ok(Ok(status)) => status.code(),
        _ => {
            let _ = svc.child.kill().await;
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Report

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn pct(a: Option<u64>, b: Option<u64>, span: f64) -> Option<f64> {
    // clock ticks (100 Hz) over `span` seconds, as % of one core
    Some((b? as f64 - a? as f64) / 100.0 / span * 100.0)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), String> {
    if args.users == 0 {
        return Err("--users must be at least 1".into());
    }
    if args.service_bin.is_none() && args.target.is_none() {
        return Err("give --service-bin and --database-url, or --target".into());
    }
    if args.rate.is_some_and(|r| r <= 0.0) {
        return Err("--rate must be positive".into());
    }
    let (fake, fake_port) = start_fake(Duration::from_millis(args.fake_latency_ms), args.fake_port)
        .await
        .map_err(|e| format!("fake Twilio: {e}"))?;

    let mut service = None;
    let (base, pid) = if args.service_bin.is_some() {
        let svc = start_service(&args, fake_port).await?;
        let out = (svc.base.clone(), Some(svc.pid));
        service = Some(svc);
        out
    } else {
        if args.mode == Mode::Resend {
            eprintln!(
                "loadgen: resend mode: the targeted service must run with RESEND_COOLDOWN_SECONDS=0"
            );
        }
        eprintln!(
            "loadgen: fake Twilio listening on http://127.0.0.1:{fake_port} (TWILIO_API_BASE_URL)"
        );
        (
            args.target
                .clone()
                .unwrap()
                .trim_end_matches('/')
                .to_string(),
            args.pid,
        )
    };
    let number_start = args.number_start.unwrap_or_else(|| {
        if service.is_some() {
            0
        } else {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            (secs * 5_000) % (PER_AREA * AREA_CODES.len() as u64)
        }
    });

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.request_timeout_secs))
        .pool_max_idle_per_host(args.users + 8)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| e.to_string())?;

    let trace = match &args.rss_trace {
        Some(p) => {
            if pid.is_none() {
                eprintln!("loadgen: --rss-trace without a pid: the RSS columns stay empty");
            }
            Some(Trace::create(p).map_err(|e| format!("--rss-trace {}: {e}", p.display()))?)
        }
        None => None,
    };
    let live = Arc::new(Live::default());

    let start = Instant::now();
    let warm_end = start + Duration::from_secs_f64(args.warmup_secs);
    let duration = match (args.duration_secs, args.flows) {
        (Some(d), _) => Some(d),
        (None, None) => Some(10.0),
        (None, Some(_)) => None,
    };
    let window_end = duration.map(|d| warm_end + Duration::from_secs_f64(d));
    let stop_at = window_end.unwrap_or(warm_end + Duration::from_secs_f64(args.max_secs));
    let ctx = Arc::new(Ctx {
        client,
        base: base.clone(),
        fake: fake.clone(),
        mode: args.mode,
        start,
        warm_end,
        window_end,
        stop_at,
        flows_limit: args.flows,
        tickets: AtomicU64::new(0),
        numbers: AtomicU64::new(0),
        number_start,
        rate: args.rate,
        slots: AtomicU64::new(0),
        code_timeout: Duration::from_secs(10),
        live: live.clone(),
    });

    let stop = Arc::new(AtomicBool::new(false));
    let sampler_task = tokio::spawn(sampler(
        pid,
        warm_end,
        window_end,
        stop.clone(),
        live,
        trace,
    ));
    let users: Vec<_> = (0..args.users)
        .map(|_| tokio::spawn(virtual_user(ctx.clone())))
        .collect();
    let mut stats = Stats::new();
    for u in users {
        stats.merge(u.await.map_err(|e| format!("virtual user panicked: {e}"))?);
    }
    stop.store(true, Ordering::Relaxed);
    let mem = sampler_task.await.map_err(|e| e.to_string())?;
    let rss_trend = rss_summary(&mem.window_rss);
    let final_hwm = pid.and_then(proc_status_kib).map(|(_, hwm, _, _)| hwm);

    let (startup_ms, internal_ms, warnings, exit_code) = match service.as_mut() {
        Some(svc) => {
            let code = stop_service(svc).await;
            let internal = *svc.internal_startup_ms.lock().unwrap();
            let warnings = svc.warnings.lock().unwrap().clone();
            (Some(svc.startup_ms), internal, warnings, code)
        }
        None => (None, None, Vec::new(), None),
    };

    let window_secs = match window_end {
        Some(e) => (e - warm_end).as_secs_f64(),
        None => stats
            .last_done
            .map_or(0.0, |l| (l - warm_end).as_secs_f64()),
    };
    let flows_per_sec = stats.flows_ok as f64 / window_secs.max(1e-9);
    let requests_per_sec = stats.requests as f64 / window_secs.max(1e-9);

    let span = match (mem.window_start.at, mem.window_end.at) {
        (Some(a), Some(b)) if b > a => (b - a).as_secs_f64(),
        _ => 0.0,
    };
    let (svc_cpu, self_cpu, pg_cpu, busy, busy_cores) = if span > 0.5 {
        let (busy, busy_cores) = match (mem.window_start.machine, mem.window_end.machine) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => (
                Some((b1 - b0) as f64 / (t1 - t0) as f64 * 100.0),
                Some((b1 - b0) as f64 / 100.0 / span * 100.0),
            ),
            _ => (None, None),
        };
        (
            pct(
                mem.window_start.service_ticks,
                mem.window_end.service_ticks,
                span,
            ),
            pct(mem.window_start.self_ticks, mem.window_end.self_ticks, span),
            pct(
                mem.window_start.postgres_ticks,
                mem.window_end.postgres_ticks,
                span,
            ),
            busy,
            busy_cores,
        )
    } else {
        (None, None, None, None, None)
    };
    // Everything else that ran on the machine meanwhile (other users' jobs): noise to report.
    let other_cpu = busy_cores.map(|b| {
        (b - svc_cpu.unwrap_or(0.0) - self_cpu.unwrap_or(0.0) - pg_cpu.unwrap_or(0.0)).max(0.0)
    });
    let pg_ms_per_flow = pg_cpu.map(|c| c / 100.0 * 1000.0 / flows_per_sec.max(1e-9));
    let cpu_ms_per_flow = svc_cpu.map(|c| c / 100.0 * 1000.0 / flows_per_sec.max(1e-9));
    let mib = |kib: u64| kib as f64 / 1024.0;
    let hwm = final_hwm.unwrap_or(0).max(mem.hwm_kib);
    let backend = args.database_url.as_deref().map_or("unknown", |u| {
        if u.starts_with("sqlite:") {
            "sqlite"
        } else {
            "postgres"
        }
    });

    let mut latency = serde_json::Map::new();
    for ep in EPS {
        let h = &stats.hist[ep as usize];
        if h.is_empty() {
            continue;
        }
        latency.insert(
            ep.key().to_string(),
            json!({
                "count": h.len(),
                "p50": ms(h.value_at_quantile(0.50)),
                "p90": ms(h.value_at_quantile(0.90)),
                "p99": ms(h.value_at_quantile(0.99)),
                "max": ms(h.max()),
                "mean": h.mean() / 1000.0,
            }),
        );
    }
    let errors: Vec<Value> = stats
        .errors
        .iter()
        .map(|((ep, status, code), n)| json!({"endpoint": ep, "status": status, "code": code, "count": n}))
        .collect();
    let mut report = json!({
        "label": args.label,
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "backend": backend,
        "users": args.users,
        "fake_latency_ms": args.fake_latency_ms,
        "rate": args.rate,
        "warmup_secs": args.warmup_secs,
        "window_secs": window_secs,
        "flows_ok": stats.flows_ok,
        "flows_failed": stats.flows_failed,
        "flows_per_sec": flows_per_sec,
        "requests": stats.requests,
        "requests_per_sec": requests_per_sec,
        "latency_ms": latency,
        "errors": errors,
        "errors_outside_window": stats.errors_outside,
        "fake_messages": fake.messages.load(Ordering::Relaxed),
        "service": {
            "pid": pid,
            "startup_ms": startup_ms,
            "startup_internal_ms": internal_ms,
            "rss_peak_mib": pid.map(|_| mib(mem.rss_peak_kib)),
            "rss_anon_at_peak_mib": pid.map(|_| mib(mem.anon_at_peak_kib)),
            "rss_file_at_peak_mib": pid.map(|_| mib(mem.file_at_peak_kib)),
            "rss_mean_mib": mem.rss_sum_kib.checked_div(mem.rss_samples).map(mib),
            "vm_hwm_mib": pid.map(|_| mib(hwm)),
            "cpu_percent": svc_cpu,
            "cpu_ms_per_flow": cpu_ms_per_flow,
            "exit_code": exit_code,
            "log_warnings": warnings,
        },
        "loadgen_cpu_percent": self_cpu,
        "postgres_cpu_percent": pg_cpu,
        "postgres_cpu_ms_per_flow": pg_ms_per_flow,
        "other_cpu_percent": other_cpu,
        "machine_busy_percent": busy,
    });
    if pid.is_some() {
        let summary = rss_trend.as_ref().map(|t| {
            json!({
                "samples": t.samples,
                "sample_interval_ms": 100,
                "first_10pct_mean_mib": t.first_mean_kib / 1024.0,
                "last_10pct_mean_mib": t.last_mean_kib / 1024.0,
                "growth_mib": (t.last_mean_kib - t.first_mean_kib) / 1024.0,
                "second_half_slope_kib_per_10k_flows": t.slope_kib_per_10k_flows,
                "second_half_samples": t.slope_samples,
                "second_half_flows_from": t.slope_flows.0,
                "second_half_flows_to": t.slope_flows.1,
            })
        });
        report["rss_trace_summary"] = summary.unwrap_or(Value::Null);
    }

    // Human table
    let mut out = String::new();
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "phone-verify load: mode={:?} backend={backend} users={} fake-latency={} ms{} window={window_secs:.1} s (after {:.1} s warm-up)",
        args.mode,
        args.users,
        args.fake_latency_ms,
        args.rate
            .map(|r| format!(" rate={r} flows/s"))
            .unwrap_or_default(),
        args.warmup_secs
    );
    let _ = writeln!(
        out,
        "flows: {} ok, {} failed   {flows_per_sec:.1} flows/s   {requests_per_sec:.1} requests/s",
        stats.flows_ok, stats.flows_failed
    );
    let _ = writeln!(
        out,
        "{:<20} {:>9} {:>9} {:>9} {:>9} {:>9}  (ms)",
        "endpoint", "count", "p50", "p90", "p99", "max"
    );
    for ep in EPS {
        let h = &stats.hist[ep as usize];
        if h.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "{:<20} {:>9} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            ep.name(),
            h.len(),
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.9)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max())
        );
    }
    if stats.errors.is_empty() {
        let _ = writeln!(out, "errors: none");
    } else {
        let _ = writeln!(out, "errors (endpoint, status, code: count):");
        for ((ep, status, code), n) in &stats.errors {
            let _ = writeln!(out, "  {ep:<20} {status:>4} {code}: {n}");
        }
    }
    if stats.errors_outside > 0 {
        let _ = writeln!(out, "errors outside the window: {}", stats.errors_outside);
    }
    if let Some(pid) = pid {
        let _ = writeln!(
            out,
            "service pid {pid}: RSS peak {:.1} MiB (anon {:.1} + file {:.1}), mean {:.1} MiB, VmHWM {:.1} MiB; CPU {} ({} per flow)",
            mib(mem.rss_peak_kib),
            mib(mem.anon_at_peak_kib),
            mib(mem.file_at_peak_kib),
            mem.rss_sum_kib
                .checked_div(mem.rss_samples)
                .map_or(0.0, mib),
            mib(hwm),
            svc_cpu.map_or("?".into(), |c| format!("{c:.0} %")),
            cpu_ms_per_flow.map_or("?".into(), |c| format!("{c:.2} ms")),
        );
    }
    if pid.is_some() {
        let _ = writeln!(out, "{}", rss_trend_line(rss_trend.as_ref()));
    }
    if let Some(s) = startup_ms {
        let _ = writeln!(
            out,
            "start-up to a ready /readyz: {s:.1} ms (service's own startup_ms: {})",
            internal_ms.map_or("?".into(), |m| format!("{m:.0}"))
        );
    }
    let p = |v: Option<f64>| v.map_or("?".into(), |c| format!("{c:.0} %"));
    let _ = writeln!(
        out,
        "CPU (100 % = one core): loadgen {}, all postgres processes {} ({} per flow), other processes {}; machine busy {} of {} cores",
        p(self_cpu),
        p(pg_cpu),
        pg_ms_per_flow.map_or("?".into(), |c| format!("{c:.2} ms")),
        p(other_cpu),
        p(busy),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    for w in &warnings {
        let _ = writeln!(out, "service log: {w}");
    }

    match &args.json {
        Some(p) if p.as_os_str() == "-" => {
            eprint!("{out}");
            println!("{}", serde_json::to_string_pretty(&report).unwrap());
        }
        Some(p) => {
            print!("{out}");
            std::fs::write(p, serde_json::to_string_pretty(&report).unwrap())
                .map_err(|e| format!("--json {}: {e}", p.display()))?;
        }
        None => print!("{out}"),
    }
    match (&args.rss_trace, mem.trace_error) {
        (Some(p), Some(e)) => Err(format!("--rss-trace {}: {e}", p.display())),
        _ => Ok(()),
    }
}

/// The one-line text form of the RSS growth summary (tools/soak.sh greps for "RSS trend:").
fn rss_trend_line(t: Option<&RssSummary>) -> String {
    let Some(t) = t else {
        return "RSS trend: no samples in the measured window".into();
    };
    format!(
        "RSS trend: first 10 % mean {:.1} MiB, last 10 % mean {:.1} MiB ({:+.2} MiB); second-half slope {} per 10,000 flows (flows {}..{}, {} of {} samples)",
        t.first_mean_kib / 1024.0,
        t.last_mean_kib / 1024.0,
        (t.last_mean_kib - t.first_mean_kib) / 1024.0,
        t.slope_kib_per_10k_flows
            .map_or("?".into(), |s| format!("{s:+.1} KiB")),
        t.slope_flows.0,
        t.slope_flows.1,
        t.slope_samples,
        t.samples,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_distinct_and_well_formed() {
        let a = phone_number(0);
        assert_eq!(a, "+12122000000");
        assert_eq!(phone_number(9_999), "+12122009999");
        assert_eq!(phone_number(10_000), "+12122010000");
        assert_eq!(phone_number(PER_AREA - 1), "+12129999999");
        assert_eq!(phone_number(PER_AREA), "+16462000000");
        assert!(phone_number(123_456_789).len() == 12);
    }

    #[test]
    fn code_extraction() {
        assert_eq!(
            extract_code("Your verification code is 012345").as_deref(),
            Some("012345")
        );
        assert_eq!(extract_code("Code 123456.").as_deref(), Some("123456"));
        assert_eq!(extract_code("none"), None);
        assert_eq!(wrong_code("123459"), "123450");
    }

    #[test]
    fn rss_summary_means_and_slope() {
        assert_eq!(rss_summary(&[]), None);
        // 20 samples: RSS flat at 1000 KiB for the first half, then +1 KiB per 100 flows.
        let pts: Vec<(u64, u64)> = (0..20u64)
            .map(|i| {
                let flows = i * 1000;
                (flows, if i < 10 { 1000 } else { 1000 + flows / 100 })
            })
            .collect();
        let s = rss_summary(&pts).unwrap();
        assert_eq!(s.samples, 20);
        assert_eq!(s.first_mean_kib, 1000.0); // samples 0, 1
        assert_eq!(s.last_mean_kib, 1000.0 + (180.0 + 190.0) / 2.0); // samples 18, 19
        assert!((s.slope_kib_per_10k_flows.unwrap() - 100.0).abs() < 1e-9);
        assert_eq!((s.slope_samples, s.slope_flows), (10, (10_000, 19_000)));
        // A single sample, or flows that do not move: no slope.
        let one = rss_summary(&[(5, 2048)]).unwrap();
        assert_eq!((one.first_mean_kib, one.last_mean_kib), (2048.0, 2048.0));
        assert_eq!(one.slope_kib_per_10k_flows, None);
        assert!(rss_trend_line(Some(&one)).starts_with("RSS trend: first 10 % mean 2.0 MiB"));
    }

    #[test]
    fn trace_rows() {
        assert_eq!(
            Trace::row(1.004, 12, 0, Some((3, 9, 1, 2))),
            "1.00,12,0,3,1,2"
        );
        assert_eq!(Trace::row(2.0, 5, 1, None), "2.00,5,1,,,");
    }
}
