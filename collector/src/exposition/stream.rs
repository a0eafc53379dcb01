//! The fleet series written straight from the in-memory fleet, in chunks, for large fleets:
//! 100k machines make ~2M series, too many to build through a registry and hold as one
//! string. The per-machine lines of each chunk of the fleet's list are rendered once per
//! change of the chunk (unchanged machines' lines copied from its previous text) and served as
//! shared slices; status lines, which change with the clock, are written again from the
//! cached labels when a machine's status changed since the last scrape. The per-machine
//! output is byte-for-byte what [`super::FleetCollector`] produces through
//! `prometheus-client` (tested against it).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use axum::body::Bytes;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::gzip::Deflated;
use crate::accounting::{Increment, Status};
use crate::fleet::{Fleet, FleetMachine, GroupTotals, status_index};
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

/// The per-machine series of one chunk of the fleet's list, rendered once per change of the
/// chunk and then served as shared slices: family-major (every machine's info line, then every
/// machine's lines of each of [`FAMILIES`]), so each family of a chunk is one contiguous
/// piece. Retired machines have no lines. Status lines, which change with the clock, are
/// written from the labels kept here, again whenever a status changed.
#[derive(Debug)]
pub struct ChunkText {
    /// The machines rendered, by position (their identity only: a machine that is the same
    /// object next time has the same lines, which are then copied instead of rendered).
    machines: Vec<Weak<FleetMachine>>,
    text: Arc<String>,
    /// Machine `k`'s lines of family `f` (0: info, then [`FAMILIES`]) are
    /// `bounds[f * n + k]..bounds[f * n + k + 1]` of `text`, for `n` machines.
    bounds: Vec<usize>,
    /// Each machine's escaped labels, concatenated; machine `k`'s end at `label_ends[k]`.
    labels: String,
    label_ends: Vec<usize>,
    /// Each family's lines of every machine (0: info, then [`FAMILIES`]), shared.
    families: Vec<Shared>,
    /// The status lines last written, with the statuses they show: a scrape whose machines
    /// are all in the same status as at the last one serves them again.
    status: Mutex<Option<StatusLines>>,
}

/// Status lines and the statuses they show (`None`: a retired machine, without lines).
type StatusLines = (Vec<Option<Status>>, Arc<Shared>);

/// Text shared by scrapes, and once a gzip scrape asked for it, its deflate blocks.
#[derive(Debug)]
pub struct Shared {
    text: Bytes,
    deflated: OnceLock<Deflated>,
}

impl Shared {
    fn new(text: Bytes) -> Self {
        Self {
            text,
            deflated: OnceLock::new(),
        }
    }

    pub fn text(&self) -> &Bytes {
        &self.text
    }

    /// The text deflated (on the first call; later calls share the result).
    pub fn deflated(&self) -> anyhow::Result<&Deflated> {
        if let Some(d) = self.deflated.get() {
            return Ok(d);
        }
        let d = super::gzip::deflate(&self.text)?;
        // Two scrapes may both have deflated it: either result will do.
        Ok(self.deflated.get_or_init(|| d))
    }
}

impl ChunkText {
    /// Renders `machines`, copying the lines of those a `previous` text rendered as the same
    /// objects.
    pub fn build(machines: &[Arc<FleetMachine>], previous: &[Arc<ChunkText>]) -> Self {
        let n = machines.len();
        // Where each machine was rendered before. A `Weak` keeps its machine's allocation,
        // so an address seen there is that machine and no other.
        let mut rendered: HashMap<*const FleetMachine, (&ChunkText, usize)> = HashMap::new();
        for p in previous {
            for (k, m) in p.machines.iter().enumerate() {
                rendered.insert(m.as_ptr(), (p.as_ref(), k));
            }
        }
        let found: Vec<Option<(&ChunkText, usize)>> = machines
            .iter()
            .map(|m| rendered.get(&Arc::as_ptr(m)).copied())
            .collect();
        let mut labels = String::new();
        let mut label_ends = Vec::with_capacity(n);
        for (m, found) in machines.iter().zip(&found) {
            match found {
                Some((p, k)) => labels.push_str(p.labels(*k)),
                None if m.snapshot.retired => {}
                None => labels.push_str(&machine_labels(&m.snapshot)),
            }
            label_ends.push(labels.len());
        }
        // As long as the machines were before, on average (or 2 KiB each).
        let (before, rendered_before) = previous
            .iter()
            .fold((0, 0), |(b, r), p| (b + p.text.len(), r + p.machines.len()));
        let guess = before.checked_div(rendered_before).unwrap_or(2048) * n;
        let mut text = String::with_capacity(guess + 4096);
        let mut bounds = Vec::with_capacity((FAMILIES.len() + 1) * n + 1);
        for f in 0..=FAMILIES.len() {
            for (k, m) in machines.iter().enumerate() {
                bounds.push(text.len());
                match found[k] {
                    Some((p, j)) => text.push_str(p.segment(f, j)),
                    None if m.snapshot.retired => {}
                    None if f == 0 => info_line(&mut text, &m.snapshot),
                    None => {
                        let label =
                            &labels[if k == 0 { 0 } else { label_ends[k - 1] }..label_ends[k]];
                        sample_lines(
                            &mut text,
                            &FAMILIES[f - 1],
                            &SERIES[f - 1],
                            label,
                            &m.snapshot,
                        );
                    }
                }
            }
        }
        bounds.push(text.len());
        // A first rendering guessed its size: give back what doubling left over.
        if text.capacity() > text.len() + text.len() / 4 {
            text.shrink_to_fit();
        }
        let text = Arc::new(text);
        let families = (0..=FAMILIES.len())
            .map(|f| {
                let (start, end) = (bounds[f * n], bounds[(f + 1) * n]);
                Shared::new(Bytes::from_owner(SharedText(text.clone())).slice(start..end))
            })
            .collect();
        Self {
            machines: machines.iter().map(Arc::downgrade).collect(),
            text,
            bounds,
            labels,
            label_ends,
            families,
            status: Mutex::new(None),
        }
    }

    /// `greenops_machine_status` lines of the machines in `statuses` (`None`: retired, no
    /// lines), written again only when a status changed since the last scrape.
    fn status_lines(&self, statuses: &[Option<Status>]) -> Arc<Shared> {
        let mut cached = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((shown, lines)) = cached.as_ref()
            && shown.as_slice() == statuses
        {
            return lines.clone();
        }
        let mut out = String::with_capacity(
            statuses.len() * 4 * (self.labels.len() / statuses.len().max(1) + 48),
        );
        for (k, current) in statuses.iter().enumerate() {
            let Some(current) = current else { continue };
            let labels = self.labels(k);
            for s in Status::ALL {
                out.push_str("greenops_machine_status{");
                out.push_str(labels);
                out.push_str(",status=\"");
                out.push_str(s.as_str());
                out.push_str(if s == *current { "\"} 1\n" } else { "\"} 0\n" });
            }
        }
        let lines = Arc::new(Shared::new(Bytes::from(out)));
        *cached = Some((statuses.to_vec(), lines.clone()));
        lines
    }

    fn labels(&self, k: usize) -> &str {
        let start = if k == 0 { 0 } else { self.label_ends[k - 1] };
        &self.labels[start..self.label_ends[k]]
    }

    fn segment(&self, f: usize, k: usize) -> &str {
        let i = f * self.machines.len() + k;
        &self.text[self.bounds[i]..self.bounds[i + 1]]
    }

    /// Every machine's lines of family `f`, shared (no copy).
    fn family(&self, f: usize) -> &Shared {
        &self.families[f]
    }
}

/// A rendered text handed to the body without copying.
struct SharedText(Arc<String>);

impl AsRef<[u8]> for SharedText {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// `greenops_machine_info{…} 1`.
fn info_line(text: &mut String, m: &MachineSnapshot) {
    text.push_str("greenops_machine_info{machine_id=\"");
    escape(text, &m.id);
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
        escape(text, value);
    }
    text.push_str("\"} 1\n");
}

/// Where the exposition goes: text is written into `out` and handed on before each shared
/// piece and at the end; rendered per-machine text is handed on as shared pieces, in order.
pub struct Sink<'a> {
    pub out: String,
    send: &'a mut dyn FnMut(Piece<'_>),
}

/// One piece of the exposition.
#[derive(Debug)]
pub enum Piece<'a> {
    /// Written for this scrape: whole lines, each family's `HELP`/`TYPE` lines in one piece.
    Text(String),
    /// Sample lines shared with the fleet's cached text.
    Shared(&'a Shared),
}

impl std::fmt::Debug for Sink<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("buffered", &self.out.len())
            .finish()
    }
}

impl<'a> Sink<'a> {
    pub fn new(send: &'a mut dyn FnMut(Piece<'_>)) -> Self {
        Self {
            out: String::with_capacity(8192),
            send,
        }
    }

    /// Hands on the text written so far.
    pub fn flush(&mut self) {
        if !self.out.is_empty() {
            let text = std::mem::replace(&mut self.out, String::with_capacity(8192));
            (self.send)(Piece::Text(text));
        }
    }

    fn shared(&mut self, piece: &Shared) {
        if !piece.text.is_empty() {
            self.flush();
            (self.send)(Piece::Shared(piece));
        }
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

/// Writes the fleet series of the live machines of `fleet` into `sink` — per machine when
/// `per_machine`, then the machine counts by site, department and status. Each chunk's
/// per-machine text is rendered once per change of the chunk, then shared.
pub fn write_fleet(
    fleet: &Fleet,
    per_machine: bool,
    now_ms: i64,
    offline_after_ms: i64,
    idle_threshold_ms: i64,
    sink: &mut Sink<'_>,
) {
    if per_machine {
        let chunks: Vec<(&ChunkText, Vec<Option<Status>>)> = fleet
            .chunks_with_status(now_ms, offline_after_ms, idle_threshold_ms)
            .map(|(chunk, statuses)| (chunk.text(), statuses))
            .collect();
        header(
            &mut sink.out,
            "greenops_machine_info",
            "Descriptive labels of each machine (always 1); join with group_left",
            "gauge",
            None,
        );
        for (text, _) in &chunks {
            sink.shared(text.family(0));
        }
        header(
            &mut sink.out,
            "greenops_machine_status",
            "Current status of each machine: 1 for the current one of active, idle, offline, unknown",
            "gauge",
            None,
        );
        for (text, statuses) in &chunks {
            sink.shared(&text.status_lines(statuses));
        }
        for (i, family) in FAMILIES.iter().enumerate() {
            family_header(&mut sink.out, family, family.name, family.help);
            for (text, _) in &chunks {
                sink.shared(text.family(i + 1));
            }
        }
    }

    let out = &mut sink.out;
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
