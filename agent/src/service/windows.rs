//! The Windows service: registration with the Service Control Manager and its stop requests.
//! Not compiled by CI (no Windows target on the build machines).

// The `define_windows_service!` expansion is the FFI entry point the SCM calls.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context;
use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::{define_windows_service, service_dispatcher};

use crate::settings::AgentSettings;

/// The service name `install.ps1` registers.
pub const SERVICE_NAME: &str = "GreenOpsAgent";

/// Settings loaded by `main`, picked up by the service thread the SCM starts.
static SETTINGS: OnceLock<AgentSettings> = OnceLock::new();

define_windows_service!(ffi_service_main, service_main);

/// Hands this process to the SCM; returns when the service has stopped.
pub async fn run(settings: AgentSettings) -> anyhow::Result<()> {
    let _ = SETTINGS.set(settings);
    tokio::task::spawn_blocking(|| service_dispatcher::start(SERVICE_NAME, ffi_service_main))
        .await?
        .context("connecting to the Service Control Manager (is this running as a service?)")
}

fn service_main(_arguments: Vec<OsString>) {
    if let Err(e) = serve() {
        tracing::error!(
            error = format!("{e:#}"),
            "the service stopped with an error"
        );
    }
}

fn status(state: ServiceState, accept: ServiceControlAccept, wait_hint: Duration) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: accept,
        exit_code: ServiceExitCode::Win32(0),
        checkpoint: 0,
        wait_hint,
        process_id: None,
    }
}

fn serve() -> anyhow::Result<()> {
    let settings = SETTINGS
        .get()
        .cloned()
        .context("settings were not loaded")?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stop_tx = Mutex::new(Some(stop_tx));
    let handle = service_control_handler::register(SERVICE_NAME, move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            if let Some(tx) = stop_tx.lock().ok().and_then(|mut t| t.take()) {
                let _ = tx.send(());
            }
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    })?;
    handle.set_service_status(status(
        ServiceState::Running,
        ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
        Duration::ZERO,
    ))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        crate::run::Agent::new(settings)?
            .run(async {
                let _ = stop_rx.await;
            })
            .await
    });
    handle.set_service_status(status(
        ServiceState::Stopped,
        ServiceControlAccept::empty(),
        Duration::ZERO,
    ))?;
    result
}
