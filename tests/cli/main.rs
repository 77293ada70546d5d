//! The `user-api` binary: its command line, configuration errors, migrations, the
//! `healthcheck` command, waiting for the database at start-up, and SIGTERM.
//!
//! Every run starts from an empty environment (plus `PATH`) in a temporary working
//! directory, so neither the developer's environment nor a `.env` of theirs leaks in.

#[path = "../common/mod.rs"]
mod common;
mod support;

mod bad_settings_exit_2_with_one_line;
mod healthcheck_exits_0_or_1_with_one_line;
mod help_and_version_exit_0;
mod keys_command_makes_and_checks_keys;
mod migrate_applies_each_migration_once;
mod secrets_never_reach_a_log;
mod serve_answers_with_its_environment;
mod serve_logs_every_request;
mod serve_waits_for_a_late_database;
mod sighup_reloads_the_keys;
mod start_up_failures_exit_1;
mod stop_signals_let_requests_finish;
mod test_cluster_dies_with_its_process;
