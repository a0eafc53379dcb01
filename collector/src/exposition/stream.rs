//! The fleet series written straight from the in-memory fleet, in chunks, for large fleets:
//! 100k machines make ~2M series, too many to build through a registry and hold as one
//! string. Each machine's lines are rendered once per change of the machine and kept with it
//! (status lines, which change with the clock, are written at every scrape from its cached
//! labels). The per-machine output is byte-for-byte what [`super::FleetCollector`] produces
//! through `prometheus-client` (tested against it).

use std::collections::BTreeMap;
use std::fmt::Write;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::accounting::{Increment, Status};
use crate::fleet::{Fleet, GroupTotals, status_index};
use crate::store::{CostTotal, MachineSnapshot};

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

/// How a per-machine family reads its value.
#[derive(Clone, Copy)]
enum Value {
    /// A counter of the machine's totals (time, energy, CO₂), one sample per machine.
    Counter(fn(&Increment) -> f64),
    /// A money counter: one sample per machine and currency.
    Cost(fn(&CostTotal) -> Decimal),
    /// A gauge of the last report, absent when never reported.
    Gauge(fn(&MachineSnapshot) -> Option<f64>),
}

/// A family written for every machine (after `greenops_machine_info` and `_status`): full
/// name without the unit, help, unit, value.
struct Spec {
    name: &'static str,
    help: &'static str,
    unit: Option<&'static str>,
    value: Value,
}

const fn counter(
    name: &'static str,
    help: &'static str,
    unit: &'static str,
    value: fn(&Increment) -> f64,
) -> Spec {
    Spec {
        name,
        help,
        unit: Some(unit),
        value: Value::Counter(value),
    }
}

const fn cost(name: &'static str, help: &'static str, value: fn(&CostTotal) -> Decimal) -> Spec {
    Spec {
        name,
        help,
        unit: None,
        value: Value::Cost(value),
    }
}

const fn gauge(
    name: &'static str,
    help: &'static str,
    unit: Option<&'static str>,
    value: fn(&MachineSnapshot) -> Option<f64>,
) -> Spec {
    Spec {
        name,
        help,
        unit,
        value: Value::Gauge(value),
    }
}

/// Every per-machine family after info and status, in exposition order. The counters also
/// exist per group (`greenops_group_…`).
const FAMILIES: [Spec; 19] = [
    counter(
        "greenops_machine_observed",
        "Observed powered-on time",
        "seconds",
        |t| seconds(t.observed_ms),
    ),
    counter(
        "greenops_machine_idle",
        "Observed time idle beyond the threshold (waste time)",
        "seconds",
        |t| seconds(t.idle_ms),
    ),
    counter(
        "greenops_machine_energy",
        "Estimated energy consumed over observed time",
        "joules",
        |t| float(t.energy_j),
    ),
    counter(
        "greenops_machine_idle_energy",
        "Estimated energy wasted while idle beyond the threshold",
        "joules",
        |t| float(t.idle_energy_j),
    ),
    cost(
        "greenops_machine_energy_cost",
        "Cost of the energy consumed, in the currency of the label",
        |c| c.cost,
    ),
    cost(
        "greenops_machine_idle_energy_cost",
        "Cost of the energy wasted while idle, in the currency of the label",
        |c| c.idle_cost,
    ),
    counter(
        "greenops_machine_co2",
        "Estimated CO2-equivalent emitted for the energy consumed",
        "grams",
        |t| float(t.co2_g),
    ),
    counter(
        "greenops_machine_idle_co2",
        "Estimated CO2-equivalent emitted for the energy wasted while idle",
        "grams",
        |t| float(t.idle_co2_g),
    ),
    counter(
        "greenops_machine_avoidable_energy",
        AVOIDABLE_ENERGY_HELP,
        "joules",
        |t| float(t.avoidable_energy_j),
    ),
    cost(
        "greenops_machine_avoidable_energy_cost",
        AVOIDABLE_COST_HELP,
        |c| c.avoidable_cost,
    ),
    counter(
        "greenops_machine_avoidable_co2",
        AVOIDABLE_CO2_HELP,
        "grams",
        |t| float(t.avoidable_co2_g),
    ),
    counter(
        "greenops_machine_after_hours_idle",
        AFTER_HOURS_IDLE_HELP,
        "seconds",
        |t| seconds(t.after_hours_idle_ms),
    ),
    counter(
        "greenops_machine_after_hours_idle_energy",
        AFTER_HOURS_IDLE_ENERGY_HELP,
        "joules",
        |t| float(t.after_hours_idle_energy_j),
    ),
    counter("greenops_machine_unknown", UNKNOWN_HELP, "seconds", |t| {
        seconds(t.unknown_ms)
    }),
    counter("greenops_machine_gap", GAP_HELP, "seconds", |t| {
        seconds(t.gap_ms)
    }),
    gauge(
        "greenops_machine_input_idle",
        "Seconds since the last keyboard/mouse input, as last reported",
        Some("seconds"),
        |m| m.last.and_then(|l| l.idle_ms).map(seconds),
    ),
    gauge(
        "greenops_machine_cpu_usage_ratio",
        "CPU usage (0-1), as last reported",
        None,
        |m| m.cpu_usage_ratio,
    ),
    gauge(
        "greenops_machine_memory_usage_ratio",
        "Memory usage (0-1), as last reported",
        None,
        |m| m.memory_usage_ratio,
    ),
    gauge(
        "greenops_machine_last_heartbeat_timestamp",
        "Server receive time of the last accepted heartbeat (Unix seconds)",
        Some("seconds"),
        |m| m.last.map(|l| seconds(l.received_at_ms)),
    ),
];

/// A machine's series as text, rendered once per change of the machine: its escaped labels,
/// its `greenops_machine_info` line, then its lines of each of [`FAMILIES`].
#[derive(Debug)]
pub struct MachineText {
    labels: String,
    text: String,
    /// End of the info line, then of each family's lines, in `text`.
    ends: [usize; FAMILIES.len() + 1],
}

impl MachineText {
    pub fn of(m: &MachineSnapshot) -> Self {
        let labels = machine_labels(m);
        let mut text = String::with_capacity(2048);
        let mut ends = [0; FAMILIES.len() + 1];
        text.push_str("greenops_machine_info{machine_id=\"");
        escape(&mut text, &m.id);
        for (key, value) in [
            ("hostname", m.hostname.as_str()),
            ("os", &m.os),
            ("os_version", &m.os_version),
            ("agent_version", &m.agent_version),
            ("site", &m.site),
            ("department", &m.department),
            ("power_profile", &m.power_profile),
            ("idle_source", m.idle_source.map_or("", |k| k.as_str())),
        ] {
            text.push_str("\",");
            text.push_str(key);
            text.push_str("=\"");
            escape(&mut text, value);
        }
        text.push_str("\"} 1\n");
        ends[0] = text.len();
        for (i, family) in FAMILIES.iter().enumerate() {
            sample_lines(&mut text, family, &SERIES[i], &labels, m);
            ends[i + 1] = text.len();
        }
        Self { labels, text, ends }
    }

    fn segment(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }
}

/// The sample name of each of [`FAMILIES`]: `name[_unit]`, plus `_total` for counters.
static SERIES: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(|| FAMILIES.iter().map(|f| series_name(f, f.name)).collect());

fn series_name(family: &Spec, name: &str) -> String {
    let mut s = full_name(name, family.unit);
    if !matches!(family.value, Value::Gauge(_)) {
        s.push_str("_total");
    }
    s
}

fn full_name(name: &str, unit: Option<&str>) -> String {
    match unit {
        Some(u) => format!("{name}_{u}"),
        None => name.to_string(),
    }
}

/// The lines of one family for one machine.
fn sample_lines(out: &mut String, family: &Spec, series: &str, labels: &str, m: &MachineSnapshot) {
    match family.value {
        Value::Counter(value) => sample(out, series, labels, None, value(&m.totals)),
        Value::Cost(value) => {
            for c in &m.costs {
                sample(out, series, labels, Some(&c.currency), float(value(c)));
            }
        }
        Value::Gauge(value) => {
            if let Some(v) = value(m) {
                sample(out, series, labels, None, v);
            }
        }
    }
}

/// `series{labels[,currency="…"]} value`.
fn sample(out: &mut String, series: &str, labels: &str, currency: Option<&str>, v: f64) {
    out.push_str(series);
    out.push('{');
    out.push_str(labels);
    if let Some(currency) = currency {
        out.push_str(",currency=\"");
        escape(out, currency);
        out.push('"');
    }
    out.push_str("} ");
    out.push_str(dtoa::Buffer::new().format(v));
    out.push('\n');
}

fn family_header(out: &mut String, family: &Spec, name: &str, help: &str) {
    let kind = match family.value {
        Value::Gauge(_) => "gauge",
        _ => "counter",
    };
    header(out, name, help, kind, family.unit);
}

/// Writes the fleet series of the live machines of `fleet` — per machine when
/// `per_machine`, then the machine counts by site, department and status — calling
/// `flush(out)` whenever it holds more than `chunk` bytes (the callee takes the text and
/// leaves `out` empty or not, as it likes). Each machine's text is rendered once per change.
#[allow(clippy::too_many_arguments)]
pub fn write_fleet(
    fleet: &Fleet,
    per_machine: bool,
    now_ms: i64,
    offline_after_ms: i64,
    idle_threshold_ms: i64,
    out: &mut String,
    chunk: usize,
    flush: &mut dyn FnMut(&mut String),
) {
    let mut maybe_flush = |out: &mut String| {
        if out.len() >= chunk {
            flush(out);
        }
    };
    if per_machine {
        let live: Vec<(&MachineText, Status)> = fleet
            .live_with_status(now_ms, offline_after_ms, idle_threshold_ms)
            .map(|(m, s)| (m.exposition.get_or_init(|| MachineText::of(&m.snapshot)), s))
            .collect();
        header(
            out,
            "greenops_machine_info",
            "Descriptive labels of each machine (always 1); join with group_left",
            "gauge",
            None,
        );
        for (t, _) in &live {
            out.push_str(t.segment(0));
            maybe_flush(out);
        }
        header(
            out,
            "greenops_machine_status",
            "Current status of each machine: 1 for the current one of active, idle, offline, unknown",
            "gauge",
            None,
        );
        for (t, current) in &live {
            for s in Status::ALL {
                out.push_str("greenops_machine_status{");
                out.push_str(&t.labels);
                out.push_str(",status=\"");
                out.push_str(s.as_str());
                out.push_str(if s == *current { "\"} 1\n" } else { "\"} 0\n" });
            }
            maybe_flush(out);
        }
        for (i, family) in FAMILIES.iter().enumerate() {
            family_header(out, family, family.name, family.help);
            for (t, _) in &live {
                out.push_str(t.segment(i + 1));
                maybe_flush(out);
            }
        }
    }

    header(
        out,
        "greenops_machines",
        "Number of machines by site, department and status",
        "gauge",
        None,
    );
    for (site, department, n) in fleet.census(now_ms, offline_after_ms, idle_threshold_ms) {
        for s in Status::ALL {
            out.push_str("greenops_machines{site=\"");
            escape(out, site);
            out.push_str("\",department=\"");
            escape(out, department);
            out.push_str("\",status=\"");
            out.push_str(s.as_str());
            out.push_str("\"} ");
            out.push_str(itoa::Buffer::new().format(n[status_index(s)]));
            out.push('\n');
        }
    }
}

/// Writes `greenops_group_…` counters: every per-machine counter summed by site and
/// department where it was incurred, retired machines included (so sums never drop).
pub fn write_groups(groups: &GroupTotals, out: &mut String) {
    // (site, department) → time, energy and CO₂ over all currencies, and money per currency.
    let mut by_group: BTreeMap<(&str, &str), MachineSnapshot> = BTreeMap::new();
    for ((site, department, currency), values) in groups {
        let entry = by_group
            .entry((site.as_str(), department.as_str()))
            .or_default();
        entry.totals.add(&values.without_money());
        entry.costs.push(CostTotal {
            currency: currency.clone(),
            cost: values.cost,
            idle_cost: values.idle_cost,
            avoidable_cost: values.avoidable_cost,
        });
    }
    let labels: Vec<String> = by_group
        .keys()
        .map(|(site, department)| {
            let mut l = String::from("site=\"");
            escape(&mut l, site);
            l.push_str("\",department=\"");
            escape(&mut l, department);
            l.push('"');
            l
        })
        .collect();
    for family in FAMILIES
        .iter()
        .filter(|f| !matches!(f.value, Value::Gauge(_)))
    {
        let name = family
            .name
            .replacen("greenops_machine_", "greenops_group_", 1);
        let help = format!(
            "{}; summed by site and department where incurred, retired machines included",
            family.help
        );
        family_header(out, family, &name, &help);
        let series = series_name(family, &name);
        for (group, l) in by_group.values().zip(&labels) {
            sample_lines(out, family, &series, l, group);
        }
    }
}

/// `HELP`, `TYPE` and (with a unit) `UNIT` lines; `name` is the family name without the
/// unit suffix.
fn header(out: &mut String, name: &str, help: &str, kind: &str, unit: Option<&str>) {
    let full = full_name(name, unit);
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
