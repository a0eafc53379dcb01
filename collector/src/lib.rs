//! The GreenOps collector as a library: [`App::build`] wires settings, store, ingest writer and
//! HTTP router; `main.rs` only parses the command line and calls in here.

pub mod accounting;
pub mod allocator;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod currency;
pub mod exposition;
pub mod fleet;
pub mod http;
pub mod ingest;
pub mod instance;
pub mod listing;
pub mod live;
pub mod operations;
pub mod operators;
pub mod retention;
pub mod secrets;
pub mod settings;
pub mod simulate;
pub mod store;
pub mod telemetry;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::exposition::ProcessMetrics;
use crate::http::AppState;
use crate::ingest::{CredentialCache, Ingest};
use crate::settings::{Settings, redact_url};
use crate::store::{Backend, PoolOptions, Store};

/// Source revision this binary was built from (`git rev-parse`, or `unknown`).
pub const REVISION: &str = env!("GREENOPS_REVISION");

/// How long shutdown waits for the ingest queue to drain.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);

/// A built collector: store migrated, port bound, writer running.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    /// Set when `tls.cert` and `tls.key` are configured: every connection is HTTPS.
    tls: Option<std::sync::Arc<tokio_rustls::rustls::ServerConfig>>,
    state: AppState,
    writer: JoinHandle<()>,
    revocations: JoinHandle<()>,
    settings_watch: JoinHandle<()>,
    retention: JoinHandle<()>,
}

/// Opens the store named by the settings (without migrating).
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let url = settings.database_url();
    let options = PoolOptions {
        max_connections: settings.database.max_connections,
        acquire_timeout: Duration::from_millis(settings.database.acquire_timeout_ms),
        sqlite_durability: settings.database.sqlite_synchronous,
    };
    store::open(&url, &options)
        .await
        .with_context(|| format!("opening the database {}", redact_url(&url)))
}

/// Opens the store named by the settings and applies pending migrations. A database that
/// cannot be reached is said once, with its URL (password redacted) and what to check.
pub async fn open_migrated_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let url = settings.database_url();
    let shown = redact_url(&url);
    let patience = Duration::from_millis(settings.database.acquire_timeout_ms.max(3000));
    if let Err(reason) = store::check_reachable(&url, patience).await {
        anyhow::bail!(
            "cannot connect to the database {shown}: {reason}. Check that PostgreSQL is running \
             and accepts connections at that address, that the user and password are right, and \
             that this is the intended database (--database-url, GREENOPS_DATABASE_URL, \
             DATABASE_URL or database.url in the configuration)"
        );
    }
    let store = open_store(settings).await?;
    if let Err(e) = store.migrate().await {
        store.close().await;
        anyhow::bail!("applying migrations to {shown}: {e}");
    }
    Ok(store)
}

/// Binds the collector's port, saying what to do when that is impossible.
async fn bind(listen: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen).await.map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                "the address is already in use (is another collector, or `make run`, running?)"
                    .to_string()
            }
            std::io::ErrorKind::PermissionDenied => {
                "permission denied (ports below 1024 need privileges)".to_string()
            }
            std::io::ErrorKind::AddrNotAvailable => {
                "no interface of this machine has that address".to_string()
            }
            _ => e.to_string(),
        };
        anyhow::anyhow!(
            "cannot listen on {listen}: {why}; choose another address with --listen ADDR \
             (or GREENOPS_LISTEN, or listen in the configuration)"
        )
    })
}

impl App {
    /// Binds the port (port 0 picks a free one: see [`App::port`]), connects to the store,
    /// applies migrations and starts the writer. The port comes first: a collector that cannot
    /// serve never touches the database.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let listener = bind(settings.listen).await?;
        let passwords = crate::auth::PasswordPool::new(
            settings.auth.password_workers,
            settings.auth.password_queue,
        );
        let store = open_migrated_store(&settings).await?;
        let sessions = crate::auth::SessionKeys::load(store.as_ref())
            .await
            .context("loading the session signing key")?;
        if settings.compat.seed_agents {
            http::compat::check_placement(store.as_ref(), &settings.compat).await?;
        }
        let metrics = Arc::new(ProcessMetrics::new());
        let writers = match (settings.ingest.writers, store.backend()) {
            (0, Backend::Postgres) => 4,
            (0, Backend::Sqlite) => 1,
            (n, _) => n,
        };
        let accounting = live::LiveAccounting::new(settings.accounting);
        accounting
            .refresh(store.as_ref())
            .await
            .context("loading the stored accounting settings")?;
        accounting
            .record_version(store.as_ref(), clock::now_ms())
            .await
            .context("storing the accounting settings in force")?;
        let settings_watch = accounting.clone().watch(
            store.clone(),
            Duration::from_secs(settings.ingest.revocation_poll_seconds),
        );
        let retention = retention::spawn(store.clone(), settings.retention.clone());
        let (ingest, writer) = Ingest::start(
            store.clone(),
            accounting.clone(),
            &settings.ingest,
            writers,
            metrics.clone(),
        );
        let tls = match (&settings.tls.cert, &settings.tls.key) {
            (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
            _ => None,
        };
        let credentials = Arc::new(CredentialCache::new(Duration::from_secs(
            settings.ingest.credential_cache_seconds,
        )));
        let revocations = credentials.watch_revocations(
            store.clone(),
            Duration::from_secs(settings.ingest.revocation_poll_seconds),
        );
        tracing::info!(
            backend = ?store.backend(),
            database = %redact_url(&settings.database_url()),
            "store ready"
        );
        let fleet = fleet::FleetView::new();
        Ok(Self {
            listener,
            tls,
            writer,
            revocations,
            settings_watch,
            retention,
            state: AppState {
                fleet: fleet.clone(),
                listing: listing::Listing::new(
                    fleet,
                    settings.admin.list_memory_min_machines,
                    Duration::from_millis(settings.admin.list_memory_max_age_ms),
                ),
                accounting,
                passwords,
                store,
                ingest,
                credentials,
                metrics,
                settings: Arc::new(settings),
                sessions,
                what_if: Arc::default(),
            },
        })
    }

    /// The store this app uses.
    pub fn store(&self) -> Arc<dyn Store> {
        self.state.store.clone()
    }

    /// The password pool of this collector.
    pub fn passwords(&self) -> &crate::auth::PasswordPool {
        &self.state.passwords
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests
    /// finish, flushes the ingest queue and closes the store.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let App {
            listener,
            tls,
            state,
            writer,
            revocations,
            settings_watch,
            retention,
        } = self;
        let store = state.store.clone();
        let limits = http::server::Limits {
            header_read_timeout: Duration::from_secs(
                state.settings.http.header_read_timeout_seconds,
            ),
            max_connections: state.settings.http.max_connections,
        };
        let router = http::router(state);
        tracing::info!(
            address = %listener.local_addr()?,
            https = tls.is_some(),
            "listening"
        );
        http::server::serve(listener, tls, router, limits, shutdown).await;
        // Every handle to the queue is gone with the router: the writer drains and stops.
        if tokio::time::timeout(DRAIN_TIMEOUT, writer).await.is_err() {
            tracing::warn!("the ingest queue did not drain in time");
        }
        revocations.abort();
        settings_watch.abort();
        retention.abort();
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM ([`greenops_runtime::shutdown_signal`]) and says so
/// in the log.
pub async fn shutdown_signal() {
    greenops_runtime::shutdown_signal().await;
    tracing::info!("shutdown requested");
}
