//! GNOME on Wayland: Mutter's idle monitor on the user's session bus
//! (`org.gnome.Mutter.IdleMonitor.GetIdletime`, milliseconds since the last input) and the
//! screen lock from `org.gnome.ScreenSaver.GetActive`. Works for an agent running in the
//! user's session (the systemd user unit); the session bus refuses other users.

use greenops_protocol::Session;

use super::dbus::{Connection, Value};
use super::{IdleSource, Reading};

/// The session bus address: `DBUS_SESSION_BUS_ADDRESS`, else `$XDG_RUNTIME_DIR/bus`.
fn session_bus_address() -> Option<String> {
    std::env::var("DBUS_SESSION_BUS_ADDRESS")
        .ok()
        .filter(|a| !a.is_empty())
        .or_else(|| {
            let dir = std::env::var("XDG_RUNTIME_DIR")
                .ok()
                .filter(|d| !d.is_empty())?;
            Some(format!("unix:path={dir}/bus"))
        })
}

/// Blocking: read it through [`super::Sampler`].
pub struct MutterSource {
    conn: Option<Connection>,
    /// A fixed bus address (tests); `None`: from the environment at each connection.
    address: Option<String>,
}

impl MutterSource {
    pub fn new() -> Self {
        Self {
            conn: None,
            address: None,
        }
    }

    /// A source on the bus at `address` whatever the environment says.
    #[cfg(test)]
    pub fn at(address: &str) -> Self {
        Self {
            conn: None,
            address: Some(address.to_string()),
        }
    }
}

impl IdleSource for MutterSource {
    fn name(&self) -> &'static str {
        "gnome-mutter"
    }

    fn read(&mut self) -> Result<Reading, String> {
        if self.conn.is_none() {
            let address = match &self.address {
                Some(address) => address.clone(),
                None => session_bus_address().ok_or("no session bus address")?,
            };
            self.conn = Some(Connection::open(&address).map_err(|e| format!("session bus: {e}"))?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err("no session bus connection".into());
        };
        let idle_ms = match conn.call(
            "org.gnome.Mutter.IdleMonitor",
            "/org/gnome/Mutter/IdleMonitor/Core",
            "org.gnome.Mutter.IdleMonitor",
            "GetIdletime",
            &[],
        ) {
            Ok(v) => v
                .first()
                .and_then(Value::as_u64)
                .ok_or("GetIdletime answered no number")?,
            Err(e) => {
                self.conn = None;
                return Err(e.to_string());
            }
        };
        let locked = conn
            .call(
                "org.gnome.ScreenSaver",
                "/org/gnome/ScreenSaver",
                "org.gnome.ScreenSaver",
                "GetActive",
                &[],
            )
            .ok()
            .and_then(|v| v.first().and_then(Value::as_bool))
            .unwrap_or(false);
        Ok(Reading {
            idle_seconds: Some(idle_ms as f64 / 1000.0),
            session: if locked {
                Session::Locked
            } else {
                Session::Active
            },
            source: self.name(),
        })
    }
}
