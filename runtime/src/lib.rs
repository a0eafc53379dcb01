//! Run-time pieces shared by the GreenOps binaries (`greenops`, `greenops-agent`,
//! `greenops-bench`). `greenops-protocol` stays free of I/O and of these dependencies; what is
//! the same in every binary and needs the operating system or `secrecy` lives here.

pub mod secret;
mod signal;

pub use signal::shutdown_signal;
