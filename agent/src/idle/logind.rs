//! systemd-logind over the system bus: which user sessions exist, whether the graphical one is
//! active or locked, and its `IdleHint` / `IdleSinceHint`. Works from a system service (no
//! access to the user's display needed). Its resolution is the desktop's: the desktop sets
//! `IdleHint` after its own idle delay (GNOME: 5 minutes by default), so idle time reads 0
//! until then and counts from the moment the hint was set.
//!
//! With no graphical user session the reading is `none`, idle since the last graphical session
//! this agent saw ended — or since boot when it has seen none.

use greenops_protocol::Session;

use super::dbus::{Connection, DbusError, Value};
use super::{IdleSource, Reading};

const DEFAULT_SYSTEM_BUS: &str = "unix:path=/run/dbus/system_bus_socket";

/// One logind session, as far as idle detection cares.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionInfo {
    /// `x11`, `wayland`, `mir`, `tty`, `unspecified`…
    pub kind: String,
    /// `user`, `greeter`, `lock-screen`, `background`…
    pub class: String,
    pub active: bool,
    pub remote: bool,
    pub idle_hint: bool,
    /// Microseconds since the epoch (CLOCK_REALTIME) when `IdleHint` last changed.
    pub idle_since_us: u64,
    pub locked_hint: bool,
}

impl SessionInfo {
    fn from_properties(props: &Value) -> Self {
        let text = |k: &str| {
            props
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let flag = |k: &str| props.get(k).and_then(Value::as_bool).unwrap_or(false);
        Self {
            kind: text("Type"),
            class: text("Class"),
            active: flag("Active"),
            remote: flag("Remote"),
            idle_hint: flag("IdleHint"),
            idle_since_us: props
                .get("IdleSinceHint")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            locked_hint: flag("LockedHint"),
        }
    }

    /// A person sitting at this machine's own display.
    fn graphical_user(&self) -> bool {
        self.class == "user"
            && !self.remote
            && matches!(self.kind.as_str(), "x11" | "wayland" | "mir")
    }
}

/// What the sessions mean at `now_us`; `last_seen_us` is when a graphical user session was
/// last present (updated here), `boot_us` when the machine started.
pub fn interpret(
    sessions: &[SessionInfo],
    now_us: u64,
    last_seen_us: &mut Option<u64>,
    boot_us: u64,
) -> Reading {
    let seconds = |since: u64| now_us.saturating_sub(since) as f64 / 1e6;
    let graphical: Vec<&SessionInfo> = sessions.iter().filter(|s| s.graphical_user()).collect();
    let chosen = graphical.iter().find(|s| s.active).or(graphical.first());
    match chosen {
        Some(s) => {
            *last_seen_us = Some(now_us);
            // A user session that is not the active one is behind the greeter or another
            // user's session: nobody is using it.
            let locked = s.locked_hint || !s.active;
            let idle = if s.idle_hint && s.idle_since_us > 0 {
                seconds(s.idle_since_us)
            } else {
                0.0
            };
            Reading {
                idle_seconds: Some(idle),
                session: if locked {
                    Session::Locked
                } else {
                    Session::Active
                },
                source: "logind",
            }
        }
        None => Reading {
            idle_seconds: Some(seconds(last_seen_us.unwrap_or(boot_us))),
            session: Session::None,
            source: "logind",
        },
    }
}

/// Reads logind over the system bus (`DBUS_SYSTEM_BUS_ADDRESS` or the standard socket).
/// Blocking: read it through [`super::Sampler`].
pub struct LogindSource {
    conn: Option<Connection>,
    last_seen_us: Option<u64>,
    /// A fixed bus address (tests); `None`: from the environment at each connection.
    address: Option<String>,
}

impl LogindSource {
    pub fn new() -> Self {
        Self {
            conn: None,
            last_seen_us: None,
            address: None,
        }
    }

    /// A source on the bus at `address` whatever the environment says.
    #[cfg(test)]
    pub fn at(address: &str) -> Self {
        Self {
            address: Some(address.to_string()),
            ..Self::new()
        }
    }

    fn sessions(conn: &mut Connection) -> Result<Vec<SessionInfo>, DbusError> {
        let listed = conn.call(
            "org.freedesktop.login1",
            "/org/freedesktop/login1",
            "org.freedesktop.login1.Manager",
            "ListSessions",
            &[],
        )?;
        let mut out = Vec::new();
        for session in listed.first().map(Value::items).unwrap_or_default() {
            let Some(path) = session.items().get(4).and_then(Value::as_str) else {
                continue;
            };
            let props = conn.call(
                "org.freedesktop.login1",
                path,
                "org.freedesktop.DBus.Properties",
                "GetAll",
                &["org.freedesktop.login1.Session"],
            )?;
            if let Some(p) = props.first() {
                out.push(SessionInfo::from_properties(p));
            }
        }
        Ok(out)
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Boot time (CLOCK_REALTIME, µs) from `/proc/uptime`.
fn boot_us(now: u64) -> u64 {
    let uptime = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    now.saturating_sub((uptime * 1e6) as u64)
}

impl IdleSource for LogindSource {
    fn name(&self) -> &'static str {
        "logind"
    }

    fn read(&mut self) -> Result<Reading, String> {
        if self.conn.is_none() {
            let address = self.address.clone().unwrap_or_else(|| {
                std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
                    .ok()
                    .filter(|a| !a.is_empty())
                    .unwrap_or_else(|| DEFAULT_SYSTEM_BUS.to_string())
            });
            self.conn = Some(Connection::open(&address).map_err(|e| format!("system bus: {e}"))?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err("no system bus connection".into());
        };
        match Self::sessions(conn) {
            Ok(sessions) => {
                let now = now_us();
                Ok(interpret(
                    &sessions,
                    now,
                    &mut self.last_seen_us,
                    boot_us(now),
                ))
            }
            Err(e) => {
                if matches!(e, DbusError::Io(_) | DbusError::Protocol(_)) {
                    self.conn = None;
                }
                Err(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(
        kind: &str,
        class: &str,
        active: bool,
        idle_since: Option<u64>,
        locked: bool,
    ) -> SessionInfo {
        SessionInfo {
            kind: kind.into(),
            class: class.into(),
            active,
            remote: false,
            idle_hint: idle_since.is_some(),
            idle_since_us: idle_since.unwrap_or(0),
            locked_hint: locked,
        }
    }

    const NOW: u64 = 1_800_000_000_000_000;
    const BOOT: u64 = NOW - 3_600_000_000;

    #[test]
    fn the_active_graphical_session_decides() {
        let mut seen = None;
        let sessions = [
            session("tty", "user", true, None, false),
            session("wayland", "user", true, Some(NOW - 420_000_000), false),
        ];
        let r = interpret(&sessions, NOW, &mut seen, BOOT);
        assert_eq!(
            (r.idle_seconds, r.session, r.source),
            (Some(420.0), Session::Active, "logind")
        );
        assert_eq!(seen, Some(NOW));
        // Not idle per the desktop: 0, not a guess of how long.
        let r = interpret(
            &[session("x11", "user", true, None, false)],
            NOW,
            &mut seen,
            BOOT,
        );
        assert_eq!(r.idle_seconds, Some(0.0));
    }

    #[test]
    fn locked_or_switched_away_sessions_are_locked() {
        let mut seen = None;
        let r = interpret(
            &[session("x11", "user", true, Some(NOW - 1_000_000), true)],
            NOW,
            &mut seen,
            BOOT,
        );
        assert_eq!((r.session, r.idle_seconds), (Session::Locked, Some(1.0)));
        let sessions = [
            session("wayland", "user", false, None, false),
            session("wayland", "greeter", true, None, false),
        ];
        assert_eq!(
            interpret(&sessions, NOW, &mut seen, BOOT).session,
            Session::Locked
        );
    }

    #[test]
    fn without_a_graphical_session_idle_counts_from_the_last_one_or_boot() {
        let mut seen = None;
        let ssh = SessionInfo {
            remote: true,
            ..session("tty", "user", true, None, false)
        };
        let r = interpret(std::slice::from_ref(&ssh), NOW, &mut seen, BOOT);
        assert_eq!((r.session, r.idle_seconds), (Session::None, Some(3600.0)));
        interpret(
            &[session("x11", "user", true, None, false)],
            NOW - 60_000_000,
            &mut seen,
            BOOT,
        );
        let r = interpret(&[ssh], NOW, &mut seen, BOOT);
        assert_eq!((r.session, r.idle_seconds), (Session::None, Some(60.0)));
    }
}
