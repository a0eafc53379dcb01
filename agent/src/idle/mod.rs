//! User idle detection behind one trait. Sources are tried in order; the first that answers
//! wins. When none works the agent reports `idle_seconds: null` — never a guess, never CPU load.
//!
//! Platform code lives in per-OS modules; the arithmetic they need is here, platform-neutral
//! and tested everywhere.
//!
//! The sources are blocking: X11 and the hand-written D-Bus client wait on their sockets (up
//! to a few seconds when a bus does not answer). The run loop reads them through [`Sampler`],
//! which does that on tokio's blocking pool, so no async worker ever waits on a socket.

#[cfg(target_os = "linux")]
mod dbus;
#[cfg(target_os = "linux")]
mod logind;
#[cfg(target_os = "linux")]
mod mutter;
#[cfg(target_os = "linux")]
mod x11;
// Compiled and tested only by the GitHub Actions workflow (.github/workflows/ci.yml, Windows and
// macOS runners), not by the Debian CI machines: keep them small; the logic they need is below,
// platform-neutral and tested everywhere.
#[cfg(target_os = "macos")]
mod macos;
#[cfg(windows)]
mod windows;

use std::sync::{Arc, Mutex, PoisonError};

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

/// Windows: the console session through WTS (works from a service in session 0), with
/// `GetLastInputInfo` as the fallback when the agent runs inside that session.
#[cfg(windows)]
fn platform_sources() -> Vec<Box<dyn IdleSource>> {
    vec![Box::new(windows::WindowsSource::new())]
}

/// macOS: `HIDIdleTime` from the IOKit registry.
#[cfg(target_os = "macos")]
fn platform_sources() -> Vec<Box<dyn IdleSource>> {
    vec![Box::new(macos::MacosSource::new())]
}

#[cfg(not(any(target_os = "linux", windows, target_os = "macos")))]
fn platform_sources() -> Vec<Box<dyn IdleSource>> {
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

/// Why no source answers: each source's name and reason, or that the platform has none
/// (blocking: reads every source once).
pub fn why_none_works() -> String {
    let mut sources = sources();
    if sources.is_empty() {
        return "this platform has no idle source".into();
    }
    sources
        .iter_mut()
        .map(|source| match source.read() {
            Ok(_) => format!("{}: answers now", source.name()),
            Err(e) => format!("{}: {e}", source.name()),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The idle sources, read off the async workers: each [`Sampler::read`] runs [`read_first`] on
/// tokio's blocking pool. The sources sit behind a mutex rather than being moved into the
/// blocking task, so a read whose future is dropped half-way loses nothing (the blocking call
/// finishes and gives them back), and two reads at once take turns.
pub struct Sampler {
    sources: Arc<Mutex<Vec<Box<dyn IdleSource>>>>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler").finish_non_exhaustive()
    }
}

impl Sampler {
    pub fn new(sources: Vec<Box<dyn IdleSource>>) -> Self {
        Self {
            sources: Arc::new(Mutex::new(sources)),
        }
    }

    /// The first answer of the sources, read on the blocking pool. A panic in a source is
    /// passed on to the caller, as if it had been read here.
    pub async fn read(&self) -> Reading {
        let sources = self.sources.clone();
        let read = tokio::task::spawn_blocking(move || {
            let mut sources = sources.lock().unwrap_or_else(PoisonError::into_inner);
            read_first(&mut sources)
        });
        match read.await {
            Ok(reading) => reading,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                // Cancelled: the runtime is shutting down.
                Err(_) => Reading::unknown(),
            },
        }
    }
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

/// What WTS reports about the console session (`WTSINFOEX_LEVEL1_W`).
#[cfg_attr(not(windows), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WtsSession {
    /// `WTS_SESSIONSTATE_LOCK` (0), `WTS_SESSIONSTATE_UNLOCK` (1) or unknown (-1).
    pub flags: i32,
    /// Someone is logged on (the user name is not empty).
    pub user_present: bool,
    /// FILETIME units (100 ns since 1601); 0 when Windows does not track it for the session.
    pub last_input_time: i64,
    pub current_time: i64,
}

#[cfg_attr(not(windows), allow(dead_code))]
/// Idle seconds and session state from a WTS reading; idle is `None` when WTS has no input
/// time for the session (then `GetLastInputInfo` is tried from inside the session).
pub fn wts_reading(s: &WtsSession) -> (Option<f64>, Session) {
    if !s.user_present {
        return (None, Session::None);
    }
    let session = match s.flags {
        0 => Session::Locked,
        1 => Session::Active,
        _ => Session::Unknown,
    };
    let idle = (s.last_input_time > 0 && s.current_time >= s.last_input_time)
        .then(|| (s.current_time - s.last_input_time) as f64 / 1e7);
    (idle, session)
}

/// Seconds since `since_ms` (a tick or clock in milliseconds), never negative.
#[cfg_attr(not(any(windows, target_os = "macos")), allow(dead_code))]
pub fn seconds_since(now_ms: u64, since_ms: u64) -> f64 {
    now_ms.saturating_sub(since_ms) as f64 / 1000.0
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
    fn wts_readings() {
        let at = |flags, last, now| WtsSession {
            flags,
            user_present: true,
            last_input_time: last,
            current_time: now,
        };
        // 90 s since the last input, unlocked.
        assert_eq!(
            wts_reading(&at(1, 133_000_000_000_000_000, 133_000_000_900_000_000)),
            (Some(90.0), Session::Active)
        );
        assert_eq!(wts_reading(&at(0, 1, 10_000_001)).1, Session::Locked);
        assert_eq!(wts_reading(&at(-1, 1, 1)).1, Session::Unknown);
        // No input time from WTS (console sessions on some versions): unknown, not zero.
        assert_eq!(wts_reading(&at(1, 0, 5)).0, None);
        assert_eq!(wts_reading(&at(1, 9, 5)).0, None);
        let nobody = WtsSession {
            user_present: false,
            ..at(1, 1, 2)
        };
        assert_eq!(wts_reading(&nobody), (None, Session::None));
        assert_eq!(seconds_since(5_000, 2_000), 3.0);
        assert_eq!(seconds_since(1_000, 2_000), 0.0);
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

    /// A bus that accepts the connection and never answers: the source waits for its
    /// socket timeout (2 s) in the blocking pool while a task on the same current-thread
    /// runtime — the only async worker there is — keeps ticking.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_silent_bus_does_not_block_the_runtime() {
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::time::{Duration, Instant};

        let dir = std::env::temp_dir().join(format!(
            "greenops-silent-bus-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bus");
        // Connections queue in the backlog; nothing ever reads from or writes to them.
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let address = format!("unix:path={}", path.display());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let (reading, took, ticks) = runtime.block_on(async {
            let sampler = Sampler::new(vec![
                Box::new(logind::LogindSource::at(&address)),
                Box::new(mutter::MutterSource::at(&address)),
            ]);
            let ticks = Arc::new(AtomicU32::new(0));
            let ticker = tokio::spawn({
                let ticks = ticks.clone();
                async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        ticks.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            let started = Instant::now();
            let reading = sampler.read().await;
            let took = started.elapsed();
            ticker.abort();
            (reading, took, ticks.load(Ordering::Relaxed))
        });
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(reading, Reading::unknown());
        assert!(
            took >= Duration::from_secs(3),
            "both sources waited for the silent bus: {took:?}"
        );
        // About 400 ticks of 10 ms in 4 s; a blocked worker would have managed none.
        assert!(ticks >= 50, "the runtime ticked {ticks} times in {took:?}");
    }

    #[test]
    fn nothing_working_means_unknown_not_a_guess() {
        let mut sources: Vec<Box<dyn IdleSource>> = vec![Box::new(Failing)];
        assert_eq!(read_first(&mut sources), Reading::unknown());
        assert_eq!(read_first(&mut []), Reading::unknown());
    }

    /// The collector shows the source's name; one it does not know would read as "other".
    #[test]
    fn every_source_has_a_name_the_protocol_knows() {
        use greenops_protocol::IdleSourceKind;
        for source in sources() {
            let kind = IdleSourceKind::from_name(source.name());
            assert_ne!(kind, IdleSourceKind::Other, "{}", source.name());
        }
        assert_eq!(
            IdleSourceKind::from_name(Reading::unknown().source),
            IdleSourceKind::None
        );
    }
}
