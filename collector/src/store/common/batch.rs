//! The backend-neutral middle of a group commit: given the locked state of every machine in a
//! batch, account each heartbeat in order and say what to write. Backends only read and write.

use std::collections::HashMap;

use greenops_protocol::ValidHeartbeat;

use crate::accounting::{self, Cursor, Increment, Outcome, Params, Rates};
use crate::store::{HeartbeatJob, JobOutcome};

/// A machine row locked for this batch.
#[derive(Debug, Clone)]
pub(crate) struct Locked {
    pub cursor: Cursor,
    pub rates: Rates,
    pub currency: String,
}

/// One accepted heartbeat and what it added.
#[derive(Debug)]
pub(crate) struct AcceptedRow<'a> {
    pub machine_id: &'a str,
    pub received_at_ms: i64,
    pub heartbeat: &'a ValidHeartbeat,
    pub increment: Increment,
    pub currency: &'a str,
}

/// What changes on one machine row.
#[derive(Debug)]
pub(crate) struct MachineUpdate<'a> {
    pub machine_id: &'a str,
    pub cursor: Cursor,
    pub currency: &'a str,
    /// `(received_at_ms, heartbeat)` of the newest accepted heartbeat: the last report.
    pub newest: (i64, &'a ValidHeartbeat),
    /// Sum of this batch's increments for the machine.
    pub sum: Increment,
}

#[derive(Debug)]
pub(crate) struct Plan<'a> {
    pub rows: Vec<AcceptedRow<'a>>,
    pub updates: Vec<MachineUpdate<'a>>,
    pub outcomes: Vec<JobOutcome>,
}

/// Accounts every heartbeat of `jobs` (in order) against the locked machines.
pub(crate) fn plan<'a>(
    jobs: &'a [HeartbeatJob],
    locked: &'a HashMap<String, Locked>,
    params: Params,
) -> Plan<'a> {
    struct Progress<'a> {
        cursor: Cursor,
        sum: Increment,
        newest: Option<(i64, &'a ValidHeartbeat)>,
    }
    let mut progress: HashMap<&str, Progress<'a>> = HashMap::with_capacity(locked.len());
    let mut rows = Vec::new();
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        let Some((id, machine)) = locked.get_key_value(&job.machine_id) else {
            outcomes.push(JobOutcome::UnknownMachine);
            continue;
        };
        let state = progress.entry(id.as_str()).or_insert_with(|| Progress {
            cursor: machine.cursor,
            sum: Increment::default(),
            newest: None,
        });
        let mut flags = Vec::with_capacity(job.heartbeats.len());
        for hb in &job.heartbeats {
            match accounting::account(&mut state.cursor, hb, params, &machine.rates) {
                Outcome::Duplicate => flags.push(false),
                Outcome::Accepted(increment) => {
                    flags.push(true);
                    state.sum.add(&increment);
                    state.newest = Some((job.received_at_ms, hb));
                    rows.push(AcceptedRow {
                        machine_id: id,
                        received_at_ms: job.received_at_ms,
                        heartbeat: hb,
                        increment,
                        currency: &machine.currency,
                    });
                }
            }
        }
        outcomes.push(JobOutcome::Committed(flags));
    }
    let mut updates: Vec<MachineUpdate<'a>> = progress
        .into_iter()
        .filter_map(|(id, p)| {
            Some(MachineUpdate {
                machine_id: id,
                cursor: p.cursor,
                currency: &locked.get(id)?.currency,
                newest: p.newest?,
                sum: p.sum,
            })
        })
        .collect();
    // A stable order keeps multi-row writes deterministic.
    updates.sort_by(|a, b| a.machine_id.cmp(b.machine_id));
    Plan {
        rows,
        updates,
        outcomes,
    }
}

/// `seq` and uptime are validated to fit in i64 at the protocol boundary.
pub(crate) fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
