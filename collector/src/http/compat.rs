//! The original Python GreenOps agents' API (`/api/agents/*`), answered in their wire format so
//! that they report into GreenOps during a migration (`compat.seed_agents`, off by default).
//!
//! Registration is enrolment without a token, placed by `compat.site`/`compat.department` and
//! rate limited per client IP; a heartbeat takes the native ingest path with a server-given
//! `seq`, so it is accounted exactly like a native one. These routes are not part of the
//! OpenAPI document: their shapes belong to the original system, not to this API.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use greenops_protocol::{
    IdleSourceKind, SEED_AGENT_VERSION, SeedCommandsResponse, SeedError, SeedErrorBody,
    SeedHeartbeat, SeedHeartbeatResponse, SeedMachineStatus, SeedRegisterRequest,
    SeedRegisterResponse, Session, ValidEnrollment, ValidHeartbeat,
};

use super::extract::ApiBytes;
use super::{ApiError, AppState, bearer};
use crate::accounting::{self, LastReport, Status};
use crate::clock;
use crate::secrets::{AGENT_TOKEN_PREFIX, TokenHash, generate_token, new_machine_id};
use crate::settings::{CompatSettings, secs_to_ms};
use crate::store::ingest::{Candidate, HeartbeatOutcome};
use crate::store::{EnrollAuth, EnrollCommand, EnrollRefusal, HeartbeatJob, JobOutcome, Store};

/// The three routes, mounted only when `compat.seed_agents` is on.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/agents/register", post(register))
        .route("/api/agents/heartbeat", post(heartbeat))
        .route("/api/agents/commands", get(commands))
}

/// Refuses to start when the configured placement of registered machines does not exist.
pub async fn check_placement(store: &dyn Store, compat: &CompatSettings) -> anyhow::Result<()> {
    let sites = store.list_sites(clock::now_ms()).await?;
    if !sites.iter().any(|s| s.name == compat.site) {
        anyhow::bail!(
            "compat.site: there is no site named '{}'; compat.seed_agents places the machines \
             of original GreenOps agents there. Create the site first (admin page or \
             POST /api/v1/sites), or set compat.site to one of: {}",
            compat.site,
            sites
                .iter()
                .map(|s| format!("'{}'", s.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// An error in the original format, `{"error": "<sentence>"}`, with the status and headers
/// (`Retry-After`) the native API would answer.
#[derive(Debug)]
pub struct SeedFailure(ApiError);

impl<E: Into<ApiError>> From<E> for SeedFailure {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for SeedFailure {
    fn into_response(self) -> Response {
        let body = SeedErrorBody {
            error: self.0.public_message(),
        };
        let mut response = self.0.into_response();
        response.headers_mut().remove(header::CONTENT_LENGTH);
        *response.body_mut() = Body::from(serde_json::to_vec(&body).unwrap_or_default());
        response
    }
}

type SeedResult<T> = Result<T, SeedFailure>;

/// A body of the original format: not JSON → 400, JSON of the wrong shape → 422.
fn parse<T: serde::de::DeserializeOwned>(raw: Result<ApiBytes, ApiError>) -> SeedResult<T> {
    let ApiBytes(bytes) = raw?;
    serde_json::from_slice(&bytes).map_err(|e| {
        SeedFailure(match e.classify() {
            serde_json::error::Category::Data => {
                ApiError::Invalid(greenops_protocol::ValidationError::new(
                    "$",
                    format!("has a field of the wrong type: {e}"),
                ))
            }
            _ => ApiError::Malformed(format!("the body is not JSON: {e}")),
        })
    })
}

impl From<SeedError> for SeedFailure {
    fn from(e: SeedError) -> Self {
        SeedFailure(match e {
            SeedError::Missing(_) => ApiError::Malformed(e.to_string()),
            SeedError::Invalid(v) => ApiError::Invalid(v),
        })
    }
}

/// Registers a machine (HTTP 200, as the original agents expect), or gives a known MAC a new
/// token (the previous one stops working). Rate limited per client IP.
async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    raw: Result<ApiBytes, ApiError>,
) -> SeedResult<Json<SeedRegisterResponse>> {
    let request: SeedRegisterRequest = parse(raw)?;
    let valid = request.validate()?;
    let compat = &state.settings.compat;
    let ip = super::auth::client_ip(peer.ip(), &headers, &state.settings.auth.trusted_proxies);
    let now_ms = clock::now_ms();
    if let Err(retry_ms) = state
        .store
        .reserve_login_attempt(
            &[format!("seed-register:{ip}")],
            now_ms,
            secs_to_ms(compat.register_window_seconds),
            compat.register_max_per_ip,
        )
        .await?
    {
        let retry_s = u64::try_from(retry_ms.div_euclid(1000) + 1).unwrap_or(1);
        return Err(ApiError::TooManyRequests(retry_s).into());
    }
    let token = generate_token(AGENT_TOKEN_PREFIX);
    let command = EnrollCommand {
        auth: EnrollAuth::Placed {
            site: compat.site.clone(),
            department: compat.department.clone(),
        },
        machine: ValidEnrollment {
            machine_key: valid.machine_key,
            hostname: valid.hostname,
            os: valid.os,
            os_version: valid.os_version,
            agent_version: SEED_AGENT_VERSION.into(),
            mac_addresses: valid.mac.into_iter().collect(),
        },
        new_machine_id: new_machine_id(),
        credential_hash: TokenHash::of(&token),
        now_ms,
    };
    let enrolled = match state.store.enroll(&command).await? {
        Ok(enrolled) => enrolled,
        Err(EnrollRefusal::MachineRetired) => {
            return Err(ApiError::Forbidden(
                "this machine was retired by an operator and cannot register again",
            )
            .into());
        }
        Err(EnrollRefusal::UnknownSite) => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "compat.site '{}' no longer exists; create it again or change compat.site",
                compat.site
            ))
            .into());
        }
        Err(EnrollRefusal::InvalidToken) => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "a placed enrolment was refused for its token"
            ))
            .into());
        }
    };
    tracing::info!(
        machine_id = %enrolled.machine_id,
        hostname = %crate::telemetry::untrusted(&command.machine.hostname),
        re_enrolled = enrolled.re_enrolled,
        "original GreenOps agent registered"
    );
    Ok(Json(SeedRegisterResponse {
        machine_id: enrolled.machine_id,
        token,
        message: if enrolled.re_enrolled {
            "machine registered again; the previous token no longer works".into()
        } else {
            "machine registered".into()
        },
    }))
}

/// One heartbeat of either body generation, answered 200 only once it is committed. The
/// answer's `command` is always null.
async fn heartbeat(
    State(state): State<AppState>,
    headers: HeaderMap,
    raw: Result<ApiBytes, ApiError>,
) -> SeedResult<Json<SeedHeartbeatResponse>> {
    let Some(token) = bearer(&headers) else {
        return Err(ApiError::Unauthorized("missing agent token (Authorization: Bearer)").into());
    };
    let Some(machine_id) = state
        .credentials
        .machine_for(state.store.as_ref(), token)
        .await?
    else {
        return Err(ApiError::Unauthorized("unknown or revoked agent token").into());
    };
    let received_at_ms = clock::now_ms();
    let valid = match parse::<SeedHeartbeat>(raw).and_then(|b| Ok(b.validate()?)) {
        Ok(valid) => valid,
        Err(e) => {
            state.metrics.count_heartbeats("rejected", 1);
            return Err(e);
        }
    };
    let hb = ValidHeartbeat {
        // Given by the planner: the machine's next seq.
        seq: 0,
        sent_at_ms: valid.sent_at_ms.unwrap_or(received_at_ms),
        idle_ms: valid.idle_ms,
        session: Session::Unknown,
        cpu_usage_ratio: valid.cpu_usage_ratio,
        memory_usage_ratio: valid.memory_usage_ratio,
        uptime_seconds: valid.uptime_seconds,
        idle_source: Some(IdleSourceKind::SeedLegacy),
    };
    let job = HeartbeatJob {
        machine_id,
        credential: TokenHash::of(token),
        received_at_ms,
        heartbeats: vec![Candidate {
            seq: None,
            assign_seq: true,
            heartbeat: Ok(hb),
        }],
    };
    let outcome = match state.ingest.submit(job).await? {
        JobOutcome::Committed(mut outcomes) => outcomes.pop(),
        JobOutcome::UnknownMachine => None,
    };
    match outcome {
        Some(HeartbeatOutcome::Accepted | HeartbeatOutcome::Duplicate) => {
            state.metrics.count_heartbeats("accepted", 1);
        }
        Some(HeartbeatOutcome::Rejected(_, e)) => {
            state.metrics.count_heartbeats("rejected", 1);
            return Err(ApiError::Invalid(e).into());
        }
        None => return Err(ApiError::Unauthorized("unknown or revoked agent token").into()),
    }
    let settings = state.accounting.get();
    let status = accounting::status(
        Some(LastReport {
            received_at_ms,
            idle_ms: hb.idle_ms,
            session: hb.session,
        }),
        clock::now_ms(),
        secs_to_ms(settings.offline_after_seconds),
        secs_to_ms(settings.idle_threshold_seconds),
    );
    Ok(Json(SeedHeartbeatResponse::ok(match status {
        Status::Active | Status::Unknown => SeedMachineStatus::Online,
        Status::Idle => SeedMachineStatus::Idle,
        Status::Offline => SeedMachineStatus::Offline,
    })))
}

/// Nothing to do, ever: this collector never tells an original agent to sleep or shut down.
async fn commands() -> Json<SeedCommandsResponse> {
    Json(SeedCommandsResponse::default())
}
