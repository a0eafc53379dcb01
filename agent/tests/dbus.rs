//! The D-Bus idle sources against a real `dbus-daemon`: with no GNOME session and no logind on
//! the bus, `greenops-agent idle` says why each source is unavailable and reports `null`.
//! (logind and Mutter themselves need a systemd machine with a desktop session, which the CI
//! machines are not; their logic is unit-tested with fixtures.)
//! Linux only: the D-Bus and X11 sources exist there alone.

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn dbus_sources_explain_themselves_and_never_guess() {
    let dir = std::env::temp_dir().join(format!("greenops-agent-dbus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let address = format!("unix:path={}/bus", dir.display());
    let Ok(mut daemon) = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--nopidfile"])
        .arg(format!("--address={address}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("dbus-daemon not available, and CI=true forbids skipping");
        }
        eprintln!("SKIPPED: dbus-daemon not available");
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dir.join("bus").exists() {
        assert!(Instant::now() < deadline, "dbus-daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_greenops-agent"))
        .arg("idle")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env("DBUS_SESSION_BUS_ADDRESS", &address)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &address)
        .env("GREENOPS_AGENT_CONFIG", "/dev/null")
        .output()
        .unwrap();
    let _ = daemon.kill();
    let _ = daemon.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    let line = |source: &str| {
        text.lines()
            .find(|l| l.starts_with(source))
            .unwrap_or_else(|| panic!("no line for {source}:\n{text}"))
            .to_string()
    };
    assert!(
        line("gnome-mutter").contains("org.freedesktop.DBus.Error.ServiceUnknown"),
        "{text}"
    );
    assert!(
        line("logind").contains("org.freedesktop.DBus.Error.ServiceUnknown"),
        "{text}"
    );
    assert!(
        line("reported").contains("idle null s, session unknown (source: none)"),
        "{text}"
    );
}
