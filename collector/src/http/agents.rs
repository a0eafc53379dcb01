//! Agent-facing API: enrolment and heartbeats (DESIGN §3).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use greenops_protocol::{
    BodyError, EnrollRequest, EnrollResponse, HeartbeatBatch, HeartbeatResponse, HeartbeatResult,
    HeartbeatStatus, MAX_BATCH_HEARTBEATS, ValidationError, parse_heartbeat_body,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiBytes;
use super::{ApiError, ApiJson, AppState, Result, bearer};
use crate::clock;
use crate::secrets::{AGENT_TOKEN_PREFIX, TokenHash, generate_token, new_machine_id};
use crate::settings::secs_to_ms;
use crate::store::{EnrollAuth, EnrollCommand, EnrollRefusal, HeartbeatJob, JobOutcome};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(enroll))
        .routes(routes!(heartbeats))
}

/// Enrols a machine (or rotates the credential of a known `machine_key`).
#[utoipa::path(post, path = "/api/v1/agents/enroll", tag = "agents", operation_id = "enroll_agent", request_body = EnrollRequest,
    responses((status = 201, body = EnrollResponse), (status = 401, description = "missing or invalid enrollment token"),
        (status = 403, description = "machine retired"), (status = 422, description = "invalid field")))]
async fn enroll(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<EnrollRequest>,
) -> Result<(StatusCode, Json<EnrollResponse>)> {
    let machine = request.validate()?;
    let auth = match request.enrollment_token.as_deref() {
        Some(token) if !token.is_empty() => EnrollAuth::Token(TokenHash::of(token)),
        _ if state.settings.enrollment.open => EnrollAuth::Open,
        _ => return Err(ApiError::Unauthorized("an enrollment token is required")),
    };
    let agent_token = generate_token(AGENT_TOKEN_PREFIX);
    let command = EnrollCommand {
        auth,
        machine,
        new_machine_id: new_machine_id(),
        credential_hash: TokenHash::of(&agent_token),
        now_ms: clock::now_ms(),
    };
    let enrolled = match state.store.enroll(&command).await? {
        Ok(enrolled) => enrolled,
        Err(EnrollRefusal::InvalidToken) => {
            return Err(ApiError::Unauthorized(
                "the enrollment token is unknown, expired, revoked or used up",
            ));
        }
        Err(EnrollRefusal::MachineRetired) => {
            return Err(ApiError::Forbidden(
                "this machine was retired by an operator and cannot re-enrol",
            ));
        }
    };
    tracing::info!(
        machine_id = %enrolled.machine_id,
        hostname = %crate::telemetry::untrusted(&command.machine.hostname),
        re_enrolled = enrolled.re_enrolled,
        "agent enrolled"
    );
    let accounting = state.accounting.get();
    Ok((
        StatusCode::CREATED,
        Json(EnrollResponse {
            machine_id: enrolled.machine_id,
            agent_token,
            heartbeat_interval_seconds: accounting.heartbeat_interval_seconds,
            idle_threshold_seconds: accounting.idle_threshold_seconds,
        }),
    ))
}

/// Delivers one heartbeat or a batch (`{"heartbeats": [...]}`, ≤ 1000, in `seq` order).
/// A 200 means every heartbeat in it is committed.
#[utoipa::path(post, path = "/api/v1/heartbeats", tag = "agents", operation_id = "send_heartbeats",
    request_body(content = HeartbeatBatch, description = "a batch, or a single heartbeat object"),
    responses((status = 200, body = HeartbeatResponse), (status = 401, description = "unknown or revoked agent token"),
        (status = 413, description = "body over 1 MiB"), (status = 422, description = "invalid heartbeat"),
        (status = 503, description = "store unavailable; retry after Retry-After")),
    security(("bearer" = [])))]
async fn heartbeats(
    State(state): State<AppState>,
    headers: HeaderMap,
    raw: std::result::Result<ApiBytes, ApiError>,
) -> Result<Json<HeartbeatResponse>> {
    let Some(token) = bearer(&headers) else {
        return Err(ApiError::Unauthorized(
            "missing agent credential (Authorization: Bearer)",
        ));
    };
    let Some(machine_id) = state
        .credentials
        .machine_for(state.store.as_ref(), token)
        .await?
    else {
        return Err(ApiError::Unauthorized(
            "unknown or revoked agent credential",
        ));
    };
    let received_at_ms = clock::now_ms();
    let parsed = raw.and_then(|ApiBytes(bytes)| {
        parse_heartbeat_body(&bytes).map_err(|e| match e {
            BodyError::Malformed(m) => ApiError::Malformed(m),
            BodyError::Invalid(v) => ApiError::Invalid(v),
            BodyError::TooMany(n) => ApiError::PayloadTooLarge(format!(
                "a batch holds at most {MAX_BATCH_HEARTBEATS} heartbeats, got {n}"
            )),
        })
    });
    let heartbeats = match parsed {
        Ok(h) => h,
        Err(e) => {
            state.metrics.count_heartbeats("rejected", 1);
            return Err(e);
        }
    };
    let horizon = received_at_ms + secs_to_ms(state.accounting.get().max_clock_skew_seconds);
    if let Some(i) = heartbeats.iter().position(|h| h.sent_at_ms > horizon) {
        state.metrics.count_heartbeats("rejected", heartbeats.len());
        let field = if heartbeats.len() == 1 {
            "sent_at".to_string()
        } else {
            format!("heartbeats[{i}].sent_at")
        };
        return Err(ValidationError::new(
            field,
            format!(
                "is more than {} s ahead of the server clock; fix the agent's clock",
                state.accounting.get().max_clock_skew_seconds
            ),
        )
        .into());
    }
    let seqs: Vec<u64> = heartbeats.iter().map(|h| h.seq).collect();
    let job = HeartbeatJob {
        machine_id,
        received_at_ms,
        heartbeats,
    };
    let flags = match state.ingest.submit(job).await? {
        JobOutcome::Committed(flags) => flags,
        JobOutcome::UnknownMachine => {
            return Err(ApiError::Unauthorized(
                "unknown or revoked agent credential",
            ));
        }
    };
    let results: Vec<HeartbeatResult> = seqs
        .into_iter()
        .zip(flags)
        .map(|(seq, accepted)| HeartbeatResult {
            seq,
            status: if accepted {
                HeartbeatStatus::Accepted
            } else {
                HeartbeatStatus::Duplicate
            },
        })
        .collect();
    let response = HeartbeatResponse::from_results(results);
    state
        .metrics
        .count_heartbeats("accepted", response.accepted);
    state
        .metrics
        .count_heartbeats("duplicate", response.duplicates);
    Ok(Json(response))
}
