//! X11: the MIT-SCREEN-SAVER extension's `ms_since_user_input` on the display in `$DISPLAY`
//! (or `:0`). Works for an agent running inside the user's X session, or as root with access
//! to the display.

use greenops_protocol::Session;
use x11rb::connection::Connection;
use x11rb::protocol::screensaver::{self, ConnectionExt as _};
use x11rb::rust_connection::RustConnection;

use super::{IdleSource, Reading};

pub struct X11Source {
    conn: Option<(RustConnection, u32)>,
}

impl X11Source {
    pub fn new() -> Self {
        Self { conn: None }
    }

    fn connect() -> Result<(RustConnection, u32), String> {
        let display = std::env::var("DISPLAY").ok().filter(|d| !d.is_empty());
        let (conn, screen) = x11rb::connect(Some(display.as_deref().unwrap_or(":0")))
            .map_err(|e| format!("cannot open the X display: {e}"))?;
        let root = conn.setup().roots[screen].root;
        Ok((conn, root))
    }
}

impl IdleSource for X11Source {
    fn name(&self) -> &'static str {
        "x11-screensaver"
    }

    fn read(&mut self) -> Result<Reading, String> {
        if self.conn.is_none() {
            self.conn = Some(Self::connect()?);
        }
        let Some((conn, root)) = &self.conn else {
            return Err("no X connection".into());
        };
        let reply = conn
            .screensaver_query_info(*root)
            .map_err(|e| e.to_string())
            .and_then(|cookie| cookie.reply().map_err(|e| e.to_string()));
        match reply {
            Ok(info) => Ok(Reading {
                idle_seconds: Some(f64::from(info.ms_since_user_input) / 1000.0),
                // An active screen saver usually means a locked screen.
                session: if info.state == u8::from(screensaver::State::ON) {
                    Session::Locked
                } else {
                    Session::Active
                },
                source: self.name(),
            }),
            Err(e) => {
                // The display went away (logout): reconnect next time.
                self.conn = None;
                Err(e)
            }
        }
    }
}
