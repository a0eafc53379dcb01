//! The typed settings tree: defaults → `greenops.toml` → `GREENOPS_*` environment → flags
//! (DESIGN §7). Units are part of every name; secrets are [`SecretString`]s (redacted in
//! `Debug`, zeroed when dropped) and the database URL's password is redacted by hand.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use greenops_runtime::secret::serialize_exposed;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::accounting::rates::SettingsVersion;
use crate::store::SqliteDurability;

/// Every setting of the collector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address of the one HTTP port (agent API, admin API and page, `/metrics`).
    pub listen: SocketAddr,
    /// Where the embedded database and generated secrets live.
    pub data_dir: PathBuf,
    pub database: DatabaseSettings,
    pub accounting: AccountingSettings,
    pub enrollment: EnrollmentSettings,
    pub compat: CompatSettings,
    pub ingest: IngestSettings,
    pub metrics: MetricsSettings,
    pub telemetry: TelemetrySettings,
    pub auth: AuthSettings,
    pub admin: AdminSettings,
    pub retention: RetentionSettings,
    pub tls: TlsSettings,
    pub http: HttpSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Time a connection has to send a complete request head; idle keep-alive connections are
    /// closed after it too.
    pub header_read_timeout_seconds: u64,
    /// Most connections served at once.
    pub max_connections: usize,
    /// Longest a request may take, its body included, before it is answered 503.
    pub request_timeout_seconds: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_read_timeout_seconds: 10,
            max_connections: 4096,
            request_timeout_seconds: 30,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM certificate chain (leaf first). With `key`, the port serves HTTPS only.
    pub cert: Option<PathBuf>,
    /// PEM private key of the leaf certificate.
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Raw heartbeats older than this are summed into hourly rollups.
    pub raw_days: u64,
    /// Hourly rollups older than this are summed into daily rollups (kept forever).
    pub hourly_days: u64,
    /// How often each collector runs the job (the first run is a minute after start).
    pub interval_seconds: u64,
    /// Rows moved per transaction.
    pub batch_rows: usize,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            raw_days: 30,
            hourly_days: 400,
            interval_seconds: 3600,
            batch_rows: 5000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// From this many live machines on, the machines list is answered from an in-memory copy
    /// of the fleet instead of SQL (0: always).
    pub list_memory_min_machines: usize,
    /// Oldest that in-memory copy may be before a background refresh starts.
    pub list_memory_max_age_ms: u64,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            list_memory_min_machines: 5000,
            list_memory_max_age_ms: 2000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Failed logins allowed per username and per client IP within the window, then 429.
    pub login_max_failures: i64,
    pub login_window_seconds: u64,
    /// Proxies whose `X-Forwarded-For` is believed (the client IP for rate limiting).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Threads that hash and verify passwords (Argon2, 19 MiB each); 0 = half the cores, at
    /// least one.
    pub password_workers: usize,
    /// Sign-ins that may wait for a password thread; more get 503 with `Retry-After` at once.
    /// 0 = eight per worker.
    pub password_queue: usize,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            login_max_failures: 5,
            login_window_seconds: 900,
            trusted_proxies: Vec::new(),
            password_workers: 0,
            password_queue: 0,
        }
    }
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `postgres://…` or `sqlite://…`; empty means `sqlite://<data_dir>/greenops.db`.
    pub url: String,
    pub max_connections: u32,
    /// How long a request waits for a connection before answering 503.
    pub acquire_timeout_ms: u64,
    /// SQLite only: `normal` (survives a collector crash; an OS crash or power loss may lose
    /// the last commits) or `full` (fsync on every commit).
    pub sqlite_synchronous: SqliteDurability,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountingSettings {
    /// Input idle time beyond which time counts as waste.
    pub idle_threshold_seconds: u64,
    /// Longest interval between two heartbeats that still counts as observed.
    pub max_gap_seconds: u64,
    /// How far ahead of the server clock a heartbeat's `sent_at` may be.
    pub max_clock_skew_seconds: u64,
    /// A machine silent for longer than this is `offline`.
    pub offline_after_seconds: u64,
    /// Interval told to agents at enrolment.
    pub heartbeat_interval_seconds: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrollmentSettings {
    /// Let agents enrol without an enrollment token (into the default site). Off by default.
    pub open: bool,
}

/// Agents of the original Python GreenOps (`/api/agents/*`), for a migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompatSettings {
    /// Answer `/api/agents/register`, `/heartbeat` and `/commands` in the original wire
    /// format. Off by default: registration needs no token, like the original's.
    pub seed_agents: bool,
    /// Site of machines that register that way (must exist when the collector starts).
    pub site: String,
    /// Department of machines that register that way.
    pub department: String,
    /// Registrations allowed per client IP within the window, then 429.
    pub register_max_per_ip: i64,
    pub register_window_seconds: u64,
}

impl Default for CompatSettings {
    fn default() -> Self {
        Self {
            seed_agents: false,
            site: "default".into(),
            department: String::new(),
            register_max_per_ip: 30,
            register_window_seconds: 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSettings {
    /// Most heartbeats committed in one transaction.
    pub max_batch_heartbeats: usize,
    /// How long a writer waits to fill a batch once it has work.
    pub max_batch_wait_ms: u64,
    /// Concurrent group-commit writers (machines are sharded across them). 0 = automatic:
    /// 4 on PostgreSQL, 1 on SQLite (which has a single write lock anyway).
    pub writers: usize,
    /// Heartbeat requests that may wait for the writer before new ones get 503.
    pub queue_capacity: usize,
    /// Longest time a request waits for its commit before answering 503.
    pub commit_timeout_ms: u64,
    /// How long a verified agent credential is trusted without asking the store again.
    pub credential_cache_seconds: u64,
    /// How often the store is polled for revoked credentials (revocation takes effect within
    /// about this time, whatever the cache lifetime).
    pub revocation_poll_seconds: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Per-machine series: `auto` (up to `per_machine_max` live machines), `true` or `false`.
    /// The group series (`greenops_group_…`) and machine counts are always exposed.
    pub per_machine: PerMachine,
    /// The largest fleet `auto` exposes per machine.
    pub per_machine_max: usize,
    /// When set, `/metrics` requires `Authorization: Bearer <token>`.
    #[serde(serialize_with = "serialize_exposed")]
    pub bearer_token: Option<SecretString>,
    /// When both are set, `/metrics` requires HTTP basic auth with them (either scheme is
    /// accepted when a bearer token is configured too).
    pub basic_auth_username: Option<String>,
    #[serde(serialize_with = "serialize_exposed")]
    pub basic_auth_password: Option<SecretString>,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            per_machine: PerMachine::Auto,
            per_machine_max: 5000,
            bearer_token: None,
            basic_auth_username: None,
            basic_auth_password: None,
        }
    }
}

impl MetricsSettings {
    /// Whether a fleet of `live` machines gets per-machine series.
    pub fn per_machine_for(&self, live: usize) -> bool {
        match self.per_machine {
            PerMachine::Auto => live <= self.per_machine_max,
            PerMachine::Always => true,
            PerMachine::Never => false,
        }
    }
}

/// `metrics.per_machine`: `"auto"`, `true` or `false` (also as the strings `"true"`/`"false"`,
/// as environment variables give them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerMachine {
    Auto,
    Always,
    Never,
}

impl Serialize for PerMachine {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PerMachine::Auto => s.serialize_str("auto"),
            PerMachine::Always => s.serialize_bool(true),
            PerMachine::Never => s.serialize_bool(false),
        }
    }
}

impl<'de> Deserialize<'de> for PerMachine {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Flag(true) => Ok(PerMachine::Always),
            Raw::Flag(false) => Ok(PerMachine::Never),
            Raw::Word(w) => match w.to_ascii_lowercase().as_str() {
                "auto" => Ok(PerMachine::Auto),
                "true" => Ok(PerMachine::Always),
                "false" => Ok(PerMachine::Never),
                _ => Err(serde::de::Error::custom(format!(
                    "per_machine must be \"auto\", true or false, not {w:?}"
                ))),
            },
        }
    }
}

/// By value (secrets included): settings are compared in tests.
impl PartialEq for MetricsSettings {
    fn eq(&self, other: &Self) -> bool {
        use greenops_runtime::secret::same;
        self.per_machine == other.per_machine
            && self.per_machine_max == other.per_machine_max
            && same(&self.bearer_token, &other.bearer_token)
            && self.basic_auth_username == other.basic_auth_username
            && same(&self.basic_auth_password, &other.basic_auth_password)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// `human` or `json`.
    pub log_format: LogFormat,
    /// A `tracing` filter such as `info` or `greenops_collector=debug,info`.
    pub log_level: String,
    /// OTLP/HTTP endpoint for trace export (e.g. `http://127.0.0.1:4318`); off when empty.
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9850)),
            data_dir: PathBuf::from("./data"),
            database: DatabaseSettings::default(),
            accounting: AccountingSettings::default(),
            enrollment: EnrollmentSettings::default(),
            compat: CompatSettings::default(),
            ingest: IngestSettings::default(),
            metrics: MetricsSettings::default(),
            telemetry: TelemetrySettings::default(),
            auth: AuthSettings::default(),
            admin: AdminSettings::default(),
            retention: RetentionSettings::default(),
            tls: TlsSettings::default(),
            http: HttpSettings::default(),
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            max_connections: 16,
            acquire_timeout_ms: 1500,
            sqlite_synchronous: SqliteDurability::Normal,
        }
    }
}

impl Default for AccountingSettings {
    fn default() -> Self {
        Self {
            idle_threshold_seconds: 300,
            max_gap_seconds: 180,
            max_clock_skew_seconds: 300,
            offline_after_seconds: 180,
            heartbeat_interval_seconds: 60,
        }
    }
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            max_batch_heartbeats: 2000,
            max_batch_wait_ms: 2,
            writers: 0,
            queue_capacity: 50_000,
            commit_timeout_ms: 5000,
            credential_cache_seconds: 600,
            revocation_poll_seconds: 2,
        }
    }
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Human,
            log_level: "info".into(),
            otlp_endpoint: None,
            service_name: "greenops".into(),
        }
    }
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .field("sqlite_synchronous", &self.sqlite_synchronous)
            .finish()
    }
}

/// A database URL with any password replaced, safe to log.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl AccountingSettings {
    /// Rules across fields: the offending field (without section) and why.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if self.max_gap_seconds == 0 {
            return Err(("max_gap_seconds", "must be at least 1"));
        }
        if self.heartbeat_interval_seconds == 0
            || self.heartbeat_interval_seconds > self.max_gap_seconds
        {
            return Err((
                "heartbeat_interval_seconds",
                "must be at least 1 and at most max_gap_seconds, or no interval would ever be observed",
            ));
        }
        if self.offline_after_seconds == 0 {
            return Err(("offline_after_seconds", "must be at least 1"));
        }
        const YEAR: u64 = 366 * 24 * 3600;
        for (field, value) in [
            ("idle_threshold_seconds", self.idle_threshold_seconds),
            ("max_gap_seconds", self.max_gap_seconds),
            ("max_clock_skew_seconds", self.max_clock_skew_seconds),
            ("offline_after_seconds", self.offline_after_seconds),
            (
                "heartbeat_interval_seconds",
                self.heartbeat_interval_seconds,
            ),
        ] {
            if value > YEAR {
                return Err((field, "must be at most one year (31622400 seconds)"));
            }
        }
        Ok(())
    }

    /// The threshold and maximum gap as an accounting version from `effective_from_ms` on.
    pub fn version(&self, effective_from_ms: i64) -> SettingsVersion {
        SettingsVersion {
            effective_from_ms,
            idle_threshold_ms: secs_to_ms(self.idle_threshold_seconds),
            max_gap_ms: secs_to_ms(self.max_gap_seconds),
        }
    }
}

/// Seconds (from configuration) to milliseconds, saturating.
pub fn secs_to_ms(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// Values given on the command line, applied last.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub database_url: Option<String>,
    /// Replaces the built-in default of `listen` (the file, the environment and `listen`
    /// still win): `serve --demo` stays on 127.0.0.1 unless told otherwise.
    pub default_listen: Option<SocketAddr>,
}

impl Settings {
    /// Loads defaults, then the config file (if any), then the environment, then `overrides`.
    /// `config` is the explicit file; without it `greenops.toml` in the working directory is
    /// read when it exists.
    pub fn load(config: Option<&Path>, overrides: &Overrides) -> Result<Self, SettingsError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(listen) = overrides.default_listen {
            figment = figment.merge(Serialized::default("listen", listen));
        }
        match config {
            Some(path) => {
                if !path.exists() {
                    return Err(SettingsError::MissingFile(path.to_path_buf()));
                }
                figment = figment.merge(Toml::file(path));
            }
            None => figment = figment.merge(Toml::file("greenops.toml")),
        }
        figment = figment.merge(environment()?);
        if let Some(listen) = overrides.listen {
            figment = figment.merge(Serialized::default("listen", listen));
        }
        if let Some(url) = &overrides.database_url {
            figment = figment.merge(Serialized::default("database.url", url));
        }
        let settings: Settings = figment
            .extract()
            .map_err(|e| SettingsError::Invalid(Box::new(e)))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Parses a TOML document on top of the defaults (no environment): used by
    /// `check-config` and tests.
    pub fn from_toml(text: &str) -> Result<Self, SettingsError> {
        let settings: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| SettingsError::Invalid(Box::new(e)))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Rules that types alone cannot express.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let bad = |key: &str, why: &str| Err(SettingsError::Value(format!("{key}: {why}")));
        if let Err((field, why)) = self.accounting.check() {
            return bad(&format!("accounting.{field}"), why);
        }
        if self.auth.login_max_failures < 1 || self.auth.login_window_seconds == 0 {
            return bad(
                "auth",
                "login_max_failures and login_window_seconds must be at least 1",
            );
        }
        let c = &self.compat;
        if c.register_max_per_ip < 1 || c.register_window_seconds == 0 {
            return bad(
                "compat",
                "register_max_per_ip and register_window_seconds must be at least 1",
            );
        }
        if let Err(e) = greenops_protocol::check_text("compat.site", &c.site, 1, 64) {
            return bad(&e.field, &e.message);
        }
        if let Err(e) = greenops_protocol::check_text("compat.department", &c.department, 0, 100) {
            return bad(&e.field, &e.message);
        }
        let r = &self.retention;
        if r.raw_days == 0
            || r.hourly_days < r.raw_days
            || r.raw_days > 36_600
            || r.hourly_days > 36_600
        {
            return bad(
                "retention",
                "raw_days must be from 1 to 36600 and hourly_days at least raw_days (at most 36600)",
            );
        }
        if r.interval_seconds == 0 || r.batch_rows == 0 || r.batch_rows > 100_000 {
            return bad(
                "retention",
                "interval_seconds must be at least 1 and batch_rows from 1 to 100000",
            );
        }
        if self.ingest.revocation_poll_seconds == 0 {
            return bad("ingest.revocation_poll_seconds", "must be at least 1");
        }
        if self.ingest.max_batch_heartbeats == 0 || self.ingest.queue_capacity == 0 {
            return bad(
                "ingest",
                "max_batch_heartbeats and queue_capacity must be at least 1",
            );
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return bad("tls.cert", "tls.cert and tls.key go together");
        }
        let m = &self.metrics;
        if m.basic_auth_username.is_some() != m.basic_auth_password.is_some()
            || m.basic_auth_username.as_deref() == Some("")
            || m.basic_auth_password
                .as_ref()
                .is_some_and(|p| p.expose_secret().is_empty())
        {
            return bad(
                "metrics.basic_auth_username",
                "basic_auth_username and basic_auth_password go together and must not be empty",
            );
        }
        if self.database.max_connections == 0 {
            return bad("database.max_connections", "must be at least 1");
        }
        if !(1..=3600).contains(&self.http.header_read_timeout_seconds) {
            return bad("http.header_read_timeout_seconds", "must be from 1 to 3600");
        }
        if !(1..=3600).contains(&self.http.request_timeout_seconds) {
            return bad("http.request_timeout_seconds", "must be from 1 to 3600");
        }
        if !(1..=1_000_000).contains(&self.http.max_connections) {
            return bad("http.max_connections", "must be from 1 to 1000000");
        }
        if self.auth.password_workers > 64 || self.auth.password_queue > 10_000 {
            return bad(
                "auth",
                "password_workers must be at most 64 and password_queue at most 10000",
            );
        }
        if self
            .metrics
            .bearer_token
            .as_ref()
            .is_some_and(|t| t.expose_secret().is_empty())
        {
            return bad(
                "metrics.bearer_token",
                "must not be empty (leave it out to turn it off)",
            );
        }
        if self
            .telemetry
            .otlp_endpoint
            .as_deref()
            .is_some_and(|e| !(e.starts_with("http://") || e.starts_with("https://")))
        {
            return bad(
                "telemetry.otlp_endpoint",
                "must be an http:// or https:// URL",
            );
        }
        Ok(())
    }

    /// The database URL in force: the configured one, or the embedded default.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!("sqlite://{}/greenops.db", self.data_dir.display())
        } else {
            self.database.url.clone()
        }
    }
}

/// `GREENOPS_*` variables: the documented short names plus `GREENOPS_SECTION__KEY` for any
/// nested setting. `DATABASE_URL` is honoured when `GREENOPS_DATABASE_URL` is not set. Any of
/// them may instead be given as `<NAME>_FILE`, the path of a file holding the value (container
/// and systemd secrets): see [`from_file_variables`].
fn environment() -> Result<Figment, SettingsError> {
    let mut figment = Figment::new();
    if std::env::var_os("GREENOPS_DATABASE_URL").is_none()
        && std::env::var_os("GREENOPS_DATABASE_URL_FILE").is_none()
        && let Ok(url) = std::env::var("DATABASE_URL")
    {
        figment = figment.merge(Serialized::default("database.url", url));
    }
    figment = figment.merge(Env::prefixed("GREENOPS_").filter_map(|key| {
        let key = key.as_str().to_ascii_lowercase();
        // `…_FILE` variables are read by `from_file_variables`.
        if key.ends_with("_file") {
            return None;
        }
        setting_of_variable(&key).map(Into::into)
    }));
    for (key, value) in from_file_variables(std::env::vars_os())? {
        figment = figment.merge(Serialized::default(&key, value));
    }
    Ok(figment)
}

/// The setting a `GREENOPS_` variable (prefix removed, lower case) sets, if any.
fn setting_of_variable(key: &str) -> Option<String> {
    match key {
        "database_url" => Some("database.url".into()),
        "listen" => Some("listen".into()),
        "data_dir" => Some("data_dir".into()),
        _ if key.contains("__") => Some(key.replace("__", ".")),
        // Other GREENOPS_* variables (admin password, config path, agent settings) are not
        // settings of this tree.
        _ => None,
    }
}

/// Settings given as `GREENOPS_<NAME>_FILE=<path>`: the file's content, surrounding
/// whitespace trimmed as Prometheus trims its `credentials_file` (so one secret file serves
/// both), stands for `GREENOPS_<NAME>` and is parsed the same way. Setting both the variable
/// and its `_FILE` twin is refused, as is a file that cannot be read. Variables that are not
/// settings (`GREENOPS_ENROLLMENT_TOKEN_FILE` of the agent…) are ignored.
fn from_file_variables(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<Vec<(String, figment::value::Value)>, SettingsError> {
    let vars: Vec<(String, std::ffi::OsString)> = vars
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v)))
        .collect();
    let mut out = Vec::new();
    for (name, path) in &vars {
        let Some(rest) = name.strip_prefix("GREENOPS_") else {
            continue;
        };
        let Some(base) = rest
            .to_ascii_lowercase()
            .strip_suffix("_file")
            .map(str::to_string)
        else {
            continue;
        };
        let Some(key) = setting_of_variable(&base) else {
            continue;
        };
        let twin = &name[..name.len() - "_FILE".len()];
        if vars.iter().any(|(k, _)| k == twin) {
            return Err(SettingsError::Value(format!(
                "{twin} and {name} are both set: give the value one way"
            )));
        }
        let value = read_secret_file(name, Path::new(path))?;
        out.push((key, value.parse().expect("infallible")));
    }
    Ok(out)
}

/// The trimmed content of the file a `…_FILE` variable names.
fn read_secret_file(variable: &str, path: &Path) -> Result<String, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        SettingsError::Value(format!("{variable}: cannot read {}: {e}", path.display()))
    })?;
    let value = text.trim();
    if value.is_empty() {
        return Err(SettingsError::Value(format!(
            "{variable}: {} is empty",
            path.display()
        )));
    }
    Ok(value.to_string())
}

/// A secret that is not a setting (`GREENOPS_ADMIN_PASSWORD`): the variable, or the trimmed
/// content of the file its `_FILE` twin names; both at once is an error.
pub fn secret_variable(name: &str) -> Result<Option<String>, SettingsError> {
    let file_name = format!("{name}_FILE");
    match (std::env::var(name).ok(), std::env::var_os(&file_name)) {
        (Some(_), Some(_)) => Err(SettingsError::Value(format!(
            "{name} and {file_name} are both set: give the value one way"
        ))),
        (Some(value), None) => Ok(Some(value)),
        (None, Some(path)) => read_secret_file(&file_name, Path::new(&path)).map(Some),
        (None, None) => Ok(None),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {}", explain(.0))]
    Invalid(Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Value(String),
}

/// Figment's errors, one line each; an unknown key is named with its section and where it
/// came from, with the nearest known key suggested (`idle_treshold_seconds` → did you mean
/// `idle_threshold_seconds`?).
fn explain(error: &figment::Error) -> String {
    let lines: Vec<String> = error
        .clone()
        .into_iter()
        .map(|e| match &e.kind {
            figment::error::Kind::UnknownField(field, expected) => {
                let mut key = e.path.clone();
                if key.last() != Some(field) {
                    key.push(field.clone());
                }
                let origin = e
                    .metadata
                    .as_ref()
                    .map(|md| match &md.source {
                        Some(figment::Source::File(path)) => format!(" in {}", path.display()),
                        // A string in the code (tests, `check-config`, which names the file).
                        Some(_) => String::new(),
                        None if md.name.contains("environment") => format!(
                            " (environment variable GREENOPS_{})",
                            key.join("__").to_ascii_uppercase()
                        ),
                        None => String::new(),
                    })
                    .unwrap_or_default();
                let hint = match nearest(field, expected) {
                    Some(known) => format!("; did you mean `{known}`?"),
                    None if expected.is_empty() => String::new(),
                    None => format!(
                        "; the known keys here are {}",
                        expected
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                format!("unknown setting `{}`{origin}{hint}", key.join("."))
            }
            _ => e.to_string(),
        })
        .collect();
    lines.join("\n")
}

/// The known key closest to `typed`, when it is close enough to be a typo: at most a third of
/// its letters differ (insertions, deletions, substitutions, swaps of neighbours).
fn nearest<'a>(typed: &str, known: &[&'a str]) -> Option<&'a str> {
    let typed = typed.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&typed, k), *k))
        .filter(|(d, k)| *d <= (k.len().max(typed.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Optimal string alignment distance between two ASCII keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The commented example printed by `greenops default-config`; parses back to the defaults.
pub fn default_config_toml() -> String {
    let d = Settings::default();
    let a = d.accounting;
    let i = d.ingest;
    format!(
        r#"# GreenOps collector configuration (greenops.toml).
# Precedence: built-in defaults < this file < GREENOPS_* environment < command-line flags.
# Any setting can also be given as GREENOPS_<SECTION>__<KEY>, e.g. GREENOPS_ACCOUNTING__MAX_GAP_SECONDS,
# or read from a file with <VARIABLE>_FILE, e.g. GREENOPS_METRICS__BEARER_TOKEN_FILE=/run/secrets/token.

# One port for the agent API, the admin API and page, and /metrics (GREENOPS_LISTEN).
listen = "{listen}"
# Where the embedded database lives (GREENOPS_DATA_DIR).
data_dir = "{data_dir}"

[database]
# postgres://user:password@host:5432/greenops for production, or sqlite://path/greenops.db.
# Empty: sqlite://<data_dir>/greenops.db. (GREENOPS_DATABASE_URL, falls back to DATABASE_URL)
url = ""
max_connections = {max_conn}
# A request waits at most this long for a database connection, then gets 503.
acquire_timeout_ms = {acquire}
# SQLite only. "normal": a commit survives a collector crash, but an OS crash or power loss may
# lose the last few commits. "full": fsync every commit (slower, fully durable).
sqlite_synchronous = "normal"

[accounting]
# Input idle time beyond which a powered-on machine counts as wasting energy.
idle_threshold_seconds = {threshold}
# Longest interval between two heartbeats that still counts as observed time.
max_gap_seconds = {gap}
# Heartbeats dated further ahead of the server clock are rejected (422).
max_clock_skew_seconds = {skew}
# A machine not heard from for this long is shown as offline.
offline_after_seconds = {offline}
# Heartbeat interval told to agents when they enrol.
heartbeat_interval_seconds = {interval}

[enrollment]
# Let agents enrol without an enrollment token (into the default site).
open = false

[compat]
# Answer agents of the original Python GreenOps (POST /api/agents/register and /heartbeat,
# GET /api/agents/commands) during a migration. Their registration needs no token.
seed_agents = false
# Where machines that register that way are placed (the site must exist).
site = "default"
department = ""
# Registrations per client IP within the window; more get 429.
register_max_per_ip = {reg_max}
register_window_seconds = {reg_window}

[ingest]
# Group commit: at most this many heartbeats per transaction...
max_batch_heartbeats = {batch}
# ...waiting at most this long to fill a batch.
max_batch_wait_ms = {wait}
# Concurrent writers, machines sharded across them. 0 = automatic (PostgreSQL 4, SQLite 1).
writers = 0
# Requests waiting for the writer before new ones are answered 503.
queue_capacity = {queue}
# A request waits at most this long for its commit, then gets 503 (the agent retries).
commit_timeout_ms = {commit}
# A verified agent credential is trusted this long before asking the database again...
credential_cache_seconds = {cache}
# ...but revoked credentials are looked up this often and stop working within about this time.
revocation_poll_seconds = {poll}

[metrics]
# Per-machine series: "auto" (only while the fleet has at most per_machine_max live machines),
# true or false. Series per site and department (greenops_group_*) are always exposed.
per_machine = "auto"
per_machine_max = 5000
# Require "Authorization: Bearer <token>" on /metrics...
# bearer_token = "change-me"
# ...and/or HTTP basic auth (Prometheus: basic_auth in the scrape config).
# basic_auth_username = "prometheus"
# basic_auth_password = "change-me"

[telemetry]
# "human" or "json".
log_format = "human"
log_level = "info"
# Export traces over OTLP/HTTP, e.g. "http://127.0.0.1:4318". Off when absent.
# otlp_endpoint = "http://127.0.0.1:4318"
service_name = "greenops"

[auth]
# Failed logins allowed per username and per client IP within the window; then 429.
login_max_failures = 5
login_window_seconds = 900
# Reverse proxies whose X-Forwarded-For header is trusted, e.g. ["10.0.0.5"].
trusted_proxies = []
# Threads that verify passwords (Argon2 needs 19 MiB each) and sign-ins that may wait for one;
# beyond that a sign-in gets 503 with Retry-After at once. 0 = automatic (half the cores; eight
# waiting per thread).
password_workers = 0
password_queue = 0

[http]
# A connection must send a complete request head within this time, and an idle keep-alive
# connection is closed after it.
header_read_timeout_seconds = {header_timeout}
# Open connections at most; beyond it new connections wait in the kernel's accept queue.
max_connections = {max_connections}
# A request (a slowly sent body included) that takes longer is answered 503 with Retry-After.
request_timeout_seconds = {request_timeout}

[admin]
# From this many live machines on, the machines list is served from an in-memory copy of the
# fleet (refreshed in the background when older than list_memory_max_age_ms).
list_memory_min_machines = {list_min}
list_memory_max_age_ms = {list_age}

[tls]
# Serve HTTPS on the port (PEM files; the chain leaf first). Otherwise run behind a
# TLS-terminating proxy and list it in auth.trusted_proxies.
# cert = "/etc/greenops/tls/cert.pem"
# key = "/etc/greenops/tls/key.pem"

[retention]
# Raw heartbeats are summed into hourly rollups after raw_days, hourly rollups into daily ones
# after hourly_days (kept forever). Totals never change; old data gets coarser.
raw_days = {raw_days}
hourly_days = {hourly_days}
interval_seconds = {ret_interval}
batch_rows = {ret_batch}
"#,
        reg_max = d.compat.register_max_per_ip,
        reg_window = d.compat.register_window_seconds,
        listen = d.listen,
        data_dir = d.data_dir.display(),
        max_conn = d.database.max_connections,
        acquire = d.database.acquire_timeout_ms,
        threshold = a.idle_threshold_seconds,
        gap = a.max_gap_seconds,
        skew = a.max_clock_skew_seconds,
        offline = a.offline_after_seconds,
        interval = a.heartbeat_interval_seconds,
        batch = i.max_batch_heartbeats,
        wait = i.max_batch_wait_ms,
        queue = i.queue_capacity,
        commit = i.commit_timeout_ms,
        cache = i.credential_cache_seconds,
        poll = i.revocation_poll_seconds,
        header_timeout = d.http.header_read_timeout_seconds,
        max_connections = d.http.max_connections,
        request_timeout = d.http.request_timeout_seconds,
        list_min = d.admin.list_memory_min_machines,
        list_age = d.admin.list_memory_max_age_ms,
        raw_days = d.retention.raw_days,
        hourly_days = d.retention.hourly_days,
        ret_interval = d.retention.interval_seconds,
        ret_batch = d.retention.batch_rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_parses_back_to_the_defaults() {
        let parsed = Settings::from_toml(&default_config_toml()).unwrap();
        assert_eq!(parsed, Settings::default());
    }

    /// The key names of the settings table at `section` (`""`: the top level), as the
    /// derived `Deserialize` knows them — `Option`s that serialize to nothing included: an
    /// unknown key makes it list every field in its error ("expected one of `a`, `b`…").
    fn keys_of(section: &str) -> Vec<String> {
        const PROBE: &str = "__not_a_setting__";
        let header = if section.is_empty() {
            String::new()
        } else {
            format!("[{section}]\n")
        };
        let err = toml::from_str::<Settings>(&format!("{header}{PROBE} = 0\n"))
            .expect_err("the probe key is unknown")
            .to_string();
        let listed = err
            .split_once(&format!("unknown field `{PROBE}`"))
            .unwrap_or_else(|| panic!("no field list in: {err}"))
            .1;
        listed
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    /// Every `(section, key)` the types know; a key is a section when the defaults serialize
    /// it as a table.
    fn every_key() -> Vec<Key> {
        let defaults = toml::Value::try_from(Settings::default()).unwrap();
        let mut keys = Vec::new();
        for key in keys_of("") {
            match defaults.get(&key) {
                Some(toml::Value::Table(_)) => {
                    let inner = keys_of(&key);
                    assert!(!inner.is_empty(), "[{key}] lists no fields");
                    keys.extend(inner.into_iter().map(|k| (key.clone(), k)));
                }
                _ => keys.push((String::new(), key)),
            }
        }
        keys
    }

    /// A setting's place: its `[section]` (`""`: the top level) and its key.
    type Key = (String, String);

    /// The template's keys by section: `key = …` lines, and `# key = …` lines (a setting
    /// documented but left at its default, which is often "unset").
    fn template_keys(template: &str) -> (Vec<Key>, Vec<Key>) {
        let is_key = |k: &str| {
            !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        let (mut set, mut commented) = (Vec::new(), Vec::new());
        let mut section = String::new();
        for line in template.lines() {
            let line = line.trim();
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.to_string();
                continue;
            }
            let (target, text) = match line.strip_prefix('#') {
                Some(rest) => (&mut commented, rest.trim()),
                None => (&mut set, line),
            };
            if let Some((key, _)) = text.split_once(" = ")
                && is_key(key)
            {
                target.push((section.clone(), key.to_string()));
            }
        }
        (set, commented)
    }

    #[test]
    fn the_default_config_documents_every_setting_and_no_other() {
        let template = default_config_toml();
        let known = every_key();
        assert!(known.contains(&(String::new(), "listen".into())));
        assert!(known.contains(&("metrics".into(), "bearer_token".into())));
        assert!(known.contains(&("tls".into(), "cert".into())));
        let (set, commented) = template_keys(&template);
        let name = |(section, key): &Key| {
            if section.is_empty() {
                key.clone()
            } else {
                format!("{section}.{key}")
            }
        };
        let undocumented: Vec<String> = known
            .iter()
            .filter(|k| !set.contains(k) && !commented.contains(k))
            .map(name)
            .collect();
        assert!(
            undocumented.is_empty(),
            "settings missing from default_config_toml() (add `key = default` or `# key = example` \
             in their [section]): {undocumented:?}"
        );
        let unknown: Vec<String> = set
            .iter()
            .chain(&commented)
            .filter(|k| !known.contains(k))
            .map(name)
            .collect();
        assert!(
            unknown.is_empty(),
            "default_config_toml() names keys the settings do not have: {unknown:?}"
        );
        let twice: Vec<String> = known
            .iter()
            .filter(|k| set.iter().chain(&commented).filter(|t| t == k).count() > 1)
            .map(name)
            .collect();
        assert!(twice.is_empty(), "documented more than once: {twice:?}");
        // The commented examples are real values: with every one of them switched on the
        // template still parses and validates.
        let uncommented: String = template
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest
                        .split_once(" = ")
                        .is_some_and(|(k, _)| commented.iter().any(|(_, c)| c == k)) =>
                {
                    rest
                }
                _ => line,
            })
            .flat_map(|line| [line, "\n"])
            .collect();
        let all_set = Settings::from_toml(&uncommented).unwrap();
        assert!(all_set.metrics.bearer_token.is_some() && all_set.tls.key.is_some());
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name_and_the_nearest_key() {
        let err = Settings::from_toml("[accounting]\nidle_treshold_seconds = 5\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration: unknown setting `accounting.idle_treshold_seconds`; \
             did you mean `idle_threshold_seconds`?"
        );
        // Nothing close: the keys of the section are listed instead.
        let err = Settings::from_toml("[tls]\nfingerprint = \"x\"\n").unwrap_err();
        assert!(
            err.to_string().contains(
                "unknown setting `tls.fingerprint`; the known keys here are `cert`, `key`"
            ),
            "{err}"
        );
        assert_eq!(edit_distance("max_gap_seconds", "max_gap_secnods"), 1);
        assert_eq!(
            nearest("writer", &["writers", "queue_capacity"]),
            Some("writers")
        );
        assert_eq!(nearest("colour", &["writers", "queue_capacity"]), None);
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API fixes the error type
    fn a_misspelled_environment_key_is_named_too() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("GREENOPS_ACCOUNTING__IDLE_TRESHOLD_SECONDS", "60");
            let err = Settings::load(None, &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(
                    "unknown setting `accounting.idle_treshold_seconds` (environment variable \
                     GREENOPS_ACCOUNTING__IDLE_TRESHOLD_SECONDS)"
                ) && err.contains("did you mean `idle_threshold_seconds`?"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API fixes the error type
    fn the_default_listen_address_can_be_replaced_but_still_yields() {
        figment::Jail::expect_with(|jail| {
            let demo = Overrides {
                default_listen: Some("127.0.0.1:9850".parse().unwrap()),
                ..Overrides::default()
            };
            let s = Settings::load(None, &demo).map_err(|e| e.to_string())?;
            assert_eq!(s.listen.to_string(), "127.0.0.1:9850");
            jail.set_env("GREENOPS_LISTEN", "127.0.0.1:2000");
            let s = Settings::load(None, &demo).map_err(|e| e.to_string())?;
            assert_eq!(s.listen.to_string(), "127.0.0.1:2000");
            Ok(())
        });
    }

    #[test]
    fn values_are_checked() {
        let err = Settings::from_toml("[accounting]\nmax_gap_seconds = 30\n").unwrap_err();
        assert!(
            err.to_string().contains("heartbeat_interval_seconds"),
            "{err}"
        );
        let err =
            Settings::from_toml("[telemetry]\notlp_endpoint = \"localhost:4318\"\n").unwrap_err();
        assert!(err.to_string().contains("otlp_endpoint"), "{err}");
        let err = Settings::from_toml("[metrics]\nbasic_auth_username = \"p\"\n").unwrap_err();
        assert!(err.to_string().contains("basic_auth_password"), "{err}");
        let err = Settings::from_toml("[retention]\nraw_days = 0\n").unwrap_err();
        assert!(err.to_string().contains("raw_days"), "{err}");
        let err = Settings::from_toml("[retention]\nhourly_days = 7\n").unwrap_err();
        assert!(err.to_string().contains("hourly_days"), "{err}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API fixes the error type
    fn layers_apply_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "greenops.toml",
                "listen = \"127.0.0.1:1000\"\n[accounting]\nmax_gap_seconds = 200\n",
            )?;
            jail.set_env("GREENOPS_LISTEN", "127.0.0.1:2000");
            jail.set_env("GREENOPS_ACCOUNTING__IDLE_THRESHOLD_SECONDS", "60");
            jail.set_env("DATABASE_URL", "postgres://fallback/db");
            jail.set_env("GREENOPS_ADMIN_PASSWORD", "not a setting");
            let s = Settings::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(s.listen.port(), 2000);
            assert_eq!(s.accounting.max_gap_seconds, 200);
            assert_eq!(s.accounting.idle_threshold_seconds, 60);
            assert_eq!(s.database.url, "postgres://fallback/db");
            jail.set_env("GREENOPS_DATABASE_URL", "postgres://primary/db");
            let flags = Overrides {
                listen: Some("127.0.0.1:3000".parse().unwrap()),
                ..Overrides::default()
            };
            let s = Settings::load(None, &flags).map_err(|e| e.to_string())?;
            assert_eq!(s.listen.port(), 3000);
            assert_eq!(s.database.url, "postgres://primary/db");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail API fixes the error type
    fn file_variables_stand_for_their_setting() {
        figment::Jail::expect_with(|jail| {
            // A secret file as compose and systemd write them: a trailing newline.
            jail.create_file("metrics-token", "scrape-secret\n")?;
            jail.create_file("database-url", "postgres://greenops:pw@db/greenops\n")?;
            jail.create_file("gap", " 240 ")?;
            jail.create_file("admin-password", "first admin password\n")?;
            let dir = jail.directory().to_path_buf();
            let file = |name: &str| dir.join(name).display().to_string();
            jail.set_env("GREENOPS_METRICS__BEARER_TOKEN_FILE", file("metrics-token"));
            jail.set_env("GREENOPS_DATABASE_URL_FILE", file("database-url"));
            jail.set_env("DATABASE_URL", "postgres://not-this/db");
            jail.set_env("GREENOPS_ACCOUNTING__MAX_GAP_SECONDS_FILE", file("gap"));
            // Not settings of the collector: ignored by the settings, read where they are used.
            jail.set_env("GREENOPS_ENROLLMENT_TOKEN_FILE", "/nonexistent/token");
            jail.set_env("GREENOPS_ADMIN_PASSWORD_FILE", file("admin-password"));
            let s = Settings::load(None, &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(
                s.metrics.bearer_token.as_ref().map(|t| t.expose_secret()),
                Some("scrape-secret")
            );
            assert_eq!(s.database.url, "postgres://greenops:pw@db/greenops");
            assert_eq!(s.accounting.max_gap_seconds, 240);
            assert_eq!(
                secret_variable("GREENOPS_ADMIN_PASSWORD").map_err(|e| e.to_string())?,
                Some("first admin password".to_string())
            );

            // An unreadable file, an empty one, both ways at once: refused, naming the variable.
            jail.set_env("GREENOPS_METRICS__BEARER_TOKEN_FILE", file("missing"));
            let err = Settings::load(None, &Overrides::default()).unwrap_err();
            assert!(
                err.to_string()
                    .contains("GREENOPS_METRICS__BEARER_TOKEN_FILE: cannot read"),
                "{err}"
            );
            jail.create_file("empty", "\n")?;
            jail.set_env("GREENOPS_METRICS__BEARER_TOKEN_FILE", file("empty"));
            let err = Settings::load(None, &Overrides::default()).unwrap_err();
            assert!(err.to_string().contains("is empty"), "{err}");
            jail.set_env("GREENOPS_METRICS__BEARER_TOKEN_FILE", file("metrics-token"));
            jail.set_env("GREENOPS_METRICS__BEARER_TOKEN", "inline");
            let err = Settings::load(None, &Overrides::default()).unwrap_err();
            assert!(
                err.to_string().contains(
                    "GREENOPS_METRICS__BEARER_TOKEN and GREENOPS_METRICS__BEARER_TOKEN_FILE are both set"
                ),
                "{err}"
            );
            jail.set_env("GREENOPS_ADMIN_PASSWORD", "inline");
            assert!(secret_variable("GREENOPS_ADMIN_PASSWORD").is_err());
            Ok(())
        });
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let mut s = Settings::default();
        s.database.url = "postgres://greenops:hunter2@db:5432/greenops".into();
        s.metrics.bearer_token = Some("scrape-secret".into());
        s.metrics.basic_auth_password = Some("basic-secret".into());
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("hunter2")
                && !shown.contains("scrape-secret")
                && !shown.contains("basic-secret"),
            "{shown}"
        );
        assert!(shown.contains("greenops:***@db"));
    }
}
