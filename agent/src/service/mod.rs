//! Running under the platform's service manager. On Windows `greenops-agent service` is the
//! command the service is registered with (see `packaging/windows/install.ps1`): it talks to
//! the Service Control Manager and turns Stop / Shutdown into the same graceful stop as
//! SIGTERM elsewhere (one last heartbeat, spool flushed, exit within 5 s). systemd and launchd
//! run `greenops-agent run` directly and need nothing here.

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::run;

/// Elsewhere the service managers run `greenops-agent run`.
#[cfg(not(windows))]
pub async fn run(_settings: crate::settings::AgentSettings) -> anyhow::Result<()> {
    anyhow::bail!(
        "`greenops-agent service` is the Windows service entry point; use `greenops-agent run` \
         (systemd and launchd units ship in packaging/)"
    )
}
