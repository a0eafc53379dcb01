//! `greenops import-seed`: brings an installation of the original Python GreenOps over.
//!
//! Machines keep their identity (the `machine_key` derived from the MAC, as the compatibility
//! endpoint derives it, so an agent that registers later lands on its imported machine), their
//! history is delivered through the ordinary ingest path and accounted with this collector's
//! rules in timestamp order (the original's own totals are only shown beside them, in the
//! report), operators keep their Argon2id password hashes — except an account whose hash
//! verifies the original's published default password, which is imported disabled — and agent
//! tokens are imported as credentials, so running agents keep working.
//!
//! Idempotent: each original machine is recorded when its import starts and when it ends; a
//! re-run skips finished machines, resumes an unfinished one (its heartbeats carry their
//! position in the machine's history as `seq`, so those already delivered are duplicates) and
//! leaves existing users and tokens alone.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use futures_util::TryStreamExt;
use greenops_protocol::{
    IdleSourceKind, SEED_AGENT_VERSION, Session, ValidEnrollment, ValidHeartbeat, ValidationError,
    check_text, seed_idle_ms, seed_machine_key, seed_os, seed_percent,
};
use rust_decimal::Decimal;

use super::{Ctx, OpError, invalid};
use crate::clock;
use crate::ingest::plan::Accountant;
use crate::secrets::{AGENT_TOKEN_PREFIX, TokenHash, generate_token, new_machine_id};
use crate::store::ingest::{Candidate, HeartbeatOutcome, RateBookCache};
use crate::store::seed::{SeedMachineRow, SeedSource, SeedTokenRow, seed_kwh};
use crate::store::{
    EnrollAuth, EnrollCommand, EnrollRefusal, HeartbeatJob, JobOutcome, MachineSnapshot, Role,
};

/// The original's published default password: an account still using it is imported disabled.
pub const SEED_DEFAULT_PASSWORD: &str = "admin123";

/// Earliest heartbeat accepted (as at ingest): 2000-01-01T00:00:00Z.
const MIN_TIMESTAMP_MS: i64 = 946_684_800_000;
/// Heartbeats delivered per transaction.
const CHUNK: usize = 1000;
/// A progress line every this many heartbeats of one machine.
const PROGRESS_EVERY: u64 = 20_000;

/// What to import into, and how.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Site and department of the imported machines (the site must exist).
    pub site: String,
    pub department: String,
    /// Read and check everything, write nothing.
    pub dry_run: bool,
    /// The clock-skew allowance heartbeats are checked with (as at ingest).
    pub max_clock_skew_ms: i64,
}

/// A row that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// `machine 12`, `user bob`, `token of machine 7`, `heartbeats of machine 12`…
    pub what: String,
    pub reason: String,
    /// Rows with this reason (heartbeats are counted, not listed).
    pub rows: u64,
}

/// A machine's totals: as the original reported them, and as GreenOps accounted its history.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub seed_id: String,
    pub machine_id: String,
    pub hostname: String,
    /// As reported by the original system.
    pub original_idle_seconds: Option<f64>,
    pub original_active_seconds: Option<f64>,
    pub original_energy_wasted_kwh: Option<Decimal>,
    /// GreenOps' accounting of the imported heartbeats (and of any reported since).
    pub idle_seconds: f64,
    pub observed_seconds: f64,
    pub idle_energy_kwh: Decimal,
}

/// What an import did (or, on a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportReport {
    pub dry_run: bool,
    pub machines_imported: u64,
    pub machines_already: u64,
    pub heartbeats_in_source: i64,
    pub heartbeats_imported: u64,
    pub heartbeats_already: u64,
    pub tokens_imported: u64,
    pub users_imported: u64,
    pub users_already: u64,
    /// Accounts whose hash verifies [`SEED_DEFAULT_PASSWORD`]: imported disabled.
    pub users_disabled: Vec<String>,
    pub skipped: Vec<Skipped>,
    pub comparisons: Vec<Comparison>,
}

impl ImportReport {
    /// One skip line per refusal reason of a machine's heartbeats.
    fn skip_refused(&mut self, machine_id: &str, refused: BTreeMap<String, u64>) {
        for (reason, rows) in refused {
            self.skip(format!("heartbeats of machine {machine_id}"), reason, rows);
        }
    }

    fn skip(&mut self, what: impl Into<String>, reason: impl Into<String>, rows: u64) {
        self.skipped.push(Skipped {
            what: what.into(),
            reason: reason.into(),
            rows,
        });
    }

    /// Heartbeats not imported, over every reason.
    pub fn heartbeats_skipped(&self) -> u64 {
        self.skipped
            .iter()
            .filter(|s| s.what.starts_with("heartbeats"))
            .map(|s| s.rows)
            .sum()
    }
}

/// Imports everything of `source` into the store of `ctx` (see the module docs).
pub async fn import(
    ctx: Ctx<'_>,
    source: &SeedSource,
    options: &ImportOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<ImportReport, OpError> {
    let now = clock::now_ms();
    let sites = ctx.store.list_sites(now).await?;
    if !sites.iter().any(|s| s.name == options.site) {
        return Err(invalid(
            "site",
            format!(
                "'{}' does not exist; create the site first or choose another",
                options.site
            ),
        ));
    }
    check_text("department", &options.department, 0, 100)?;
    let mut report = ImportReport {
        dry_run: options.dry_run,
        heartbeats_in_source: source.count_heartbeats().await?,
        ..ImportReport::default()
    };
    import_users(ctx, source, options, &mut report, progress).await?;
    let machines = source.machines().await?;
    let tokens = tokens_by_machine(source.tokens().await?, &machines, &mut report);
    let orphans = source.count_orphan_heartbeats().await?;
    if orphans > 0 {
        report.skip(
            "heartbeats of unknown machines",
            "their machine_id names no machine of the original database",
            u64::try_from(orphans).unwrap_or(0),
        );
    }
    let books = RateBookCache::new();
    let planner = Accountant {
        max_clock_skew_ms: options.max_clock_skew_ms,
    };
    let total = machines.len();
    let mut imported: Vec<(String, &SeedMachineRow)> = Vec::new();
    for (i, machine) in machines.iter().enumerate() {
        progress(&format!(
            "machine {}/{total}: {} ({})",
            i + 1,
            machine.hostname.as_deref().unwrap_or("?"),
            machine.id
        ));
        let Some(enrollment) = enrollment_of(machine, &mut report) else {
            skip_history(source, machine, &mut report).await?;
            continue;
        };
        let what = format!("machine {}", machine.id);
        let id = match ctx.store.seed_import(&machine.id).await? {
            Some(done) if done.finished => {
                report.machines_already += 1;
                imported.push((done.machine_id, machine));
                continue;
            }
            Some(unfinished) => unfinished.machine_id,
            None => {
                if ctx
                    .store
                    .machine_id_by_key(&enrollment.machine_key)
                    .await?
                    .is_some()
                {
                    report.skip(
                        what,
                        "a machine with the same MAC already reports to GreenOps (its agent \
                         registered through the compatibility endpoint before the import); \
                         its original history and tokens are not imported",
                        1,
                    );
                    skip_history(source, machine, &mut report).await?;
                    continue;
                }
                new_machine_id()
            }
        };
        if options.dry_run {
            check_history(source, machine, &mut report).await?;
            report.machines_imported += 1;
            report.tokens_imported += tokens.get(&machine.id).map_or(0, |t| t.len() as u64);
            continue;
        }
        // The import's own credential, revoked when the machine is done.
        let credential = TokenHash::of(&generate_token(AGENT_TOKEN_PREFIX));
        ctx.store.start_seed_import(&machine.id, &id, now).await?;
        match ctx.store.machine_id_by_key(&enrollment.machine_key).await? {
            Some(existing) if existing == id => {
                ctx.store.add_credential(&id, &credential, now).await?;
            }
            Some(other) => {
                report.skip(
                    what,
                    format!("its MAC now belongs to GreenOps machine {other}"),
                    1,
                );
                continue;
            }
            None => enroll(ctx, machine, enrollment, &id, credential, options, now).await?,
        }
        deliver_history(
            ctx,
            source,
            machine,
            &id,
            credential,
            (&books, &planner),
            &mut report,
            progress,
        )
        .await?;
        let machine_tokens = tokens.get(&machine.id).cloned().unwrap_or_default();
        ctx.store
            .finish_seed_import(&machine.id, &id, &machine_tokens, clock::now_ms())
            .await?;
        report.tokens_imported += machine_tokens.len() as u64;
        report.machines_imported += 1;
        imported.push((id, machine));
    }
    if !options.dry_run {
        ctx.machines_changed();
        let snapshot = ctx.store.fleet_snapshot().await?;
        let by_id: HashMap<&str, &MachineSnapshot> = snapshot
            .machines
            .iter()
            .map(|m| (m.id.as_str(), m))
            .collect();
        for (id, machine) in &imported {
            if let Some(m) = by_id.get(id.as_str()) {
                report.comparisons.push(compare(machine, m));
            }
        }
        ctx.audit(
            "seed_imported",
            "",
            serde_json::json!({
                "machines": report.machines_imported,
                "heartbeats": report.heartbeats_imported,
                "users": report.users_imported,
                "users_disabled": report.users_disabled,
                "tokens": report.tokens_imported,
                "skipped": report.skipped.len(),
            }),
        )
        .await?;
    }
    Ok(report)
}

/// The original's active tokens by its machine id; the others are reported as skipped.
fn tokens_by_machine(
    rows: Vec<SeedTokenRow>,
    machines: &[SeedMachineRow],
    report: &mut ImportReport,
) -> HashMap<String, Vec<TokenHash>> {
    let known: std::collections::HashSet<&str> = machines.iter().map(|m| m.id.as_str()).collect();
    let mut tokens: HashMap<String, Vec<TokenHash>> = HashMap::new();
    let mut skipped: BTreeMap<&'static str, u64> = BTreeMap::new();
    for row in rows {
        let hash = row
            .token_hash
            .as_deref()
            .and_then(|h| hex::decode(h.trim()).ok())
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(TokenHash);
        let reason = match (&row.machine_id, hash) {
            _ if row.revoked => "revoked in the original system",
            (_, None) => "token_hash is not a SHA-256 hex digest",
            (Some(m), Some(hash)) if known.contains(m.as_str()) => {
                tokens.entry(m.clone()).or_default().push(hash);
                continue;
            }
            _ => "its machine_id names no machine of the original database",
        };
        *skipped.entry(reason).or_default() += 1;
    }
    for (reason, rows) in skipped {
        report.skip("agent tokens", reason, rows);
    }
    tokens
}

/// How an original machine enrols here; `None` (reported) when it cannot.
fn enrollment_of(machine: &SeedMachineRow, report: &mut ImportReport) -> Option<ValidEnrollment> {
    let what = format!("machine {}", machine.id);
    let checked = (|| -> Result<ValidEnrollment, ValidationError> {
        let mac = machine
            .mac_address
            .as_deref()
            .ok_or_else(|| ValidationError::new("mac_address", "is missing"))?;
        let (machine_key, mac) = seed_machine_key(mac)?;
        let hostname = machine.hostname.clone().unwrap_or_default();
        check_text(
            "hostname",
            &hostname,
            1,
            greenops_protocol::MAX_HOSTNAME_CHARS,
        )?;
        let os = seed_os(machine.os_type.as_deref().unwrap_or("unknown"));
        check_text("os_type", &os, 1, 64)?;
        let os_version = machine.os_version.clone().unwrap_or_default();
        check_text("os_version", &os_version, 0, 128)?;
        Ok(ValidEnrollment {
            machine_key,
            hostname,
            os,
            os_version,
            agent_version: SEED_AGENT_VERSION.into(),
            mac_addresses: mac.into_iter().collect(),
        })
    })();
    match checked {
        Ok(e) => Some(e),
        Err(e) => {
            report.skip(what, format!("{} {}", e.field, e.message), 1);
            None
        }
    }
}

/// Creates the machine through the enrolment path, placed as the options say.
async fn enroll(
    ctx: Ctx<'_>,
    machine: &SeedMachineRow,
    enrollment: ValidEnrollment,
    id: &str,
    credential: TokenHash,
    options: &ImportOptions,
    now: i64,
) -> Result<(), OpError> {
    let command = EnrollCommand {
        auth: EnrollAuth::Placed {
            site: options.site.clone(),
            department: options.department.clone(),
        },
        machine: enrollment,
        new_machine_id: id.to_string(),
        credential_hash: credential,
        now_ms: machine.first_seen_ms.unwrap_or(now).min(now),
    };
    match ctx.store.enroll(&command).await? {
        Ok(enrolled) if enrolled.machine_id == id => Ok(()),
        Ok(enrolled) => Err(OpError::Conflict(format!(
            "machine {} was registered as {} while it was being imported; run the import \
             again before turning on compat.seed_agents",
            machine.id, enrolled.machine_id
        ))),
        Err(EnrollRefusal::UnknownSite) => Err(invalid(
            "site",
            format!("'{}' was deleted during the import", options.site),
        )),
        Err(refusal) => Err(OpError::Conflict(format!(
            "machine {} could not be created: {refusal:?}",
            machine.id
        ))),
    }
}

/// One original heartbeat as GreenOps reads it, with its position in the machine's history
/// as `seq`.
fn heartbeat_of(
    seq: u64,
    row: &crate::store::seed::SeedHeartbeatRow,
) -> Result<ValidHeartbeat, ValidationError> {
    let sent_at_ms = row
        .timestamp_ms
        .ok_or_else(|| ValidationError::new("timestamp", "is missing"))?;
    if sent_at_ms < MIN_TIMESTAMP_MS {
        return Err(ValidationError::new(
            "timestamp",
            "must be after 2000-01-01",
        ));
    }
    Ok(ValidHeartbeat {
        seq,
        sent_at_ms,
        idle_ms: seed_idle_ms(row.idle_seconds)?,
        session: Session::Unknown,
        cpu_usage_ratio: seed_percent("cpu_usage", row.cpu_usage)?,
        memory_usage_ratio: seed_percent("memory_usage", row.memory_usage)?,
        uptime_seconds: None,
        idle_source: Some(IdleSourceKind::SeedLegacy),
    })
}

/// Reports the history of a machine that is not imported.
async fn skip_history(
    source: &SeedSource,
    machine: &SeedMachineRow,
    report: &mut ImportReport,
) -> Result<(), OpError> {
    let rows = u64::try_from(source.count_heartbeats_of(&machine.id).await?).unwrap_or(0);
    if rows > 0 {
        report.skip(
            format!("heartbeats of machine {}", machine.id),
            "their machine was not imported",
            rows,
        );
    }
    Ok(())
}

/// A dry run: what delivering the history would refuse for its values.
async fn check_history(
    source: &SeedSource,
    machine: &SeedMachineRow,
    report: &mut ImportReport,
) -> Result<(), OpError> {
    let mut rows = source.heartbeats(&machine.id);
    let mut refused: BTreeMap<String, u64> = BTreeMap::new();
    let mut seq = 0;
    while let Some(row) = rows.try_next().await? {
        seq += 1;
        match heartbeat_of(seq, &row) {
            Ok(_) => report.heartbeats_imported += 1,
            Err(e) => {
                *refused
                    .entry(format!("{} {}", e.field, e.message))
                    .or_default() += 1
            }
        }
    }
    report.skip_refused(&machine.id, refused);
    Ok(())
}

/// Delivers the machine's history in timestamp order through the ingest path.
#[allow(clippy::too_many_arguments)]
async fn deliver_history(
    ctx: Ctx<'_>,
    source: &SeedSource,
    machine: &SeedMachineRow,
    id: &str,
    credential: TokenHash,
    (books, planner): (&RateBookCache, &Accountant),
    report: &mut ImportReport,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), OpError> {
    let mut rows = source.heartbeats(&machine.id);
    let mut refused: BTreeMap<String, u64> = BTreeMap::new();
    let mut seq: u64 = 0;
    let mut done: u64 = 0;
    loop {
        let mut chunk = Vec::with_capacity(CHUNK);
        while chunk.len() < CHUNK {
            let Some(row) = rows.try_next().await? else {
                break;
            };
            seq += 1;
            chunk.push(Candidate {
                seq: Some(seq),
                assign_seq: false,
                heartbeat: heartbeat_of(seq, &row),
            });
        }
        if chunk.is_empty() {
            break;
        }
        let now = clock::now_ms();
        // Received when sent (as far as the clock-skew rule allows), so the machine's last
        // report is its last original heartbeat, not the moment of the import.
        let received_at_ms = chunk
            .iter()
            .filter_map(|c| c.heartbeat.as_ref().ok().map(|h| h.sent_at_ms))
            .max()
            .map_or(now, |latest| latest.min(now));
        let size = chunk.len() as u64;
        let job = HeartbeatJob {
            machine_id: id.to_string(),
            credential,
            received_at_ms,
            heartbeats: chunk,
        };
        let outcomes = ctx
            .store
            .commit_heartbeats(std::slice::from_ref(&job), books, planner)
            .await?;
        match outcomes.into_iter().next() {
            Some(JobOutcome::Committed(results)) => {
                for result in results {
                    match result {
                        HeartbeatOutcome::Accepted => report.heartbeats_imported += 1,
                        HeartbeatOutcome::Duplicate => report.heartbeats_already += 1,
                        HeartbeatOutcome::Rejected(_, e) => {
                            *refused
                                .entry(format!("{} {}", e.field, e.message))
                                .or_default() += 1;
                        }
                    }
                }
            }
            _ => {
                return Err(OpError::Internal(anyhow::anyhow!(
                    "machine {id} refused the import's credential"
                )));
            }
        }
        let before = done;
        done += size;
        if done / PROGRESS_EVERY > before / PROGRESS_EVERY {
            progress(&format!(
                "  {}: {done} heartbeats",
                machine.hostname.as_deref().unwrap_or("?")
            ));
        }
    }
    report.skip_refused(&machine.id, refused);
    Ok(())
}

/// The original's totals beside GreenOps' accounting of the same machine.
fn compare(machine: &SeedMachineRow, m: &MachineSnapshot) -> Comparison {
    Comparison {
        seed_id: machine.id.clone(),
        machine_id: m.id.clone(),
        hostname: m.hostname.clone(),
        original_idle_seconds: machine.total_idle_seconds,
        original_active_seconds: machine.total_active_seconds,
        original_energy_wasted_kwh: seed_kwh(machine.energy_wasted_kwh.as_deref()),
        idle_seconds: m.totals.idle_ms as f64 / 1000.0,
        observed_seconds: m.totals.observed_ms as f64 / 1000.0,
        idle_energy_kwh: (m.totals.idle_energy_j / Decimal::from(3_600_000)).round_dp(3),
    }
}

/// Imports the original's operators (before the machines: quick, and what an operator needs
/// first).
async fn import_users(
    ctx: Ctx<'_>,
    source: &SeedSource,
    options: &ImportOptions,
    report: &mut ImportReport,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), OpError> {
    let users = source.users().await?;
    progress(&format!("users: {}", users.len()));
    for row in users {
        let username = row.username.clone().unwrap_or_default();
        let what = format!("user '{username}'");
        if let Err(e) = crate::auth::check_username(&username) {
            report.skip(what, format!("the username {e}"), 1);
            continue;
        }
        let role = match row.role.as_deref() {
            Some("admin") => Role::Admin,
            Some("viewer") => Role::Viewer,
            other => {
                report.skip(
                    what,
                    format!("role {other:?} is neither admin nor viewer"),
                    1,
                );
                continue;
            }
        };
        let hash = row.password_hash.clone().unwrap_or_default();
        if !hash.starts_with("$argon2") {
            report.skip(what, "the password hash is not an Argon2 PHC string", 1);
            continue;
        }
        if ctx.store.user_by_name(&username).await?.is_some() {
            report.users_already += 1;
            continue;
        }
        let default_password = ctx
            .passwords
            .verify(hash.clone(), SEED_DEFAULT_PASSWORD.into())
            .await
            .map_err(|_| OpError::Internal(anyhow::anyhow!("the password pool is busy")))?;
        if default_password {
            report.users_disabled.push(username.clone());
        }
        report.users_imported += 1;
        if options.dry_run {
            continue;
        }
        let now = clock::now_ms();
        ctx.store.create_user(&username, &hash, role, now).await?;
        if default_password {
            ctx.store.disable_user(&username, now).await?;
        }
        ctx.audit(
            "user_imported",
            &username,
            serde_json::json!({"after": {"role": role, "disabled": default_password}}),
        )
        .await?;
    }
    Ok(())
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run {
            "would be imported"
        } else {
            "imported"
        };
        if self.dry_run {
            writeln!(f, "dry run: nothing was written")?;
        }
        writeln!(
            f,
            "machines: {} {verb}, {} already imported, {} skipped",
            self.machines_imported,
            self.machines_already,
            self.skipped
                .iter()
                .filter(|s| s.what.starts_with("machine "))
                .count()
        )?;
        writeln!(
            f,
            "heartbeats: {} in the original database; {} {verb}, {} already imported, {} skipped",
            self.heartbeats_in_source,
            self.heartbeats_imported,
            self.heartbeats_already,
            self.heartbeats_skipped()
        )?;
        writeln!(
            f,
            "agent tokens: {} {verb} (their agents keep working with them)",
            self.tokens_imported
        )?;
        writeln!(
            f,
            "users: {} {verb}, {} already present, {} skipped",
            self.users_imported,
            self.users_already,
            self.skipped
                .iter()
                .filter(|s| s.what.starts_with("user "))
                .count()
        )?;
        for name in &self.users_disabled {
            writeln!(
                f,
                "  user '{name}': its password is the original's published default \
                 ({SEED_DEFAULT_PASSWORD}); imported DISABLED. Give it a new password \
                 (greenops user passwd {name}) and enable it on the admin page"
            )?;
        }
        if !self.skipped.is_empty() {
            writeln!(f, "skipped:")?;
            for s in &self.skipped {
                writeln!(f, "  {} ({} rows): {}", s.what, s.rows, s.reason)?;
            }
        }
        if !self.comparisons.is_empty() {
            writeln!(
                f,
                "totals compared: \"original\" is as reported by the original system (its \
                 totals are known to be off by 7-85 %); GreenOps accounted the same heartbeats \
                 with its own rules"
            )?;
            writeln!(
                f,
                "  {:<32} {:>16} {:>16} {:>14} {:>16}",
                "machine",
                "original idle h",
                "GreenOps idle h",
                "original kWh",
                "GreenOps idle kWh"
            )?;
            for c in &self.comparisons {
                let hours = |s: Option<f64>| s.map_or("-".into(), |s| format!("{:.2}", s / 3600.0));
                writeln!(
                    f,
                    "  {:<32} {:>16} {:>16.2} {:>14} {:>16}",
                    c.hostname,
                    hours(c.original_idle_seconds),
                    c.idle_seconds / 3600.0,
                    c.original_energy_wasted_kwh
                        .map_or("-".into(), |k| k.normalize().to_string()),
                    c.idle_energy_kwh.normalize()
                )?;
            }
        }
        Ok(())
    }
}
