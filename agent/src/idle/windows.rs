//! Windows: the console session's state and last input time through the WTS API, which works
//! from a service in session 0 (where `GetLastInputInfo` would only see the service's own,
//! input-less session). `GetLastInputInfo` is used only when the agent itself runs in the
//! console session and WTS has no input time. Tick arithmetic is 64-bit (no 49.7-day wrap).
//!
//! Not compiled by CI (no Windows target on the build machines); the decisions are in
//! `super::wts_reading` and `super::windows_idle_ms`, tested on every platform.

// FFI into user32 / wtsapi32: each call below states why it is sound.
#![allow(unsafe_code)]

use greenops_protocol::Session;
use windows_sys::Win32::System::RemoteDesktop::{
    ProcessIdToSessionId, WTS_CURRENT_SERVER_HANDLE, WTSFreeMemory, WTSGetActiveConsoleSessionId,
    WTSINFOEXW, WTSQuerySessionInformationW, WTSSessionInfoEx,
};
use windows_sys::Win32::System::SystemInformation::GetTickCount64;
use windows_sys::Win32::System::Threading::GetCurrentProcessId;
use windows_sys::Win32::UI::Input::KeyboardAndMouse::{GetLastInputInfo, LASTINPUTINFO};

use super::{IdleSource, Reading, WtsSession, seconds_since, windows_idle_ms, wts_reading};

/// `WTSGetActiveConsoleSessionId` when no session is attached to the console.
const NO_CONSOLE_SESSION: u32 = 0xFFFF_FFFF;

pub struct WindowsSource {
    /// Tick (ms) when a logged-on console user was last seen.
    last_user_tick: Option<u64>,
}

impl WindowsSource {
    pub fn new() -> Self {
        Self {
            last_user_tick: None,
        }
    }
}

fn console_session(id: u32) -> Result<WtsSession, String> {
    let mut buffer: *mut u16 = std::ptr::null_mut();
    let mut bytes: u32 = 0;
    // SAFETY: WTS allocates `buffer` and writes its size to `bytes`; both pointers are valid
    // for writes for the duration of the call.
    let ok = unsafe {
        WTSQuerySessionInformationW(
            WTS_CURRENT_SERVER_HANDLE,
            id,
            WTSSessionInfoEx,
            &mut buffer,
            &mut bytes,
        )
    };
    if ok == 0 || buffer.is_null() {
        return Err(format!(
            "WTSQuerySessionInformationW: {}",
            std::io::Error::last_os_error()
        ));
    }
    if (bytes as usize) < std::mem::size_of::<WTSINFOEXW>() {
        // SAFETY: `buffer` was allocated by WTS and is freed exactly once.
        unsafe { WTSFreeMemory(buffer.cast()) };
        return Err("WTSQuerySessionInformationW answered a short buffer".into());
    }
    // SAFETY: the buffer holds a WTSINFOEXW (checked size); level 1 is the only level Windows
    // defines. The fields are copied out before the buffer is freed.
    let level1 = unsafe { (*(buffer as *const WTSINFOEXW)).Data.WTSInfoExLevel1 };
    // SAFETY: as above, freed exactly once, after its last use.
    unsafe { WTSFreeMemory(buffer.cast()) };
    Ok(WtsSession {
        flags: level1.SessionFlags,
        user_present: level1.UserName[0] != 0,
        last_input_time: level1.LastInputTime,
        current_time: level1.CurrentTime,
    })
}

/// The session this process runs in.
fn own_session() -> Option<u32> {
    let mut id = 0u32;
    // SAFETY: `id` is valid for writes; GetCurrentProcessId cannot fail.
    let ok = unsafe { ProcessIdToSessionId(GetCurrentProcessId(), &mut id) };
    (ok != 0).then_some(id)
}

/// Idle seconds from `GetLastInputInfo` (meaningful only inside the console session).
fn last_input_seconds(now_tick: u64) -> Option<f64> {
    let mut info = LASTINPUTINFO {
        cbSize: std::mem::size_of::<LASTINPUTINFO>() as u32,
        dwTime: 0,
    };
    // SAFETY: `info` is a properly sized LASTINPUTINFO, valid for writes.
    let ok = unsafe { GetLastInputInfo(&mut info) };
    (ok != 0).then(|| windows_idle_ms(now_tick, info.dwTime) as f64 / 1000.0)
}

impl IdleSource for WindowsSource {
    fn name(&self) -> &'static str {
        "windows-wts"
    }

    fn read(&mut self) -> Result<Reading, String> {
        // SAFETY: neither call takes arguments or can fail.
        let (console, now_tick) = unsafe { (WTSGetActiveConsoleSessionId(), GetTickCount64()) };
        let nobody = || Reading {
            idle_seconds: Some(seconds_since(now_tick, self.last_user_tick.unwrap_or(0))),
            session: Session::None,
            source: "windows-wts",
        };
        if console == NO_CONSOLE_SESSION {
            return Ok(nobody());
        }
        let info = console_session(console)?;
        let (mut idle, session) = wts_reading(&info);
        if session == Session::None {
            return Ok(nobody());
        }
        self.last_user_tick = Some(now_tick);
        if idle.is_none() && own_session() == Some(console) {
            idle = last_input_seconds(now_tick);
        }
        Ok(Reading {
            idle_seconds: idle,
            session,
            source: self.name(),
        })
    }
}
