//! Integration tests: the collector over real HTTP against real PostgreSQL.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

/// Runs each named `async fn(Db)` as two tests, `NAME::postgres` and `NAME::sqlite`; with
/// `app:` first, each named `async fn(TestApp)` gets a collector on a fresh database of that
/// backend ([`helpers::with_app`]: skipped when the database cannot be had).
macro_rules! on_both_backends {
    (app: $($name:ident),* $(,)?) => { $(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                crate::helpers::with_app(crate::helpers::Db::Postgres, super::$name).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                crate::helpers::with_app(crate::helpers::Db::Sqlite, super::$name).await
            }
        }
    )* };
    ($($name:ident),* $(,)?) => { $(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(crate::helpers::Db::Postgres).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(crate::helpers::Db::Sqlite).await
            }
        }
    )* };
}

mod agent;
mod auth;
mod binary;
mod browser;
mod cluster;
mod conformance;
mod ecosystem;
mod enrolment;
mod fleet;
mod fuzz;
mod hardening;
mod heartbeats;
mod helpers;
mod machines;
mod metrics;
mod openapi;
mod operators;
mod outage;
mod pack;
mod page;
mod postgres;
mod remote_write;
mod reports;
mod retention;
mod savings;
mod seed;
mod settings_api;
mod simulation;
mod sites;
mod tls;
mod tokens;
mod tour;
mod upgrade;
mod users;
mod webdriver;
