//! CPU and memory ratios and uptime, sampled cheaply with `sysinfo` (only CPU and memory are
//! refreshed).

use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

/// Samples CPU and memory; `None` inside when the platform offers no system information
/// (then the ratios are simply left out of heartbeats).
#[derive(Debug)]
pub struct SystemSampler {
    system: Option<System>,
}

/// What the machine is doing right now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SystemSample {
    pub cpu_usage_ratio: Option<f64>,
    pub memory_usage_ratio: Option<f64>,
    pub uptime_seconds: Option<u64>,
}

impl Default for SystemSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl SystemSampler {
    pub fn new() -> Self {
        let system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_usage())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        if let Err(e) = &system {
            tracing::warn!(error = %e, "no CPU or memory information on this system");
        }
        Self {
            system: system.ok(),
        }
    }

    /// Refreshes CPU usage (it is measured between two refreshes) and memory.
    pub fn refresh(&mut self) {
        if let Some(system) = &mut self.system {
            system.refresh_cpu_usage();
            system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        }
    }

    pub fn sample(&self) -> SystemSample {
        let uptime_seconds = System::uptime().ok();
        let Some(system) = &self.system else {
            return SystemSample {
                cpu_usage_ratio: None,
                memory_usage_ratio: None,
                uptime_seconds,
            };
        };
        let cpu = f64::from(system.global_cpu_usage()) / 100.0;
        let total = system.total_memory();
        let memory = (total > 0).then(|| system.used_memory() as f64 / total as f64);
        SystemSample {
            cpu_usage_ratio: cpu.is_finite().then_some(cpu.clamp(0.0, 1.0)),
            memory_usage_ratio: memory.map(|m| m.clamp(0.0, 1.0)),
            uptime_seconds,
        }
    }
}

/// This machine's host name, OS name and version, for enrolment.
pub fn describe() -> (String, String, String) {
    let hostname = System::host_name().unwrap_or_else(|_| "unknown-host".into());
    let os = std::env::consts::OS.to_string();
    let version = System::long_os_version()
        .or_else(|_| System::os_version())
        .unwrap_or_default();
    (hostname, os, version.chars().take(128).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_within_bounds() {
        let mut s = SystemSampler::new();
        s.refresh();
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        s.refresh();
        let sample = s.sample();
        for r in [sample.cpu_usage_ratio, sample.memory_usage_ratio]
            .into_iter()
            .flatten()
        {
            assert!((0.0..=1.0).contains(&r), "{r}");
        }
        assert!(sample.memory_usage_ratio.is_some());
        assert!(sample.uptime_seconds.is_some_and(|u| u > 0));
        let (host, os, _) = describe();
        assert!(!host.is_empty() && !os.is_empty());
    }
}
