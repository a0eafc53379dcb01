//! Integration tests: the collector over real HTTP against real PostgreSQL.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod binary;
mod cluster;
mod enrolment;
mod heartbeats;
mod helpers;
mod metrics;
mod outage;
mod postgres;
