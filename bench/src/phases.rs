//! The load phases of one run: closed-loop runs over a sweep of connection counts (the
//! fastest gives the maximum rate), then open-loop runs at fixed shares of that maximum, so
//! tail latency is reported where a deployment would run (25 %, 50 %, 90 % by default).
//! The ceiling endpoint runs the same plan: its own sweep, then the same absolute rates, so
//! every phase has a ratio.

use std::net::SocketAddr;
use std::time::Duration;

use crate::load::{self, LoadMachine, LoadResult};

/// Connection counts tried when `--connections` is not given.
pub const SWEEP: [usize; 3] = [32, 128, 512];

/// How one phase drives the load.
#[derive(Debug, Clone, PartialEq)]
pub enum Drive {
    /// As fast as answers come over `connections`.
    Closed { connections: usize },
    /// `rate` requests per second over `connections`; `share` of the maximum (percent), when
    /// derived from it.
    Open {
        rate: f64,
        connections: usize,
        share: Option<u32>,
    },
}

impl Drive {
    pub fn connections(&self) -> usize {
        match self {
            Drive::Closed { connections } | Drive::Open { connections, .. } => *connections,
        }
    }

    /// `closed@128` or `open@50%` / `open@5000/s`.
    pub fn label(&self) -> String {
        match self {
            Drive::Closed { connections } => format!("closed@{connections}"),
            Drive::Open {
                share: Some(share), ..
            } => format!("open@{share}%"),
            Drive::Open { rate, .. } => format!("open@{rate:.0}/s"),
        }
    }
}

/// One phase's result.
#[derive(Debug, Clone)]
pub struct Phase {
    pub drive: Drive,
    pub result: LoadResult,
}

/// What to run: either one fixed rate, or a sweep and then shares of its maximum.
#[derive(Debug, Clone)]
pub struct Plan {
    pub rate: Option<f64>,
    /// `None`: sweep [`SWEEP`].
    pub connections: Option<usize>,
    /// Shares of the maximum rate (percent) for the open-loop phases after the sweep.
    pub levels: Vec<u32>,
    pub duration: Duration,
}

impl Plan {
    /// Each sweep step is shorter than a fixed-rate phase (it only has to find the maximum).
    pub fn sweep_duration(&self) -> Duration {
        if self.connections.is_some() {
            self.duration
        } else {
            (self.duration / 2).max(Duration::from_secs(1))
        }
    }

    /// An upper bound of the run's length, for dating the heartbeats.
    pub fn total_duration(&self) -> Duration {
        if self.rate.is_some() {
            return self.duration;
        }
        let sweeps = if self.connections.is_some() {
            1
        } else {
            SWEEP.len()
        };
        self.sweep_duration() * sweeps as u32 + self.duration * self.levels.len() as u32
    }
}

/// The machines of a run with their seqs carried from phase to phase.
pub struct Fleet {
    pub machines: Vec<LoadMachine>,
    /// Per machine: the highest seq acknowledged in any phase (0 = none).
    pub acked_seq: Vec<u64>,
}

impl Fleet {
    pub fn new(machines: Vec<LoadMachine>) -> Self {
        let acked_seq = vec![0; machines.len()];
        Self {
            machines,
            acked_seq,
        }
    }

    fn after(&mut self, result: &LoadResult) {
        for (i, acked) in result.acked_seq.iter().enumerate() {
            if *acked > 0 {
                self.acked_seq[i] = self.acked_seq[i].max(*acked);
                self.machines[i].next_seq = self.acked_seq[i] + 1;
            }
        }
    }
}

/// Runs `plan` against `addr`. `same_rates_as`: the phases of an earlier run whose open-loop
/// rates this run repeats (the ceiling runs at GreenOps' rates).
pub async fn run(
    addr: SocketAddr,
    fleet: &mut Fleet,
    plan: &Plan,
    base_ms: i64,
    same_rates_as: Option<&[Phase]>,
    say: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Vec<Phase>> {
    let mut phases = Vec::new();
    let step = async |drive: Drive, duration: Duration, fleet: &mut Fleet| {
        let (rate, connections) = match &drive {
            Drive::Closed { connections } => (None, *connections),
            Drive::Open {
                rate, connections, ..
            } => (Some(*rate), *connections),
        };
        let result = load::run(
            addr,
            "/api/v1/heartbeats",
            fleet.machines.clone(),
            connections,
            duration,
            rate,
            base_ms,
        )
        .await?;
        fleet.after(&result);
        say(&format!(
            "  {}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, errors {}",
            drive.label(),
            result.rate(),
            result.percentile_ms(0.5),
            result.percentile_ms(0.99),
            result.percentile_ms(0.999),
            result.errors()
        ));
        anyhow::Ok(Phase { drive, result })
    };
    if let Some(rate) = plan.rate {
        let drive = Drive::Open {
            rate,
            connections: plan.connections.unwrap_or(SWEEP[1]),
            share: None,
        };
        phases.push(step(drive, plan.duration, fleet).await?);
        return Ok(phases);
    }
    let counts: Vec<usize> = match plan.connections {
        Some(c) => vec![c],
        None => SWEEP.to_vec(),
    };
    for connections in counts {
        phases.push(step(Drive::Closed { connections }, plan.sweep_duration(), fleet).await?);
    }
    let best = fastest(&phases).cloned();
    let Some(best) = best.filter(|b| b.result.rate() >= 1.0) else {
        return Ok(phases);
    };
    let opens: Vec<Drive> = match same_rates_as {
        Some(earlier) => earlier
            .iter()
            .filter(|p| matches!(p.drive, Drive::Open { .. }))
            .map(|p| p.drive.clone())
            .collect(),
        None => plan
            .levels
            .iter()
            .map(|share| Drive::Open {
                rate: best.result.rate() * f64::from(*share) / 100.0,
                connections: best.drive.connections(),
                share: Some(*share),
            })
            .collect(),
    };
    for drive in opens {
        phases.push(step(drive, plan.duration, fleet).await?);
    }
    Ok(phases)
}

/// The closed-loop phase with the highest rate (the maximum), or the only phase.
pub fn fastest(phases: &[Phase]) -> Option<&Phase> {
    phases
        .iter()
        .filter(|p| matches!(p.drive, Drive::Closed { .. }))
        .max_by(|a, b| a.result.rate().total_cmp(&b.result.rate()))
        .or(phases.first())
}

/// Every phase's result merged (for the verification: all acknowledged heartbeats).
pub fn total_ok(phases: &[Phase]) -> u64 {
    phases.iter().map(|p| p.result.ok).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(drive: Drive, ok: u64) -> Phase {
        Phase {
            drive,
            result: LoadResult {
                ok,
                elapsed: Duration::from_secs(1),
                ..LoadResult::default()
            },
        }
    }

    #[test]
    fn the_fastest_closed_phase_is_the_maximum() {
        let phases = [
            phase(Drive::Closed { connections: 32 }, 100),
            phase(Drive::Closed { connections: 128 }, 300),
            phase(
                Drive::Open {
                    rate: 1000.0,
                    connections: 128,
                    share: None,
                },
                1000,
            ),
        ];
        assert_eq!(fastest(&phases).unwrap().drive.connections(), 128);
        assert_eq!(phases[2].drive.label(), "open@1000/s");
        assert_eq!(total_ok(&phases), 1400);
    }

    #[test]
    fn a_sweep_plan_bounds_its_length() {
        let plan = Plan {
            rate: None,
            connections: None,
            levels: vec![25, 50, 90],
            duration: Duration::from_secs(20),
        };
        assert_eq!(plan.sweep_duration(), Duration::from_secs(10));
        assert_eq!(plan.total_duration(), Duration::from_secs(90));
    }
}
