//! User idle detection behind one trait. Sources are tried in order; the first that answers
//! wins. When none works the agent reports `idle_seconds: null` — never a guess, never CPU load.
//!
//! Platform code lives in per-OS modules; the arithmetic they need is here, platform-neutral
//! and tested everywhere.

#[cfg(target_os = "linux")]
mod dbus;
#[cfg(target_os = "linux")]
mod logind;
#[cfg(target_os = "linux")]
mod mutter;
#[cfg(target_os = "linux")]
mod x11;

use greenops_protocol::Session;

/// What one source sees right now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Seconds since the last keyboard/mouse input; `None` when the source cannot tell.
    pub idle_seconds: Option<f64>,
    pub session: Session,
    /// Which source answered.
    pub source: &'static str,
}

impl Reading {
    /// The answer when no source works.
    pub fn unknown() -> Self {
        Self {
            idle_seconds: None,
            session: Session::Unknown,
            source: "none",
        }
    }
}

/// A way of measuring user idle time.
pub trait IdleSource: Send {
    fn name(&self) -> &'static str;
    /// A reading, or why this source cannot answer now.
    fn read(&mut self) -> Result<Reading, String>;
}

/// The sources available on this platform, in order of preference.
pub fn sources() -> Vec<Box<dyn IdleSource>> {
    platform_sources()
}

/// Linux: X11 first (exact, per input event), Mutter on GNOME (exact; first on Wayland, where
/// the X server only sees input to X clients), then logind (coarse, but works from a system
/// service and knows when nobody is logged in).
#[cfg(target_os = "linux")]
fn platform_sources() -> Vec<Box<dyn IdleSource>> {
    let wayland = std::env::var_os("WAYLAND_DISPLAY").is_some_and(|d| !d.is_empty());
    let x11: Box<dyn IdleSource> = Box::new(x11::X11Source::new());
    let mutter: Box<dyn IdleSource> = Box::new(mutter::MutterSource::new());
    let logind: Box<dyn IdleSource> = Box::new(logind::LogindSource::new());
    if wayland {
        vec![mutter, x11, logind]
    } else {
        vec![x11, mutter, logind]
    }
}

#[cfg(not(target_os = "linux"))]
fn platform_sources() -> Vec<Box<dyn IdleSource>> {
    // Windows (WTS console session + GetLastInputInfo) and macOS (IOKit HIDIdleTime) sources
    // are not built yet: they cannot be compiled or tested on the CI machines. The arithmetic
    // they need is below and tested; until they exist the agent reports unknown idle time.
    Vec::new()
}

/// Asks each source in turn; the first answer wins.
pub fn read_first(sources: &mut [Box<dyn IdleSource>]) -> Reading {
    for source in sources.iter_mut() {
        if let Ok(reading) = source.read() {
            return reading;
        }
    }
    Reading::unknown()
}

// Used by the Windows and macOS sources once they are built; tested on every platform now.
#[cfg_attr(not(any(windows, target_os = "macos")), allow(dead_code))]
/// Windows: idle milliseconds from the 64-bit tick count now and the 32-bit tick of the last
/// input (`LASTINPUTINFO.dwTime` wraps every 49.7 days; `GetTickCount64` does not).
pub fn windows_idle_ms(now_tick64: u64, last_input_tick32: u32) -> u64 {
    let now_low = now_tick64 as u32;
    // Distance backwards from now's low 32 bits, modulo 2^32: correct across the wrap as long
    // as the idle time itself is below 49.7 days.
    u64::from(now_low.wrapping_sub(last_input_tick32))
}

#[cfg_attr(not(any(windows, target_os = "macos")), allow(dead_code))]
/// macOS: `HIDIdleTime` from the IOKit registry is in nanoseconds.
pub fn macos_idle_seconds(hid_idle_time_ns: u64) -> f64 {
    hid_idle_time_ns as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_ticks_survive_the_49_day_wrap() {
        // 10 s idle, far from any wrap.
        assert_eq!(windows_idle_ms(1_000_000, 990_000), 10_000);
        // Input just before the 32-bit counter wrapped, now just after it.
        let now = (1u64 << 32) + 5_000;
        let last = u32::MAX - 4_999;
        assert_eq!(windows_idle_ms(now, last), 10_000);
        // Several wraps of uptime make no difference.
        let now = (7u64 << 32) + 123;
        assert_eq!(windows_idle_ms(now, 23), 100);
    }

    #[test]
    fn macos_nanoseconds_to_seconds() {
        assert_eq!(macos_idle_seconds(1_500_000_000), 1.5);
        assert_eq!(macos_idle_seconds(0), 0.0);
    }

    struct Failing;
    impl IdleSource for Failing {
        fn name(&self) -> &'static str {
            "failing"
        }
        fn read(&mut self) -> Result<Reading, String> {
            Err("no".into())
        }
    }

    #[test]
    fn nothing_working_means_unknown_not_a_guess() {
        let mut sources: Vec<Box<dyn IdleSource>> = vec![Box::new(Failing)];
        assert_eq!(read_first(&mut sources), Reading::unknown());
        assert_eq!(read_first(&mut []), Reading::unknown());
    }
}
