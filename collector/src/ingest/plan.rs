//! The accounting of a heartbeat batch, top-down: for each heartbeat, in order, the acceptance
//! rules of DESIGN §2 — duplicate (per credential), then clock ahead, then invalid values —
//! and for an accepted one its interval ([`accounting::account`]); then what the batch writes.
//! The store only locks, reads and writes what this says.

use std::collections::HashMap;

use greenops_protocol::{ValidHeartbeat, ValidationError};

use crate::accounting::{self, Attribution, Increment, MissingRates, Outcome, RateBook};
use crate::store::ingest::{
    HeartbeatJob, HeartbeatOutcome, JobOutcome, LockedMachine, MachineUpdate, Plan, Planner,
    RawHeartbeat, Rejection, TotalsDelta, UsageDelta, pack_state,
};

/// Plans batches with the clock-skew allowance in force when the batch is committed.
#[derive(Debug, Clone, Copy)]
pub struct Accountant {
    pub max_clock_skew_ms: i64,
}

/// Why a batch could not be planned.
pub type PlanError = MissingRates;

impl Planner for Accountant {
    /// A batch fails as a whole (the requests get 500 and their agents retry) when an interval
    /// cannot be priced — only possible with an inconsistent database, where guessing a rate
    /// or refusing the heartbeats for good would both lose the truth.
    fn plan(
        &self,
        jobs: &[HeartbeatJob],
        locked: &HashMap<String, LockedMachine>,
        book: &RateBook,
    ) -> Result<Plan, PlanError> {
        plan(jobs, locked, book, self.max_clock_skew_ms).inspect_err(|e| {
            tracing::error!(error = %e, "a heartbeat batch could not be priced");
        })
    }
}

/// A machine's progress through the batch.
struct Progress {
    cursor: accounting::Cursor,
    last: Option<(i64, ValidHeartbeat)>,
    changed: bool,
}

/// Accounts every heartbeat of `jobs` in order against the locked machines.
pub fn plan(
    jobs: &[HeartbeatJob],
    locked: &HashMap<String, LockedMachine>,
    book: &RateBook,
    max_clock_skew_ms: i64,
) -> Result<Plan, PlanError> {
    let mut progress: HashMap<&str, Progress> = HashMap::with_capacity(locked.len());
    let mut raw = Vec::new();
    let mut usage: HashMap<(i64, i64, Attribution), Increment> = HashMap::new();
    let mut totals: HashMap<(&str, i64, String, String), Increment> = HashMap::new();
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        let Some((id, machine)) = locked.get_key_value(&job.machine_id) else {
            outcomes.push(JobOutcome::UnknownMachine);
            continue;
        };
        if !machine.credentials.contains(&job.credential) {
            // Re-enrolled (or retired) since this request was authenticated.
            outcomes.push(JobOutcome::UnknownMachine);
            continue;
        }
        let state = progress.entry(id.as_str()).or_insert_with(|| Progress {
            cursor: machine.cursor,
            last: None,
            changed: false,
        });
        let mut results = Vec::with_capacity(job.heartbeats.len());
        for candidate in &job.heartbeats {
            // 1. Duplicate, decided first (DESIGN §2): a replay is acknowledged whatever else.
            if !candidate.assign_seq
                && candidate
                    .seq
                    .is_some_and(|seq| seq <= state.cursor.last_seq)
            {
                results.push(HeartbeatOutcome::Duplicate);
                continue;
            }
            // 3. Invalid values (reported after the duplicate check).
            let hb = match &candidate.heartbeat {
                // A server-given seq is the machine's next one, so these heartbeats take the
                // same accounting path as native ones.
                Ok(hb) if candidate.assign_seq => ValidHeartbeat {
                    seq: state.cursor.last_seq.saturating_add(1),
                    ..*hb
                },
                Ok(hb) => *hb,
                Err(e) => {
                    results.push(HeartbeatOutcome::Rejected(
                        Rejection::InvalidField,
                        e.clone(),
                    ));
                    continue;
                }
            };
            // 2. Clock ahead of the server.
            if accounting::clock_ahead(hb.sent_at_ms, job.received_at_ms, max_clock_skew_ms) {
                results.push(HeartbeatOutcome::Rejected(
                    Rejection::ClockAhead,
                    ValidationError::new(
                        "sent_at",
                        format!(
                            "is more than {} s ahead of the server clock; fix the agent's clock",
                            max_clock_skew_ms / 1000
                        ),
                    ),
                ));
                continue;
            }
            match accounting::account(&mut state.cursor, &hb, &machine.placements, book)? {
                Outcome::Duplicate => results.push(HeartbeatOutcome::Duplicate),
                Outcome::Accepted(accepted) => {
                    results.push(HeartbeatOutcome::Accepted);
                    state.changed = true;
                    state.last = Some((job.received_at_ms, hb));
                    raw.push(RawHeartbeat {
                        machine: machine.num,
                        sent_at_ms: hb.sent_at_ms,
                        seq: hb.seq as i64,
                        idle_ms: hb.idle_ms.map(|ms| i32::try_from(ms).unwrap_or(i32::MAX)),
                        observed_ms: i32::try_from(accepted.observed_ms).unwrap_or(i32::MAX),
                        state: pack_state(&hb),
                    });
                    for part in accepted.parts {
                        totals
                            .entry((
                                id.as_str(),
                                part.attribution.site_id,
                                part.attribution.department.clone(),
                                part.attribution.currency.clone(),
                            ))
                            .or_default()
                            .add(&part.increment);
                        usage
                            .entry((machine.num, part.hour_ms, part.attribution))
                            .or_default()
                            .add(&part.increment);
                    }
                }
            }
        }
        outcomes.push(JobOutcome::Committed(results));
    }
    let mut machines: Vec<MachineUpdate> = progress
        .into_iter()
        .filter(|(_, p)| p.changed)
        .map(|(id, p)| MachineUpdate {
            machine_id: id.to_string(),
            cursor: p.cursor,
            last: p.last,
        })
        .collect();
    // A stable order keeps multi-row writes deterministic (and lock order on PostgreSQL).
    machines.sort_by(|a, b| a.machine_id.cmp(&b.machine_id));
    let mut usage: Vec<UsageDelta> = usage
        .into_iter()
        .map(|((machine, hour_ms, attribution), increment)| UsageDelta {
            machine,
            hour_ms,
            attribution,
            increment,
        })
        .collect();
    usage.sort_by(|a, b| {
        (a.machine, a.hour_ms, &a.attribution).cmp(&(b.machine, b.hour_ms, &b.attribution))
    });
    let mut totals: Vec<TotalsDelta> = totals
        .into_iter()
        .map(
            |((machine_id, site_id, department, currency), increment)| TotalsDelta {
                machine_id: machine_id.to_string(),
                site_id,
                department,
                currency,
                increment,
            },
        )
        .collect();
    totals.sort_by(|a, b| {
        (&a.machine_id, a.site_id, &a.department, &a.currency).cmp(&(
            &b.machine_id,
            b.site_id,
            &b.department,
            &b.currency,
        ))
    });
    Ok(Plan {
        raw,
        usage,
        totals,
        machines,
        outcomes,
    })
}
