//! The `phone-verify` binary: reads the configuration, then serves or runs a command of `cli`.

use std::process::ExitCode;

use clap::Parser;
use phone_verify::allocator;
use phone_verify::cli::{self, Cli, Command};
use phone_verify::config::Config;
use phone_verify::startup::{self, Application};
use phone_verify::telemetry;

fn main() -> ExitCode {
    startup::mark_process_start();
    allocator::limit_arenas();
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("phone-verify: cannot start the async runtime: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    // A missing .env is normal; the environment alone is a complete configuration.
    let _ = dotenvy::dotenv();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("phone-verify: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {}
        Command::Healthcheck => return ExitCode::from(cli::healthcheck(&config).await),
        Command::SendTest { phone_number } => {
            telemetry::init(config.log_format, std::io::stderr);
            return ExitCode::from(cli::send_test(&config, &phone_number).await);
        }
    }
    telemetry::init(config.log_format, std::io::stdout);
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "start-up failed");
            eprintln!("phone-verify: {e:#}");
            return ExitCode::from(1);
        }
    };
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("phone-verify: {e}");
            ExitCode::from(1)
        }
    }
}
