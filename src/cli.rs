//! The binary's commands besides serving: a one-off SMS for checking credentials, and the health
//! probe a container runtime calls (distroless images have no curl).

use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::domain::Channel;
use crate::domain::{PhoneNumber, VerificationCode};
use crate::sms::{CodeMessage, SendContext, SmsError};

#[derive(Debug, Parser)]
#[command(
    name = "phone-verify",
    version,
    about = "Phone number verification by SMS codes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Send one SMS through the configured provider and say what happened: a check of the
    /// credentials. With Twilio Verify it starts a real verification (Twilio sends a code).
    SendTest {
        /// Destination, in E.164 form (+12125551234).
        phone_number: String,
    },
    /// Exit 0 when the service at BIND_ADDR answers GET /healthz, else 1 (for HEALTHCHECK).
    Healthcheck,
}

/// `send-test`: returns the process exit code.
pub async fn send_test(config: &Config, number: &str) -> u8 {
    let phone = match PhoneNumber::parse(number) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("send-test: {number:?}: {e}");
            return 2;
        }
    };
    let providers = match config.sms.providers(config.http.twilio_status_callback()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("send-test: {e:#}");
            return 2;
        }
    };
    // The first provider: the one every send tries first (a list's others only take over from it).
    let sender = providers.codes.primary();
    println!("provider: {}", sender.name());
    println!("to:       {}", phone.masked());
    let code = VerificationCode::generate(config.verification.code_length);
    let context = SendContext {
        message_id: uuid::Uuid::new_v4(),
        verification_id: None,
    };
    let body = config
        .sms
        .templates
        .render(Channel::Sms, &code, None, config.verification.code_ttl);
    let message = CodeMessage {
        code: (!sender.checks_codes()).then_some(&code),
        channel: Channel::Sms,
        locale: None,
        body: (!sender.checks_codes()).then_some(body.as_str()),
    };
    let result = sender.send_code(&phone, &message, &context).await;
    match result {
        Ok(sent) => {
            println!(
                "result:   sent{}",
                sent.provider_message_id
                    .map(|id| format!(" (id {id})"))
                    .unwrap_or_default()
            );
            if !sender.checks_codes() && sender.name() != "console" {
                println!("code:     {} (the code in the SMS)", code.expose());
            }
            0
        }
        Err(e) => {
            println!("result:   failed: {e}");
            let hint = match &e {
                SmsError::Rejected {
                    provider_code: Some(20003),
                    ..
                } => "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
                SmsError::Rejected {
                    provider_code: Some(21608),
                    ..
                } => "a trial account can only send to verified numbers",
                SmsError::InvalidNumber { .. } => "Twilio cannot deliver SMS to this number",
                SmsError::Unavailable { .. } => "Twilio could not be reached or is rate limiting",
                _ => "see the log line above for Twilio's error",
            };
            println!("hint:     {hint}");
            1
        }
    }
}

/// `healthcheck`: GET /healthz on the configured port over loopback.
pub async fn healthcheck(config: &Config) -> u8 {
    let port = config.http.bind_addr.port();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
    {
        Ok(c) => c,
        Err(_) => return 1,
    };
    match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => 0,
        Ok(r) => {
            eprintln!("healthcheck: {url} answered {}", r.status());
            1
        }
        Err(e) => {
            eprintln!("healthcheck: {url}: {e}");
            1
        }
    }
}
