//! The agent's run loop: sample, spool, deliver, back off, shut down cleanly.

use std::path::Path;
use std::time::{Duration, Instant};

use greenops_protocol::{EnrollRequest, Heartbeat, IdleSourceKind, MAX_BATCH_HEARTBEATS};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::backoff::Backoff;
use crate::idle::{self, Reading, Sampler};
use crate::settings::AgentSettings;
use crate::spool::{Bounds, Spool, write_atomically};
use crate::state::State;
use crate::system::{SystemSampler, describe};
use crate::transport::{EnrollError, SendError, Transport};

/// What `greenops-agent status` shows; rewritten after every delivery attempt.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub machine_id: Option<String>,
    pub enrolled: bool,
    pub last_seq: u64,
    pub last_delivery_at: Option<String>,
    pub last_delivered_seq: u64,
    pub spool_depth: usize,
    pub spool_bytes: u64,
    pub idle_source: String,
    pub last_error: Option<String>,
    /// The collector the last `run` or `enroll` talked to.
    #[serde(default)]
    pub server_url: Option<String>,
}

impl Status {
    pub fn path(state_dir: &Path) -> std::path::PathBuf {
        state_dir.join("status.json")
    }

    pub fn load(state_dir: &Path) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(Self::path(state_dir)).ok()?).ok()
    }
}

/// After this many consecutive refusals of the same oldest heartbeat it is dropped (logged),
/// so one heartbeat the collector will never accept cannot block the spool forever.
const MAX_REFUSALS: u32 = 50;

pub struct Agent {
    settings: AgentSettings,
    state: State,
    spool: Spool,
    transport: Transport,
    /// The idle sources, read on the blocking pool (they wait on sockets).
    idle: Sampler,
    system: SystemSampler,
    backoff: Backoff,
    retry_at: Option<Instant>,
    status: Status,
    refusals: u32,
    last_auth_complaint: Option<Instant>,
    /// Set while no idle source works (said once, and again when one works).
    idle_unknown: bool,
}

impl Agent {
    pub fn new(settings: AgentSettings) -> anyhow::Result<Self> {
        let transport = Transport::new(&settings)?;
        let state = State::open(&settings.state_dir)?;
        let spool = Spool::open(
            &settings.state_dir,
            Bounds {
                max_bytes: settings.spool_max_bytes,
                max_age_ms: i64::try_from(settings.spool_max_age_seconds.saturating_mul(1000))
                    .unwrap_or(i64::MAX),
            },
        )
        .map_err(|e| {
            crate::state::state_error(
                "open the spool in",
                &settings.state_dir.join("spool.bin"),
                &e,
            )
        })?;
        let mut status = Status::load(&settings.state_dir).unwrap_or_default();
        status.server_url = Some(transport.base().to_string());
        status.machine_id = state.identity.machine_id.clone();
        status.enrolled = state.identity.agent_token.is_some();
        status.spool_depth = spool.depth();
        Ok(Self {
            settings,
            state,
            spool,
            transport,
            idle: Sampler::new(idle::sources()),
            system: SystemSampler::new(),
            backoff: Backoff::default(),
            retry_at: None,
            status,
            refusals: 0,
            last_auth_complaint: None,
            idle_unknown: false,
        })
    }

    /// Enrols (or re-enrols, rotating the credential) with the configured enrollment token.
    pub async fn enroll(&mut self) -> anyhow::Result<String> {
        let token = self.settings.enrollment_token.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "no enrollment token configured: give one with --enrollment-token-file FILE, \
                 GREENOPS_ENROLLMENT_TOKEN or --enrollment-token"
            )
        })?;
        let (hostname, os, os_version) = describe();
        let answer = self
            .transport
            .enroll(&EnrollRequest {
                enrollment_token: Some(token.expose_secret().to_string()),
                machine_key: self.state.identity.machine_key.clone(),
                hostname,
                os,
                os_version,
                agent_version: env!("CARGO_PKG_VERSION").into(),
                mac_addresses: None,
            })
            .await
            .map_err(anyhow::Error::new)?;
        self.state
            .save_credential(&answer.machine_id, &answer.agent_token)?;
        self.status.machine_id = Some(answer.machine_id.clone());
        self.status.enrolled = true;
        tracing::info!(machine_id = %answer.machine_id, "enrolled");
        Ok(answer.machine_id)
    }

    /// Takes one heartbeat now and appends it to the spool (durably) before any sending.
    pub async fn take_heartbeat(&mut self) -> anyhow::Result<()> {
        self.system.refresh();
        let reading: Reading = self.idle.read().await;
        let system = self.system.sample();
        let seq = self.state.next_seq()?;
        let hb = Heartbeat {
            seq,
            sent_at: OffsetDateTime::now_utc(),
            idle_seconds: reading.idle_seconds,
            session: reading.session,
            cpu_usage_ratio: system.cpu_usage_ratio,
            memory_usage_ratio: system.memory_usage_ratio,
            uptime_seconds: system.uptime_seconds,
            idle_source: Some(IdleSourceKind::from_name(reading.source)),
        };
        self.spool.append(hb)?;
        self.status.last_seq = seq;
        self.status.idle_source = reading.source.to_string();
        self.note_idle_source(&reading).await;
        tracing::debug!(seq, idle = ?reading.idle_seconds, source = reading.source, "heartbeat spooled");
        Ok(())
    }

    /// Says once when no idle source works (and which fails how), and again when one does.
    async fn note_idle_source(&mut self, reading: &Reading) {
        let unknown = reading.source == Reading::unknown().source;
        if unknown && !self.idle_unknown {
            let why = tokio::task::spawn_blocking(idle::why_none_works)
                .await
                .unwrap_or_default();
            tracing::warn!(
                "no idle source works here ({why}): heartbeats report idle time as unknown, so \
                 this machine shows as `unknown` and no waste is counted; run the agent inside \
                 the desktop session (packaging/systemd/greenops-agent-user.service) or see \
                 `greenops-agent idle`"
            );
        } else if !unknown && self.idle_unknown {
            tracing::info!(source = reading.source, "idle time is measured again");
        }
        self.idle_unknown = unknown;
    }

    /// An enrolment that failed: a refusal (bad token, retired machine) is said in its one
    /// sentence at most once an hour, as asking again cannot help; anything else is retried.
    fn enrolment_failed(&mut self, e: &anyhow::Error) {
        match e.downcast_ref::<EnrollError>() {
            Some(EnrollError::Refused(reason)) => self.complain_about_credentials(reason),
            _ => self.fail(format!("enrolment failed: {e:#}"), None),
        }
    }

    /// Sends everything in the spool, oldest first, in batches; stops at the first failure
    /// and schedules the retry.
    pub async fn deliver(&mut self) {
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            // Still waiting to retry: the status file shows the spool growing meanwhile.
            self.write_status();
            return;
        }
        while self.spool.depth() > 0 {
            let Some(token) = self.state.identity.agent_token.clone() else {
                if self.settings.enrollment_token.is_some() {
                    if let Err(e) = self.enroll().await {
                        self.enrolment_failed(&e);
                        return;
                    }
                    continue;
                }
                self.complain_about_credentials(
                    "not enrolled and no enrollment token configured: give one with \
                     --enrollment-token-file FILE, GREENOPS_ENROLLMENT_TOKEN or --enrollment-token",
                );
                return;
            };
            let batch: Vec<Heartbeat> = self
                .spool
                .pending()
                .take(MAX_BATCH_HEARTBEATS)
                .cloned()
                .collect();
            let last = batch.last().map(|h| h.seq).unwrap_or(0);
            match self.transport.send(token.expose_secret(), &batch).await {
                Ok(answer) => {
                    if let Err(e) = self.spool.ack(last) {
                        self.fail(format!("cannot update the spool: {e}"), None);
                        return;
                    }
                    self.backoff.reset();
                    self.retry_at = None;
                    self.refusals = 0;
                    self.status.last_delivery_at = Some(now_rfc3339());
                    self.status.last_delivered_seq = last;
                    self.status.last_error = None;
                    // Rejected heartbeats can never be accepted: they leave the spool with
                    // the rest of the answered batch, and the log says which and why.
                    for result in &answer.results {
                        if let Some(error) = &result.error {
                            tracing::warn!(
                                seq = result.seq,
                                code = %error.code,
                                field = %error.field,
                                reason = %error.message,
                                "the collector rejected a heartbeat; dropped from the spool"
                            );
                        }
                    }
                    tracing::debug!(
                        sent = batch.len(),
                        accepted = answer.accepted,
                        duplicates = answer.duplicates,
                        rejected = answer.rejected,
                        "delivered"
                    );
                }
                Err(SendError::Unauthorized) => {
                    if self.settings.enrollment_token.is_some() {
                        tracing::warn!("the collector rejected the credential; enrolling again");
                        if let Err(e) = self.enroll().await {
                            self.enrolment_failed(&e);
                            return;
                        }
                    } else {
                        self.complain_about_credentials(
                            "the collector rejected this agent's credential (revoked, or the \
                             machine was retired): give an enrollment token with \
                             --enrollment-token-file FILE to enrol again",
                        );
                        return;
                    }
                }
                Err(SendError::Retry { reason, after }) => {
                    self.fail(reason, after);
                    return;
                }
                Err(SendError::Refused { status: 422, body }) => {
                    let body: String = body.chars().take(2000).collect();
                    // Every heartbeat of the request was rejected (DESIGN §3): none can ever
                    // be accepted, so exactly these leave the spool.
                    tracing::warn!(
                        first_seq = batch[0].seq,
                        last_seq = last,
                        %body,
                        "the collector rejected every heartbeat sent; dropped from the spool"
                    );
                    if let Err(e) = self.spool.ack(last) {
                        self.fail(format!("cannot update the spool: {e}"), None);
                        return;
                    }
                    self.refusals = 0;
                    self.status.last_error = Some(format!("heartbeats rejected: {body}"));
                }
                Err(SendError::Refused { status, body }) => {
                    self.refusals += 1;
                    if self.refusals >= MAX_REFUSALS {
                        let head = batch[0].seq;
                        tracing::error!(seq = head, status, %body, "dropping a heartbeat the collector keeps refusing");
                        let _ = self.spool.ack(head);
                        self.refusals = 0;
                        continue;
                    }
                    self.fail(format!("refused ({status}): {body}"), None);
                    return;
                }
            }
        }
        self.write_status();
    }

    fn fail(&mut self, reason: String, after: Option<Duration>) {
        let delay = self.backoff.next_delay(after);
        self.retry_at = Some(Instant::now() + delay);
        if self.backoff.attempt() <= 3 || self.backoff.attempt().is_multiple_of(10) {
            tracing::warn!(%reason, retry_in_s = delay.as_secs(), spooled = self.spool.depth(), "delivery failed");
        }
        self.status.last_error = Some(reason);
        self.write_status();
    }

    /// Without a way to get a new credential the agent keeps spooling and says so once an hour.
    fn complain_about_credentials(&mut self, reason: &str) {
        if self
            .last_auth_complaint
            .is_none_or(|t| t.elapsed() > Duration::from_secs(3600))
        {
            tracing::error!("{reason} (heartbeats are kept in the spool meanwhile)");
            self.last_auth_complaint = Some(Instant::now());
        }
        let delay = self.backoff.next_delay(None);
        self.retry_at = Some(Instant::now() + delay);
        self.status.last_error = Some(reason.to_string());
        self.write_status();
    }

    fn write_status(&mut self) {
        self.status.spool_depth = self.spool.depth();
        self.status.spool_bytes = self.spool.pending_bytes();
        if let Ok(bytes) = serde_json::to_vec_pretty(&self.status) {
            let _ = write_atomically(&Status::path(self.state.dir()), &bytes);
        }
    }

    /// Runs until `stop` completes: a heartbeat every interval, delivery after each and on
    /// retry; on stop one last heartbeat and a bounded final delivery.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        if self.state.identity.agent_token.is_none()
            && self.settings.enrollment_token.is_some()
            && let Err(e) = self.enroll().await
        {
            self.enrolment_failed(&e);
            // The first delivery comes with the first heartbeat, not at the retry time.
            self.retry_at = None;
        }
        let interval = Duration::from_secs(self.settings.heartbeat_interval_seconds);
        let sample = Duration::from_secs(self.settings.sample_interval_seconds);
        let mut heartbeat = tokio::time::interval(interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sampling = tokio::time::interval(sample);
        sampling.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        tokio::pin!(stop);
        tracing::info!(
            server = %self.settings.server_url,
            interval_s = interval.as_secs(),
            spooled = self.spool.depth(),
            "agent running"
        );
        loop {
            let retry = self.retry_at;
            tokio::select! {
                () = &mut stop => break,
                _ = heartbeat.tick() => {
                    self.take_heartbeat().await?;
                    self.deliver().await;
                }
                _ = sampling.tick() => self.system.refresh(),
                () = sleep_until(retry) => {
                    self.retry_at = None;
                    self.deliver().await;
                }
            }
        }
        tracing::info!("stopping: one last heartbeat");
        self.take_heartbeat().await?;
        self.retry_at = None;
        if tokio::time::timeout(Duration::from_secs(3), self.deliver())
            .await
            .is_err()
        {
            tracing::warn!(
                spooled = self.spool.depth(),
                "collector too slow at shutdown; heartbeats stay spooled"
            );
        }
        self.write_status();
        Ok(())
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
