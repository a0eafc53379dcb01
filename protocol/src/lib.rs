//! Wire types shared by the GreenOps agent and collector (DESIGN §3).
//!
//! Every JSON body that crosses the network is defined here exactly once, together with the
//! validation that turns an untrusted body into values the collector may account. This crate
//! does no I/O.

mod enroll;
mod error;
mod heartbeat;
mod seed;
#[cfg(test)]
mod testing;

pub use enroll::{
    EnrollRequest, EnrollResponse, MAX_HOSTNAME_CHARS, ValidEnrollment, normalize_mac,
};
pub use error::{ErrorBody, ErrorDetail, ValidationError, check_text};
pub use heartbeat::{
    BodyError, Heartbeat, HeartbeatBatch, HeartbeatError, HeartbeatResponse, HeartbeatResult,
    HeartbeatStatus, IdleSourceKind, ParsedHeartbeat, Session, ValidHeartbeat,
    parse_heartbeat_body,
};
pub use seed::{
    MAX_SEED_ID_BYTES, NoCommand, SEED_AGENT_VERSION, SeedCommandsResponse, SeedError,
    SeedErrorBody, SeedHeartbeat, SeedHeartbeatResponse, SeedMachineStatus, SeedRegisterRequest,
    SeedRegisterResponse, ValidSeedHeartbeat, ValidSeedRegistration, seed_idle_ms,
    seed_machine_key, seed_os, seed_percent, seed_timestamp_ms,
};

/// Version of the agent ↔ collector protocol described in this crate.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest request body the collector reads (bigger bodies get 413).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most heartbeats in one batch (bigger batches get 413).
pub const MAX_BATCH_HEARTBEATS: usize = 1000;
