//! The contract of a heartbeat commit between the ingest writer and the store.
//!
//! The writer hands the store a batch of [`HeartbeatJob`]s and a [`Planner`]. In one
//! transaction the store locks the machines of the batch (in id order), reads their cursors and
//! placements, brings the [`RateBook`] up to date when the rate data changed, asks the planner
//! what to write ([`Plan`]) and writes it. The accounting itself — which heartbeats count, how
//! each interval is split and priced — lives with the planner (`crate::ingest::plan`), never in
//! the store.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use greenops_protocol::{Session, ValidHeartbeat, ValidationError};

use crate::accounting::rates::{Placement, RateBook};
use crate::accounting::{Attribution, Cursor, Increment};
use crate::secrets::TokenHash;

/// One heartbeat of a request as the writer receives it: its `seq` (when it could be read) and
/// either its validated values or why they are invalid. Invalid ones are refused only after
/// the duplicate check (DESIGN §2 acceptance order).
#[derive(Debug, Clone)]
pub struct Candidate {
    pub seq: Option<u64>,
    /// The server gives this heartbeat its `seq`: the next one of its machine at commit time
    /// (agents of the original format count nothing). Such a heartbeat is never a duplicate.
    pub assign_seq: bool,
    pub heartbeat: Result<ValidHeartbeat, ValidationError>,
}

/// Heartbeats from one request of one machine, waiting to be committed.
#[derive(Debug, Clone)]
pub struct HeartbeatJob {
    pub machine_id: String,
    /// The credential the request was authenticated with: `seq` is counted per credential.
    pub credential: TokenHash,
    pub received_at_ms: i64,
    pub heartbeats: Vec<Candidate>,
}

/// What became of one heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeartbeatOutcome {
    Accepted,
    Duplicate,
    /// Refused for good (the agent drops it): why, and the field with an explanation.
    Rejected(Rejection, ValidationError),
}

/// Why a heartbeat was refused for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A value outside the protocol's ranges.
    InvalidField,
    /// `sent_at` beyond the clock-skew allowance.
    ClockAhead,
}

impl Rejection {
    /// The `code` the API answers.
    pub fn code(self) -> &'static str {
        match self {
            Rejection::InvalidField => "invalid_field",
            Rejection::ClockAhead => "clock_ahead",
        }
    }
}

/// What committing one job did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// One outcome per heartbeat, in order.
    Committed(Vec<HeartbeatOutcome>),
    /// The machine is gone (retired) or the credential is no longer its current one.
    UnknownMachine,
}

/// A machine row locked for a batch, with what the planner needs.
#[derive(Debug, Clone)]
pub struct LockedMachine {
    /// The small integer key of the usage and raw tables.
    pub num: i64,
    /// The credentials currently allowed to deliver for the machine: one for native agents
    /// (re-enrolment revokes the others), possibly several imported ones for a machine of
    /// the original GreenOps, whose agents each kept the token they were given.
    pub credentials: Vec<TokenHash>,
    pub cursor: Cursor,
    /// Every placement of the machine, sorted by `effective_from_ms`.
    pub placements: Vec<Placement>,
}

/// A raw heartbeat as stored: what was observed, nothing derived from rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeartbeat {
    pub machine: i64,
    pub sent_at_ms: i64,
    /// The agent's `seq` (stored as a signed 64-bit integer: seq above `i64::MAX` wraps).
    pub seq: i64,
    /// Clamped to `i32::MAX` ms (24.8 days): beyond any threshold or gap, so nothing is lost.
    pub idle_ms: Option<i32>,
    /// The observed interval this heartbeat closed (0 when unobserved).
    pub observed_ms: i32,
    /// Session, CPU and memory packed (see [`pack_state`]).
    pub state: i32,
}

/// Session (bits 0–1), CPU and memory (11 bits each: permille + 1, 0 = not reported).
pub fn pack_state(hb: &ValidHeartbeat) -> i32 {
    let session = match hb.session {
        Session::Unknown => 0,
        Session::Active => 1,
        Session::Locked => 2,
        Session::None => 3,
    };
    let permille =
        |r: Option<f64>| r.map_or(0, |r| (r.clamp(0.0, 1.0) * 1000.0).round() as i32 + 1);
    session | (permille(hb.cpu_usage_ratio) << 2) | (permille(hb.memory_usage_ratio) << 13)
}

/// The session of a packed state.
pub fn unpack_session(state: i32) -> Session {
    match state & 0b11 {
        1 => Session::Active,
        2 => Session::Locked,
        3 => Session::None,
        _ => Session::Unknown,
    }
}

/// What one batch adds to one usage row (machine, hour, attribution).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDelta {
    pub machine: i64,
    pub hour_ms: i64,
    pub attribution: Attribution,
    pub increment: Increment,
}

/// What one batch adds to one machine's totals under one attribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotalsDelta {
    pub machine_id: String,
    pub site_id: i64,
    pub department: String,
    pub currency: String,
    pub increment: Increment,
}

/// The new cursor and last report of a machine.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineUpdate {
    pub machine_id: String,
    pub cursor: Cursor,
    /// `(received_at_ms, heartbeat)` of the newest accepted heartbeat.
    pub last: Option<(i64, ValidHeartbeat)>,
}

/// Everything a batch writes.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub raw: Vec<RawHeartbeat>,
    pub usage: Vec<UsageDelta>,
    pub totals: Vec<TotalsDelta>,
    pub machines: Vec<MachineUpdate>,
    pub outcomes: Vec<JobOutcome>,
}

/// Decides what a batch writes, given the locked machines and the rates in force.
pub trait Planner: Send + Sync {
    fn plan(
        &self,
        jobs: &[HeartbeatJob],
        locked: &HashMap<String, LockedMachine>,
        book: &RateBook,
    ) -> Result<Plan, crate::accounting::MissingRates>;
}

/// How much room raw heartbeats take at rest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeartbeatStorage {
    pub rows: u64,
    /// Table, indexes and (PostgreSQL) TOAST, as the database's own size functions count them.
    pub bytes: u64,
}

/// The rate book a collector holds, replaced when the store's rate data changes.
#[derive(Debug, Default)]
pub struct RateBookCache {
    book: RwLock<Option<Arc<RateBook>>>,
}

impl RateBookCache {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The cached book when it is of `version`.
    pub fn get(&self, version: i64) -> Option<Arc<RateBook>> {
        let guard = self.book.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().filter(|b| b.version == version).cloned()
    }

    /// The latest cached book, whatever its version.
    pub fn latest(&self) -> Option<Arc<RateBook>> {
        self.book.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn put(&self, book: Arc<RateBook>) {
        *self.book.write().unwrap_or_else(|p| p.into_inner()) = Some(book);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_pack_and_unpack() {
        let hb = ValidHeartbeat {
            seq: 1,
            sent_at_ms: 0,
            idle_ms: None,
            session: Session::Locked,
            cpu_usage_ratio: Some(1.0),
            memory_usage_ratio: Some(0.0),
            uptime_seconds: None,
            idle_source: None,
        };
        let state = pack_state(&hb);
        assert_eq!(unpack_session(state), Session::Locked);
        assert_eq!((state >> 2) & 0x7ff, 1001);
        assert_eq!((state >> 13) & 0x7ff, 1);
        assert!(state > 0);
    }
}
