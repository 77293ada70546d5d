//! The `user-api` binary: parse the command, load the configuration, run.

use std::process::ExitCode;

use user_api::cli::{self, Command};
use user_api::{App, Config, shutdown, startup, telemetry};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::parse(&args) {
        Ok(c) => c,
        Err(msg) => return fail(2, &format!("{msg} (try 'user-api --help')")),
    };
    if let Err(e) = dotenvy::dotenv() {
        if !e.not_found() {
            return fail(2, &format!(".env: {e}"));
        }
    }
    match command {
        Command::Help => print!("{}", cli::help()),
        Command::Version => println!("user-api {}", startup::VERSION),
        Command::Healthcheck(url) => {
            let (ok, line) =
                cli::healthcheck(url.as_deref(), std::env::var("BIND").ok().as_deref());
            println!("{line}");
            return if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        Command::Serve | Command::Migrate => {
            let config = match Config::from_env() {
                Ok(c) => c,
                Err(e) => return fail(2, &format!("configuration error: {e}")),
            };
            if let Err(e) = telemetry::init(config.log_level, config.log_file.as_deref()) {
                return fail(2, &format!("configuration error: LOG_FILE: {e}"));
            }
            let result = if command == Command::Migrate {
                startup::migrate(&config).map(drop)
            } else {
                App::build(config).and_then(|app| {
                    shutdown::spawn_signal_thread(app.stopper())
                        .map_err(startup::StartupError::Io)?;
                    app.run_until_stopped()
                })
            };
            if let Err(e) = result {
                // To stderr through the logger, and to LOG_FILE when there is one.
                log::error!("{e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn fail(code: u8, msg: &str) -> ExitCode {
    eprintln!("user-api: {msg}");
    ExitCode::from(code)
}
