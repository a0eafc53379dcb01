//! Integration tests: the collector over real HTTP against real PostgreSQL.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

/// Runs each named `async fn(Db)` as two tests, `NAME::postgres` and `NAME::sqlite`.
macro_rules! on_both_backends {
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

mod admin;
mod agent;
mod binary;
mod browser;
mod cluster;
mod conformance;
mod ecosystem;
mod enrolment;
mod fuzz;
mod hardening;
mod heartbeats;
mod helpers;
mod machines;
mod metrics;
mod operators;
mod outage;
mod pack;
mod postgres;
mod retention;
mod simulation;
mod tls;
mod webdriver;
