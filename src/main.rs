//! The `user-api` binary: parse the command, load the configuration, run.

use std::process::ExitCode;

use user_api::cli::{self, Command};
use user_api::http::server::Stopper;
use user_api::startup::{self, StartupError};
use user_api::{App, Config, shutdown, telemetry};

// The static musl build's own malloc takes one lock for every allocation and free: with
// sixteen workers it cost a page of 100 users twice the server CPU of glibc's. mimalloc
// keeps a heap per thread (bench/README.md, "Allocator on musl"). Built without
// transparent huge pages (`no_thp`), which had taken its RSS to 75 MiB.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::parse(&args) {
        Ok(c) => c,
        Err(msg) => return fail(2, &format!("{msg} (try 'user-api --help')")),
    };
    match dotenvy::dotenv() {
        Err(e) if !e.not_found() => return fail(2, &format!(".env: {e}")),
        _ => {}
    }
    let config = match command {
        Command::Help => return print(&cli::help()),
        Command::Version => return print(&format!("user-api {}\n", startup::VERSION)),
        Command::Healthcheck(url) => return cli::run_healthcheck(url.as_deref()),
        Command::Keys(keys) => return cli::run_keys(keys),
        Command::Serve | Command::Migrate => match Config::from_env() {
            Ok(c) => c,
            Err(e) => return fail(2, &format!("configuration error: {e}")),
        },
    };
    if let Err(e) = telemetry::init(config.log_level, config.log_file.as_deref()) {
        return fail(2, &format!("configuration error: LOG_FILE: {e}"));
    }
    // From here a SIGTERM also ends the wait for the database; SIGHUP reloads the keys
    // and the certificate.
    let stopper = Stopper::default();
    let signals = shutdown::spawn_signal_thread(
        stopper.clone(),
        config.api_keys.clone(),
        config.https.clone(),
    );
    if let Err(e) = signals {
        return fail(1, &format!("cannot install signal handlers: {e}"));
    }
    let result = match command {
        Command::Migrate => startup::migrate(&config, &stopper).map(drop),
        _ => App::build_with_stopper(config, stopper).and_then(App::run_until_stopped),
    };
    match result {
        Ok(()) | Err(StartupError::Stopped) => ExitCode::SUCCESS,
        Err(e) => {
            // To stderr through the logger, and to LOG_FILE when there is one.
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn print(text: &str) -> ExitCode {
    print!("{text}");
    ExitCode::SUCCESS
}

fn fail(code: u8, msg: &str) -> ExitCode {
    eprintln!("user-api: {msg}");
    ExitCode::from(code)
}
