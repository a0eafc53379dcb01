//! Per-machine and fleet series, encoded from one store snapshot at scrape time.

use std::collections::BTreeMap;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::accounting::{self, Status};
use crate::store::{FleetSnapshot, MachineSnapshot};

/// Renders a [`FleetSnapshot`] as seen at `now_ms`.
#[derive(Debug)]
pub struct FleetCollector {
    snapshot: FleetSnapshot,
    now_ms: i64,
    offline_after_ms: i64,
    idle_threshold_ms: i64,
}

impl FleetCollector {
    pub fn new(
        snapshot: FleetSnapshot,
        now_ms: i64,
        offline_after_ms: i64,
        idle_threshold_ms: i64,
    ) -> Self {
        Self {
            snapshot,
            now_ms,
            offline_after_ms,
            idle_threshold_ms,
        }
    }

    pub fn machines(&self) -> usize {
        self.snapshot.machines.len()
    }

    fn status(&self, m: &MachineSnapshot) -> Status {
        accounting::status(
            m.last,
            self.now_ms,
            self.offline_after_ms,
            self.idle_threshold_ms,
        )
    }
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn float(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

use super::stream;

type Labels<'a> = Vec<(&'static str, &'a str)>;

fn machine_labels(m: &MachineSnapshot) -> Labels<'_> {
    vec![
        ("machine_id", m.id.as_str()),
        ("site", m.site.as_str()),
        ("department", m.department.as_str()),
    ]
}

/// A per-machine counter family: one series per machine, value taken from its totals.
fn counter_family(
    encoder: &mut DescriptorEncoder<'_>,
    machines: &[MachineSnapshot],
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: fn(&MachineSnapshot) -> f64,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Counter)?;
    for m in machines {
        let labels = machine_labels(m);
        ConstCounter::new(value(m)).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A per-machine gauge family; machines for which `value` is `None` have no series.
fn gauge_family(
    encoder: &mut DescriptorEncoder<'_>,
    machines: &[MachineSnapshot],
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: impl Fn(&MachineSnapshot) -> Option<f64>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for m in machines {
        if let Some(v) = value(m) {
            let labels = machine_labels(m);
            ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// A per-machine, per-currency money counter.
fn cost_family(
    encoder: &mut DescriptorEncoder<'_>,
    machines: &[MachineSnapshot],
    name: &str,
    help: &str,
    value: fn(&crate::store::CostTotal) -> Decimal,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for m in machines {
        for c in &m.costs {
            let mut labels = machine_labels(m);
            labels.push(("currency", c.currency.as_str()));
            ConstCounter::new(float(value(c))).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

impl Collector for FleetCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let machines = &self.snapshot.machines;
        let enc = &mut encoder;

        let mut info = enc.encode_descriptor(
            "greenops_machine_info",
            "Descriptive labels of each machine (always 1); join with group_left",
            None,
            MetricType::Gauge,
        )?;
        for m in machines {
            let labels: Labels<'_> = vec![
                ("machine_id", m.id.as_str()),
                ("hostname", m.hostname.as_str()),
                ("os", m.os.as_str()),
                ("os_version", m.os_version.as_str()),
                ("agent_version", m.agent_version.as_str()),
                ("site", m.site.as_str()),
                ("department", m.department.as_str()),
                ("power_profile", m.power_profile.as_str()),
                ("idle_source", m.idle_source.map_or("", |k| k.as_str())),
            ];
            ConstGauge::new(1i64).encode(info.encode_family(&labels)?)?;
        }

        let mut status = enc.encode_descriptor(
            "greenops_machine_status",
            "Current status of each machine: 1 for the current one of active, idle, offline, unknown",
            None,
            MetricType::Gauge,
        )?;
        // Every placement of a live machine, and every site without one (department ""),
        // with all four statuses.
        let mut counts: BTreeMap<(&str, &str, Status), i64> = BTreeMap::new();
        for m in machines.iter() {
            for s in Status::ALL {
                counts.insert((m.site.as_str(), m.department.as_str(), s), 0);
            }
        }
        for site in &self.snapshot.sites {
            if !machines.iter().any(|m| &m.site == site) {
                for s in Status::ALL {
                    counts.insert((site.as_str(), "", s), 0);
                }
            }
        }
        for m in machines {
            let current = self.status(m);
            *counts
                .entry((m.site.as_str(), m.department.as_str(), current))
                .or_default() += 1;
            for s in Status::ALL {
                let mut labels = machine_labels(m);
                labels.push(("status", s.as_str()));
                ConstGauge::new(i64::from(s == current)).encode(status.encode_family(&labels)?)?;
            }
        }

        counter_family(
            enc,
            machines,
            "greenops_machine_observed",
            "Observed powered-on time",
            Some(&Unit::Seconds),
            |m| seconds(m.totals.observed_ms),
        )?;
        counter_family(
            enc,
            machines,
            "greenops_machine_idle",
            "Observed time idle beyond the threshold (waste time)",
            Some(&Unit::Seconds),
            |m| seconds(m.totals.idle_ms),
        )?;
        counter_family(
            enc,
            machines,
            "greenops_machine_energy",
            "Estimated energy consumed over observed time",
            Some(&Unit::Joules),
            |m| float(m.totals.energy_j),
        )?;
        counter_family(
            enc,
            machines,
            "greenops_machine_idle_energy",
            "Estimated energy wasted while idle beyond the threshold",
            Some(&Unit::Joules),
            |m| float(m.totals.idle_energy_j),
        )?;
        cost_family(
            enc,
            machines,
            "greenops_machine_energy_cost",
            "Cost of the energy consumed, in the currency of the label",
            |c| c.cost,
        )?;
        cost_family(
            enc,
            machines,
            "greenops_machine_idle_energy_cost",
            "Cost of the energy wasted while idle, in the currency of the label",
            |c| c.idle_cost,
        )?;
        counter_family(
            enc,
            machines,
            "greenops_machine_co2",
            "Estimated CO2-equivalent emitted for the energy consumed",
            Some(&Unit::Grams),
            |m| float(m.totals.co2_g),
        )?;
        counter_family(
            enc,
            machines,
            "greenops_machine_idle_co2",
            "Estimated CO2-equivalent emitted for the energy wasted while idle",
            Some(&Unit::Grams),
            |m| float(m.totals.idle_co2_g),
        )?;
        counter_family(
            enc,
            machines,
            "greenops_machine_avoidable_energy",
            stream::AVOIDABLE_ENERGY_HELP,
            Some(&Unit::Joules),
            |m| float(m.totals.avoidable_energy_j),
        )?;
        cost_family(
            enc,
            machines,
            "greenops_machine_avoidable_energy_cost",
            stream::AVOIDABLE_COST_HELP,
            |c| c.avoidable_cost,
        )?;
        counter_family(
            enc,
            machines,
            "greenops_machine_avoidable_co2",
            stream::AVOIDABLE_CO2_HELP,
            Some(&Unit::Grams),
            |m| float(m.totals.avoidable_co2_g),
        )?;
        counter_family(
            enc,
            machines,
            "greenops_machine_after_hours_idle",
            stream::AFTER_HOURS_IDLE_HELP,
            Some(&Unit::Seconds),
            |m| seconds(m.totals.after_hours_idle_ms),
        )?;
        counter_family(
            enc,
            machines,
            "greenops_machine_after_hours_idle_energy",
            stream::AFTER_HOURS_IDLE_ENERGY_HELP,
            Some(&Unit::Joules),
            |m| float(m.totals.after_hours_idle_energy_j),
        )?;
        counter_family(
            enc,
            machines,
            "greenops_machine_unknown",
            stream::UNKNOWN_HELP,
            Some(&Unit::Seconds),
            |m| seconds(m.totals.unknown_ms),
        )?;
        counter_family(
            enc,
            machines,
            "greenops_machine_gap",
            stream::GAP_HELP,
            Some(&Unit::Seconds),
            |m| seconds(m.totals.gap_ms),
        )?;
        gauge_family(
            enc,
            machines,
            "greenops_machine_input_idle",
            "Seconds since the last keyboard/mouse input, as last reported",
            Some(&Unit::Seconds),
            |m| m.last.and_then(|l| l.idle_ms).map(seconds),
        )?;
        gauge_family(
            enc,
            machines,
            "greenops_machine_cpu_usage_ratio",
            "CPU usage (0-1), as last reported",
            None,
            |m| m.cpu_usage_ratio,
        )?;
        gauge_family(
            enc,
            machines,
            "greenops_machine_memory_usage_ratio",
            "Memory usage (0-1), as last reported",
            None,
            |m| m.memory_usage_ratio,
        )?;
        gauge_family(
            enc,
            machines,
            "greenops_machine_last_heartbeat_timestamp",
            "Server receive time of the last accepted heartbeat (Unix seconds)",
            Some(&Unit::Seconds),
            |m| m.last.map(|l| seconds(l.received_at_ms)),
        )?;

        let mut fleet = enc.encode_descriptor(
            "greenops_machines",
            "Number of machines by site, department and status",
            None,
            MetricType::Gauge,
        )?;
        for ((site, department, s), n) in counts {
            let labels: Labels<'_> = vec![
                ("site", site),
                ("department", department),
                ("status", s.as_str()),
            ];
            ConstGauge::new(n).encode(fleet.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use greenops_protocol::Session;

    use super::*;
    use crate::accounting::{Increment, LastReport};
    use crate::exposition::render_fleet_only;
    use crate::store::CostTotal;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn snapshot() -> FleetSnapshot {
        let base = MachineSnapshot {
            id: "0f4e1c".into(),
            hostname: "pc-042.example.org".into(),
            os: "linux".into(),
            os_version: "Debian 12".into(),
            agent_version: "0.1.0".into(),
            site: "default".into(),
            department: "finance".into(),
            power_profile: "desktop".into(),
            last: Some(LastReport {
                received_at_ms: 1_795_771_820_000,
                idle_ms: Some(30_000),
                session: Session::Active,
            }),
            cpu_usage_ratio: Some(0.07),
            memory_usage_ratio: Some(0.41),
            uptime_seconds: None,
            idle_source: Some(greenops_protocol::IdleSourceKind::SeedLegacy),
            retired: false,
            totals: Increment {
                observed_ms: 120_000,
                idle_ms: 60_000,
                energy_j: d("11100"),
                idle_energy_j: d("3900"),
                co2_g: d("1.295"),
                idle_co2_g: d("0.455"),
                avoidable_energy_j: d("3780"),
                avoidable_co2_g: d("0.441"),
                after_hours_idle_ms: 45_000,
                after_hours_idle_energy_j: d("2925"),
                gap_ms: 600_000,
                unknown_ms: 15_000,
                ..Increment::default()
            },
            costs: vec![CostTotal {
                currency: "USD".into(),
                cost: d("0.00037"),
                idle_cost: d("0.00013"),
                avoidable_cost: d("0.000126"),
            }],
        };
        let silent = MachineSnapshot {
            id: "a1b2c3".into(),
            hostname: "lab \"7\" \\ <script>".into(),
            department: String::new(),
            site: "lab".into(),
            last: None,
            cpu_usage_ratio: None,
            memory_usage_ratio: None,
            totals: Increment::default(),
            costs: vec![],
            idle_source: None,
            ..base.clone()
        };
        FleetSnapshot {
            machines: vec![base, silent],
            sites: vec!["default".into(), "lab".into()],
        }
    }

    #[test]
    fn exposition_matches_the_golden_file() {
        let now = 1_795_771_830_000;
        let text = render_fleet_only(FleetCollector::new(snapshot(), now, 180_000, 300_000));
        let golden = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/golden/fleet.openmetrics"
        );
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(golden, &text).unwrap();
        }
        let expected = std::fs::read_to_string(golden).unwrap();
        assert_eq!(
            text, expected,
            "run with UPDATE_GOLDEN=1 to accept a deliberate change"
        );
    }

    /// The fleet of `snapshot`, as the collector holds it.
    fn fleet_of(snapshot: &FleetSnapshot) -> crate::fleet::Fleet {
        crate::fleet::Fleet::of(snapshot.machines.clone(), snapshot.sites.clone())
    }

    /// The streaming encoder's scrape of `fleet` at `now`, then `# EOF`.
    fn streamed(fleet: &crate::fleet::Fleet, now: i64) -> String {
        let mut whole = String::new();
        let mut send = |piece: crate::exposition::Piece| match piece {
            crate::exposition::Piece::Text(t) => whole.push_str(&t),
            crate::exposition::Piece::Shared(b) => {
                whole.push_str(std::str::from_utf8(b.text()).unwrap())
            }
        };
        let mut sink = crate::exposition::Sink::new(&mut send);
        crate::exposition::write_fleet(fleet, true, now, 180_000, 300_000, &mut sink);
        sink.flush();
        drop(sink);
        whole.push_str("# EOF\n");
        whole
    }

    #[test]
    fn the_streaming_encoder_matches_prometheus_client_byte_for_byte() {
        let now = 1_795_771_830_000;
        let reference =
            |now| render_fleet_only(FleetCollector::new(snapshot(), now, 180_000, 300_000));
        let fleet = fleet_of(&snapshot());
        assert_eq!(streamed(&fleet, now), reference(now));
        // An hour later every machine is offline: the status lines kept from the first
        // scrape must not be served again.
        let later = now + 3_600_000;
        assert_ne!(reference(later), reference(now));
        assert_eq!(streamed(&fleet, later), reference(later));
        assert_eq!(streamed(&fleet, now), reference(now));
        let empty = FleetSnapshot::default();
        assert_eq!(
            streamed(&fleet_of(&empty), now),
            render_fleet_only(FleetCollector::new(empty, now, 180_000, 300_000))
        );
    }

    fn text() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::string::string_regex("[a-z0-9 \"\\\n<>é-]{0,12}").unwrap()
    }

    proptest::proptest! {
        #[test]
        fn streaming_matches_the_reference_on_any_snapshot(
            machines in proptest::collection::vec(
                (text(), text(), text(), proptest::option::of((0i64..10_000_000, proptest::option::of(0i64..9_000_000), 0usize..4)),
                 proptest::option::of(0.0f64..1.0), 0i64..1_000_000_000, 0u32..100_000, proptest::collection::vec((text(), 0u32..1_000_000), 0..3)),
                0..6),
            sites in proptest::collection::vec(text(), 0..3),
            later in 0i64..12_000_000,
        ) {
            let sessions = [Session::Active, Session::Locked, Session::None, Session::Unknown];
            let snapshot = FleetSnapshot {
                sites,
                machines: machines
                    .into_iter()
                    .enumerate()
                    .map(|(i, (host, site, dept, last, cpu, ms, milli, costs))| MachineSnapshot {
                        id: format!("m{i}"),
                        hostname: host,
                        os: "linux".into(),
                        os_version: "12".into(),
                        agent_version: "0.1.0".into(),
                        site,
                        department: dept,
                        power_profile: "desktop".into(),
                        last: last.map(|(r, idle, s)| LastReport { received_at_ms: r, idle_ms: idle, session: sessions[s] }),
                        cpu_usage_ratio: cpu,
                        memory_usage_ratio: cpu.map(|c| 1.0 - c),
                        uptime_seconds: None,
                        idle_source: None,
                        retired: false,
                        totals: Increment {
                            observed_ms: ms,
                            idle_ms: ms / 2,
                            energy_j: Decimal::new(i64::from(milli), 3),
                            idle_energy_j: Decimal::new(i64::from(milli / 3), 3),
                            co2_g: Decimal::new(i64::from(milli), 6),
                            idle_co2_g: Decimal::new(i64::from(milli / 7), 6),
                            ..Increment::default()
                        },
                        costs: costs
                            .into_iter()
                            .map(|(currency, v)| CostTotal { currency, cost: Decimal::new(i64::from(v), 9), idle_cost: Decimal::new(i64::from(v / 2), 9), avoidable_cost: Decimal::new(i64::from(v / 3), 9) })
                            .collect(),
                    })
                    .collect(),
            };
            // Scraped at two times and again at the first: statuses kept from one scrape are
            // served at the next only where they still hold.
            let fleet = fleet_of(&snapshot);
            for now in [5_000_000, later, 5_000_000] {
                let reference = render_fleet_only(FleetCollector::new(snapshot.clone(), now, 180_000, 300_000));
                proptest::prop_assert_eq!(streamed(&fleet, now), reference);
            }
        }
    }

    #[test]
    fn group_series_sum_every_row_of_their_group() {
        let inc = |ms, j: &str, cost: &str| Increment {
            observed_ms: ms,
            energy_j: d(j),
            cost: d(cost),
            ..Increment::default()
        };
        let mut groups = crate::fleet::GroupTotals::new();
        let key = |s: &str, dep: &str, c: &str| (s.to_string(), dep.to_string(), c.to_string());
        groups.insert(key("hq", "it", "EUR"), inc(1000, "1.5", "0.25"));
        groups.insert(key("hq", "it", "USD"), inc(500, "0.5", "0.1"));
        groups.insert(key("lab\"1", "", "EUR"), inc(2000, "2", "0"));
        let mut out = String::new();
        crate::exposition::write_groups(&groups, &mut out);
        for line in [
            "# TYPE greenops_group_observed_seconds counter\n# UNIT greenops_group_observed_seconds seconds\n",
            "greenops_group_observed_seconds_total{site=\"hq\",department=\"it\"} 1.5\n",
            "greenops_group_energy_joules_total{site=\"hq\",department=\"it\"} 2.0\n",
            "greenops_group_energy_cost_total{site=\"hq\",department=\"it\",currency=\"EUR\"} 0.25\n",
            "greenops_group_energy_cost_total{site=\"hq\",department=\"it\",currency=\"USD\"} 0.1\n",
            "greenops_group_observed_seconds_total{site=\"lab\\\"1\",department=\"\"} 2.0\n",
            "greenops_group_gap_seconds_total{site=\"hq\",department=\"it\"} 0.0\n",
        ] {
            assert!(out.contains(line), "{line} not in\n{out}");
        }
        assert!(!out.contains("input_idle") && !out.contains("greenops_machine_"));
        // The same families as per machine, counters only.
        let families = out.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(families, 15);
    }

    #[test]
    fn every_family_has_help_and_counters_end_in_total() {
        let text = render_fleet_only(FleetCollector::new(snapshot(), 0, 180_000, 300_000));
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split_whitespace().nth(2).unwrap();
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} has no HELP"
            );
        }
        for name in [
            "greenops_machine_observed_seconds_total",
            "greenops_machine_idle_seconds_total",
            "greenops_machine_energy_joules_total",
            "greenops_machine_idle_energy_joules_total",
            "greenops_machine_energy_cost_total",
            "greenops_machine_idle_energy_cost_total",
            "greenops_machine_co2_grams_total",
            "greenops_machine_idle_co2_grams_total",
            "greenops_machine_avoidable_energy_joules_total",
            "greenops_machine_avoidable_energy_cost_total",
            "greenops_machine_avoidable_co2_grams_total",
            "greenops_machine_after_hours_idle_seconds_total",
            "greenops_machine_after_hours_idle_energy_joules_total",
            "greenops_machine_unknown_seconds_total",
            "greenops_machine_gap_seconds_total",
            "greenops_machine_input_idle_seconds",
            "greenops_machine_cpu_usage_ratio",
            "greenops_machine_memory_usage_ratio",
            "greenops_machine_last_heartbeat_timestamp_seconds",
            "greenops_machine_status",
            "greenops_machine_info",
            "greenops_machines",
        ] {
            assert!(text.contains(&format!("\n{name}{{")), "missing {name}");
        }
    }
}
