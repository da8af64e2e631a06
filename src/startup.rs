//! Building and running the application: the seam tests use to start the real thing on port 0.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::clock::{Clock, SystemClock};
use crate::config::{AppEnv, Config};
use crate::domain::{CodeHasher, PhoneNumber};
use crate::events::EventsTask;
use crate::fraud::FraudGuard;
use crate::http::webhooks::TwilioWebhook;
use crate::http::{self, AppState, HttpSettings};
use crate::sms::SmsSettings;
use crate::storage::Storage;
use crate::verification::Verifier;

/// When `main` began, so the logged `startup_ms` covers the whole start-up, not just `build`.
static PROCESS_STARTED: OnceLock<Instant> = OnceLock::new();

/// Called first thing in `main`. Tests that build several applications in one process never call
/// it, and each build then times itself.
pub fn mark_process_start() {
    let _ = PROCESS_STARTED.set(Instant::now());
}

/// How often old rows are purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(600);

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    addr: SocketAddr,
    purge_task: JoinHandle<()>,
    events_task: Option<EventsTask>,
    drain_timeout: Duration,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let Config {
            app_env,
            http: http_settings,
            database,
            sms: sms_settings,
            verification,
            fraud,
            events,
            token,
            log_format: _,
        } = config;
        if verification.code_hash_secret_is_default() {
            tracing::warn!(
                "CODE_HASH_SECRET is not set: codes are hashed with a public development key. \
                 Set it to 32+ random bytes before real use (APP_ENV=production requires it)."
            );
        }
        let started = PROCESS_STARTED.get().copied().unwrap_or_else(Instant::now);
        crate::metrics::handle();

        // Loading libphonenumber's metadata (~150 ms of CPU) and the Twilio client's CA roots run on
        // blocking threads while the database connection and migrations, mostly waiting on the
        // network, go on here: start-up takes the longest of the three, not their sum.
        let warm_up = tokio::task::spawn_blocking(PhoneNumber::warm_up);
        let twilio_webhook = twilio_webhook(&http_settings, &sms_settings);
        let sms_webhook = sms_settings
            .webhook_provider()
            .map(|hook| Arc::new(hook.secret.clone()));
        let status_callback = http_settings.twilio_status_callback();
        let templates = sms_settings.templates.clone();
        let providers =
            tokio::task::spawn_blocking(move || sms_settings.providers(status_callback));
        let storage = database
            .connect()
            .await?
            .with_events(events.webhook.is_some());
        let providers = providers.await??;
        warm_up.await?;
        let senders = providers.codes.clone();
        tracing::info!(
            provider = %senders.names(),
            storage = storage.backend(),
            env = ?app_env,
            "SMS provider selected"
        );
        if app_env == AppEnv::Development && senders.name() == "console" {
            tracing::info!("console provider: codes are written to this log instead of being sent");
        }

        // Fallback is driven by delivery reports: without a way for them to arrive it never runs.
        if !verification.channel_fallback.is_empty()
            && twilio_webhook.is_none()
            && sms_webhook.is_none()
        {
            tracing::warn!(
                "CHANNEL_FALLBACK is set but no delivery reports can arrive (set PUBLIC_BASE_URL for \
                 Twilio, or use the webhook provider): automatic fallback will not run"
            );
        }

        tracing::info!(
            mode = fraud.mode.as_str(),
            prefix_digits = fraud.prefix_digits,
            "fraud guard"
        );
        let purge_task = spawn_purge(
            storage.clone(),
            clock.clone(),
            Retention {
                data: database.retention.max(verification.code_ttl),
                // A scope's counts matter for the window, its block until it ends.
                fraud: fraud.window,
                // An hour past the dispatcher's own drop, so that the purge never races it.
                events: events.max_age + Duration::from_secs(3_600),
            },
        );
        let events_task = match &events.webhook {
            Some(webhook) => {
                tracing::info!(
                    max_age_hours = events.max_age.as_secs() / 3_600,
                    "events: delivering to EVENTS_WEBHOOK_URL"
                );
                Some(crate::events::spawn(
                    storage.clone(),
                    clock.clone(),
                    webhook,
                    events.max_age,
                )?)
            }
            None => None,
        };
        let verifier = Verifier::new(
            storage.clone(),
            senders,
            templates,
            clock,
            CodeHasher::new(verification.code_hash_key()),
            verification,
            FraudGuard::new(fraud),
        );
        let listener = TcpListener::bind(http_settings.bind_addr)
            .await
            .with_context(|| format!("cannot listen on BIND_ADDR {}", http_settings.bind_addr))?;
        let addr = listener.local_addr()?;
        let drain_timeout = http_settings.shutdown_timeout;
        let state = AppState {
            settings: Arc::new(http_settings),
            storage,
            verifier: Arc::new(verifier),
            messages: providers.messages,
            tokens: token.signer().map(Arc::new),
            retention: database.retention,
            twilio_webhook,
            sms_webhook,
        };
        let router = http::router(state);
        tracing::info!(%addr, startup_ms = started.elapsed().as_millis() as u64, "listening");
        Ok(Self {
            listener,
            router,
            addr,
            purge_task,
            events_task,
            drain_timeout,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until SIGTERM or Ctrl-C, then lets in-flight requests finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests finish,
    /// for at most the drain timeout (`SHUTDOWN_TIMEOUT_SECONDS`). The events dispatcher stops
    /// claiming at once and gets the same time for the deliveries it has in flight.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (began, draining) = tokio::sync::oneshot::channel::<()>();
        let (stop_events, events_stopped) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            let _ = began.send(());
            let _ = stop_events.send(());
        };
        let drain_timeout = self.drain_timeout;
        let events = self.events_task.map(|task| {
            tokio::spawn(async move {
                // Also when the server ends without a signal (the sender is dropped).
                let _ = events_stopped.await;
                task.finish(drain_timeout).await;
            })
        });
        let server = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(signal);
        let deadline = async move {
            match draining.await {
                Ok(()) => tokio::time::sleep(drain_timeout).await,
                // The server ended without a shutdown signal: nothing to time.
                Err(_) => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            result = server.into_future() => result,
            () = deadline => {
                tracing::warn!(
                    timeout_s = drain_timeout.as_secs(),
                    "requests still running at the end of the drain timeout were cut off"
                );
                Ok(())
            }
        };
        self.purge_task.abort();
        if let Some(events) = events {
            let _ = events.await;
        }
        tracing::info!("stopped");
        result
    }
}

/// Twilio's callbacks can be checked only with both the URL Twilio calls and the token it signs with.
fn twilio_webhook(http: &HttpSettings, sms: &SmsSettings) -> Option<Arc<TwilioWebhook>> {
    let public_base_url = http.public_base_url.clone()?;
    let twilio = sms.twilio.as_ref()?;
    Some(Arc::new(TwilioWebhook {
        auth_token: twilio.auth_token.clone(),
        public_base_url,
    }))
}

/// How long the purge keeps each kind of row.
struct Retention {
    data: Duration,
    fraud: Duration,
    /// Events that no dispatcher tried for this long.
    events: Duration,
}

fn spawn_purge(storage: Storage, clock: Arc<dyn Clock>, keep: Retention) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(PURGE_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let now = clock.now();
            match storage.purge(now - keep.data, now - keep.fraud, now).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "purged old verifications"),
                Err(e) => tracing::warn!(error = %e, "purging old verifications failed"),
            }
            match storage.purge_events(now - keep.events).await {
                Ok(dropped) => {
                    for event_type in &dropped {
                        crate::metrics::event_dropped(event_type);
                    }
                    if !dropped.is_empty() {
                        tracing::warn!(
                            events = dropped.len(),
                            "dropped events that nobody tried to deliver within EVENTS_MAX_AGE_HOURS"
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "purging stale events failed"),
            }
        }
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
