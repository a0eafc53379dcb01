//! The per-machine series written straight from a [`FleetSnapshot`], in chunks, for large
//! fleets: 100k machines make ~2M series, too many to build through a registry and hold as one
//! string. The output is byte-for-byte what [`super::FleetCollector`] produces through
//! `prometheus-client` (tested against it), with each machine's labels escaped once.

use std::collections::BTreeMap;
use std::fmt::Write;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::accounting::{self, Status};
use crate::store::{FleetSnapshot, MachineSnapshot};

// Help texts of the v2 families (the reference encoder in the tests uses them too).
pub(super) const AVOIDABLE_ENERGY_HELP: &str =
    "Energy sleeping would have saved during the waste (idle minus sleep watts)";
pub(super) const AVOIDABLE_COST_HELP: &str =
    "Cost of the avoidable energy, in the currency of the label";
pub(super) const AVOIDABLE_CO2_HELP: &str = "CO2-equivalent of the avoidable energy";
pub(super) const AFTER_HOURS_IDLE_HELP: &str =
    "Waste time outside the site's business hours (part of the idle time)";
pub(super) const AFTER_HOURS_IDLE_ENERGY_HELP: &str =
    "Energy wasted outside the site's business hours (part of the idle energy)";
pub(super) const UNKNOWN_HELP: &str =
    "Observed time without idle data (coverage: never counted as waste)";
pub(super) const GAP_HELP: &str = "Unobserved time between consecutive heartbeats (coverage)";

/// A per-machine family: name, help, unit, and how to read the value from a machine.
type Family<T> = (
    &'static str,
    &'static str,
    Option<&'static str>,
    fn(&MachineSnapshot) -> T,
);

/// Writes the fleet series into `out`, calling `flush(out)` whenever it holds more than
/// `chunk` bytes (the callee takes the text and leaves `out` empty or not, as it likes).
pub fn write_fleet(
    snapshot: &FleetSnapshot,
    now_ms: i64,
    offline_after_ms: i64,
    idle_threshold_ms: i64,
    out: &mut String,
    chunk: usize,
    flush: &mut dyn FnMut(&mut String),
) {
    let machines = &snapshot.machines;
    let labels: Vec<String> = machines.iter().map(machine_labels).collect();
    let statuses: Vec<Status> = machines
        .iter()
        .map(|m| accounting::status(m.last, now_ms, offline_after_ms, idle_threshold_ms))
        .collect();
    let mut maybe_flush = |out: &mut String| {
        if out.len() >= chunk {
            flush(out);
        }
    };

    header(
        out,
        "greenops_machine_info",
        "Descriptive labels of each machine (always 1); join with group_left",
        "gauge",
        None,
    );
    for m in machines {
        out.push_str("greenops_machine_info{machine_id=\"");
        escape(out, &m.id);
        for (key, value) in [
            ("hostname", &m.hostname),
            ("os", &m.os),
            ("os_version", &m.os_version),
            ("agent_version", &m.agent_version),
            ("site", &m.site),
            ("department", &m.department),
            ("power_profile", &m.power_profile),
        ] {
            out.push_str("\",");
            out.push_str(key);
            out.push_str("=\"");
            escape(out, value);
        }
        out.push_str("\"} 1\n");
        maybe_flush(out);
    }

    header(
        out,
        "greenops_machine_status",
        "Current status of each machine: 1 for the current one of active, idle, offline, unknown",
        "gauge",
        None,
    );
    for (l, current) in labels.iter().zip(&statuses) {
        for s in Status::ALL {
            out.push_str("greenops_machine_status{");
            out.push_str(l);
            out.push_str(",status=\"");
            out.push_str(s.as_str());
            out.push_str(if s == *current { "\"} 1\n" } else { "\"} 0\n" });
        }
        maybe_flush(out);
    }

    let counters: [Family<f64>; 2] = [
        (
            "greenops_machine_observed",
            "Observed powered-on time",
            Some("seconds"),
            |m| seconds(m.totals.observed_ms),
        ),
        (
            "greenops_machine_idle",
            "Observed time idle beyond the threshold (waste time)",
            Some("seconds"),
            |m| seconds(m.totals.idle_ms),
        ),
    ];
    let energy: [Family<f64>; 2] = [
        (
            "greenops_machine_energy",
            "Estimated energy consumed over observed time",
            Some("joules"),
            |m| float(m.totals.energy_j),
        ),
        (
            "greenops_machine_idle_energy",
            "Estimated energy wasted while idle beyond the threshold",
            Some("joules"),
            |m| float(m.totals.idle_energy_j),
        ),
    ];
    for family in counters.into_iter().chain(energy) {
        counter_family(out, machines, &labels, family, &mut maybe_flush);
    }
    let costs: [CostFamily; 2] = [
        (
            "greenops_machine_energy_cost",
            "Cost of the energy consumed, in the currency of the label",
            |c| c.cost,
        ),
        (
            "greenops_machine_idle_energy_cost",
            "Cost of the energy wasted while idle, in the currency of the label",
            |c| c.idle_cost,
        ),
    ];
    for family in costs {
        cost_family(out, machines, &labels, family, &mut maybe_flush);
    }
    let co2: [Family<f64>; 2] = [
        (
            "greenops_machine_co2",
            "Estimated CO2-equivalent emitted for the energy consumed",
            Some("grams"),
            |m| float(m.totals.co2_g),
        ),
        (
            "greenops_machine_idle_co2",
            "Estimated CO2-equivalent emitted for the energy wasted while idle",
            Some("grams"),
            |m| float(m.totals.idle_co2_g),
        ),
    ];
    for family in co2 {
        counter_family(out, machines, &labels, family, &mut maybe_flush);
    }
    let avoidable_energy: Family<f64> = (
        "greenops_machine_avoidable_energy",
        AVOIDABLE_ENERGY_HELP,
        Some("joules"),
        |m| float(m.totals.avoidable_energy_j),
    );
    let coverage: [Family<f64>; 5] = [
        (
            "greenops_machine_avoidable_co2",
            AVOIDABLE_CO2_HELP,
            Some("grams"),
            |m| float(m.totals.avoidable_co2_g),
        ),
        (
            "greenops_machine_after_hours_idle",
            AFTER_HOURS_IDLE_HELP,
            Some("seconds"),
            |m| seconds(m.totals.after_hours_idle_ms),
        ),
        (
            "greenops_machine_after_hours_idle_energy",
            AFTER_HOURS_IDLE_ENERGY_HELP,
            Some("joules"),
            |m| float(m.totals.after_hours_idle_energy_j),
        ),
        (
            "greenops_machine_unknown",
            UNKNOWN_HELP,
            Some("seconds"),
            |m| seconds(m.totals.unknown_ms),
        ),
        ("greenops_machine_gap", GAP_HELP, Some("seconds"), |m| {
            seconds(m.totals.gap_ms)
        }),
    ];
    counter_family(out, machines, &labels, avoidable_energy, &mut maybe_flush);
    cost_family(
        out,
        machines,
        &labels,
        (
            "greenops_machine_avoidable_energy_cost",
            AVOIDABLE_COST_HELP,
            |c| c.avoidable_cost,
        ),
        &mut maybe_flush,
    );
    for family in coverage {
        counter_family(out, machines, &labels, family, &mut maybe_flush);
    }

    let gauges: [Family<Option<f64>>; 4] = [
        (
            "greenops_machine_input_idle",
            "Seconds since the last keyboard/mouse input, as last reported",
            Some("seconds"),
            |m| m.last.and_then(|l| l.idle_ms).map(seconds),
        ),
        (
            "greenops_machine_cpu_usage_ratio",
            "CPU usage (0-1), as last reported",
            None,
            |m| m.cpu_usage_ratio,
        ),
        (
            "greenops_machine_memory_usage_ratio",
            "Memory usage (0-1), as last reported",
            None,
            |m| m.memory_usage_ratio,
        ),
        (
            "greenops_machine_last_heartbeat_timestamp",
            "Server receive time of the last accepted heartbeat (Unix seconds)",
            Some("seconds"),
            |m| m.last.map(|l| seconds(l.received_at_ms)),
        ),
    ];
    for (name, help, unit, value) in gauges {
        header(out, name, help, "gauge", unit);
        for (m, l) in machines.iter().zip(&labels) {
            if let Some(v) = value(m) {
                out.push_str(name);
                if let Some(unit) = unit {
                    out.push('_');
                    out.push_str(unit);
                }
                out.push('{');
                out.push_str(l);
                out.push_str("} ");
                out.push_str(dtoa::Buffer::new().format(v));
                out.push('\n');
            }
            maybe_flush(out);
        }
    }

    let mut counts: BTreeMap<(&str, Status), i64> = BTreeMap::new();
    for site in &snapshot.sites {
        for s in Status::ALL {
            counts.insert((site.as_str(), s), 0);
        }
    }
    for (m, s) in machines.iter().zip(&statuses) {
        *counts.entry((m.site.as_str(), *s)).or_default() += 1;
    }
    header(
        out,
        "greenops_machines",
        "Number of machines by site and status",
        "gauge",
        None,
    );
    for ((site, s), n) in counts {
        out.push_str("greenops_machines{site=\"");
        escape(out, site);
        out.push_str("\",status=\"");
        out.push_str(s.as_str());
        out.push_str("\"} ");
        out.push_str(itoa::Buffer::new().format(n));
        out.push('\n');
    }
}

#[allow(clippy::too_many_arguments)]
fn counter_family(
    out: &mut String,
    machines: &[MachineSnapshot],
    labels: &[String],
    (name, help, unit, value): Family<f64>,
    maybe_flush: &mut dyn FnMut(&mut String),
) {
    header(out, name, help, "counter", unit);
    for (m, l) in machines.iter().zip(labels) {
        out.push_str(name);
        if let Some(unit) = unit {
            out.push('_');
            out.push_str(unit);
        }
        out.push_str("_total{");
        out.push_str(l);
        out.push_str("} ");
        out.push_str(dtoa::Buffer::new().format(value(m)));
        out.push('\n');
        maybe_flush(out);
    }
}

type CostFamily = (
    &'static str,
    &'static str,
    fn(&crate::store::CostTotal) -> Decimal,
);

/// A per-machine, per-currency money counter.
fn cost_family(
    out: &mut String,
    machines: &[MachineSnapshot],
    labels: &[String],
    (name, help, value): CostFamily,
    maybe_flush: &mut dyn FnMut(&mut String),
) {
    header(out, name, help, "counter", None);
    for (m, l) in machines.iter().zip(labels) {
        for c in &m.costs {
            out.push_str(name);
            out.push_str("_total{");
            out.push_str(l);
            out.push_str(",currency=\"");
            escape(out, &c.currency);
            out.push_str("\"} ");
            out.push_str(dtoa::Buffer::new().format(float(value(c))));
            out.push('\n');
        }
        maybe_flush(out);
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str, unit: Option<&str>) {
    let full = match unit {
        Some(u) => format!("{name}_{u}"),
        None => name.to_string(),
    };
    let _ = writeln!(out, "# HELP {full} {help}");
    let _ = writeln!(out, "# TYPE {full} {kind}");
    if let Some(u) = unit {
        let _ = writeln!(out, "# UNIT {full} {u}");
    }
}

/// `machine_id="…",site="…",department="…"`, escaped once per machine.
fn machine_labels(m: &MachineSnapshot) -> String {
    let mut s = String::with_capacity(64 + m.id.len() + m.site.len() + m.department.len());
    s.push_str("machine_id=\"");
    escape(&mut s, &m.id);
    s.push_str("\",site=\"");
    escape(&mut s, &m.site);
    s.push_str("\",department=\"");
    escape(&mut s, &m.department);
    s.push('"');
    s
}

/// OpenMetrics label value escaping: backslash, double quote and newline.
fn escape(out: &mut String, value: &str) {
    if !value.contains(['\\', '"', '\n']) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn float(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}
