//! The process-wide stop request: SIGINT (Ctrl-C) or SIGTERM on Unix, Ctrl-C elsewhere.
//!
//! The agent's Windows service does not use this: the Service Control Manager's Stop and
//! Shutdown arrive through its control handler (`agent/src/service/windows.rs`), which ends the
//! run loop the same way.

/// Completes when the process is asked to stop: SIGINT (Ctrl-C) or SIGTERM on Unix, Ctrl-C
/// elsewhere. A signal that cannot be listened for never completes (the other one still can).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::time::Duration;

    /// SIGTERM sent to this very process completes the future (tokio's handler replaces the
    /// default action, so the test process is not killed). The only test in this binary.
    #[tokio::test]
    async fn sigterm_completes_it() {
        let stop = super::shutdown_signal();
        tokio::pin!(stop);
        // One poll installs both handlers, before the signal is sent.
        tokio::select! {
            biased;
            () = &mut stop => panic!("completed before any signal"),
            () = std::future::ready(()) => {}
        }
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(5), stop)
            .await
            .expect("the signal was seen");
    }
}
