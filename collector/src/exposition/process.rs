//! The standard `process_*` metrics of the collector itself (CPU, memory, open files, start
//! time), read at scrape time from `/proc` on Linux; elsewhere the family is empty.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// What the process says about itself.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ProcessFacts {
    pub cpu_seconds: f64,
    pub resident_bytes: f64,
    pub virtual_bytes: f64,
    pub open_fds: f64,
    pub max_fds: Option<f64>,
    pub start_time_seconds: f64,
}

#[cfg(target_os = "linux")]
mod linux {
    use super::ProcessFacts;

    /// `/proc` reports times in USER_HZ, which Linux fixes at 100 for every architecture.
    const TICKS_PER_SECOND: f64 = 100.0;

    pub fn read() -> Option<ProcessFacts> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which may itself hold spaces and parentheses.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
        let (utime, stime, start_ticks, vsize) = (field(14)?, field(15)?, field(22)?, field(23)?);
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())?;
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| {
                l.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3)?.parse::<f64>().ok())
            });
        Some(ProcessFacts {
            cpu_seconds: (utime + stime) / TICKS_PER_SECOND,
            resident_bytes: rss_kib * 1024.0,
            virtual_bytes: vsize,
            open_fds,
            max_fds,
            start_time_seconds: boot + start_ticks / TICKS_PER_SECOND,
        })
    }
}

/// The facts of this process, where the platform tells them.
pub fn facts() -> Option<ProcessFacts> {
    #[cfg(target_os = "linux")]
    return linux::read();
    #[cfg(not(target_os = "linux"))]
    return None;
}

/// Encodes the facts at scrape time (registered once in the process registry).
#[derive(Debug)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(f) = facts() else {
            return Ok(());
        };
        let cpu = encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent",
            Some(&Unit::Seconds),
            MetricType::Counter,
        )?;
        ConstCounter::new(f.cpu_seconds).encode(cpu)?;
        let gauges = [
            (
                "process_resident_memory",
                "Resident memory size",
                Some(Unit::Bytes),
                Some(f.resident_bytes),
            ),
            (
                "process_virtual_memory",
                "Virtual memory size",
                Some(Unit::Bytes),
                Some(f.virtual_bytes),
            ),
            (
                "process_open_fds",
                "Open file descriptors",
                None,
                Some(f.open_fds),
            ),
            (
                "process_max_fds",
                "Limit of open file descriptors",
                None,
                f.max_fds,
            ),
            (
                "process_start_time",
                "Start time of the process since the Unix epoch",
                Some(Unit::Seconds),
                Some(f.start_time_seconds),
            ),
        ];
        for (name, help, unit, value) in gauges {
            let Some(value) = value else { continue };
            let family = encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
            ConstGauge::new(value).encode(family)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn the_process_describes_itself() {
        let f = facts().expect("/proc is readable");
        assert!(f.resident_bytes > 1e6, "{f:?}");
        assert!(f.virtual_bytes >= f.resident_bytes);
        assert!(f.open_fds >= 3.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // Started in the last hour (the test process), not in the future.
        assert!(
            f.start_time_seconds <= now + 1.0 && f.start_time_seconds > now - 3600.0,
            "{f:?}"
        );
        assert!(f.cpu_seconds >= 0.0);
    }
}
