//! Agent-facing API: enrolment and heartbeats (DESIGN §3).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use greenops_protocol::{
    BodyError, EnrollRequest, EnrollResponse, HeartbeatBatch, HeartbeatError, HeartbeatResponse,
    HeartbeatResult, HeartbeatStatus, MAX_BATCH_HEARTBEATS, parse_heartbeat_body,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiBytes;
use super::{ApiError, ApiJson, AppState, Result, bearer};
use crate::clock;
use crate::secrets::{AGENT_TOKEN_PREFIX, TokenHash, generate_token, new_machine_id};
use crate::store::ingest::{Candidate, HeartbeatOutcome};
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
        Err(EnrollRefusal::UnknownSite) => {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "the enrolment's site does not exist"
            )));
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
/// A 200 means every accepted or duplicate heartbeat listed is committed; each heartbeat has
/// its own result, so one bad heartbeat never refuses its neighbours. A request whose every
/// heartbeat is rejected answers 422 (the agent drops them: they can never be accepted).
#[utoipa::path(post, path = "/api/v1/heartbeats", tag = "agents", operation_id = "send_heartbeats",
    request_body(content = HeartbeatBatch, description = "a batch, or a single heartbeat object"),
    responses((status = 200, description = "one result per heartbeat", body = HeartbeatResponse),
        (status = 401, description = "unknown or revoked agent token"),
        (status = 413, description = "body over 1 MiB or more than 1000 heartbeats"),
        (status = 422, description = "every heartbeat was rejected (named in `fields`)"),
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
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => {
            state.metrics.count_heartbeats("rejected", 1);
            return Err(e);
        }
    };
    let positions: Vec<(usize, bool, Option<u64>)> = parsed
        .iter()
        .map(|p| (p.index, p.in_batch, p.seq))
        .collect();
    let job = HeartbeatJob {
        machine_id,
        credential: TokenHash::of(token),
        received_at_ms,
        heartbeats: parsed
            .into_iter()
            .map(|p| Candidate {
                seq: p.seq,
                assign_seq: false,
                heartbeat: p.heartbeat,
            })
            .collect(),
    };
    let outcomes = match state.ingest.submit(job).await? {
        JobOutcome::Committed(outcomes) => outcomes,
        JobOutcome::UnknownMachine => {
            return Err(ApiError::Unauthorized(
                "unknown or revoked agent credential",
            ));
        }
    };
    let results: Vec<HeartbeatResult> = positions
        .into_iter()
        .zip(outcomes)
        .map(|((index, in_batch, seq), outcome)| {
            let (status, error) = match outcome {
                HeartbeatOutcome::Accepted => (HeartbeatStatus::Accepted, None),
                HeartbeatOutcome::Duplicate => (HeartbeatStatus::Duplicate, None),
                HeartbeatOutcome::Rejected(why, e) => {
                    // The planner names fields of one heartbeat; in a batch they are nested.
                    let field = if in_batch && !e.field.starts_with("heartbeats[") {
                        format!("heartbeats[{index}].{}", e.field)
                    } else {
                        e.field
                    };
                    let error = HeartbeatError {
                        code: why.code().into(),
                        field,
                        message: e.message,
                    };
                    (HeartbeatStatus::Rejected, Some(error))
                }
            };
            HeartbeatResult {
                index,
                seq,
                status,
                error,
            }
        })
        .collect();
    let response = HeartbeatResponse::from_results(results);
    for (result, n) in [
        ("accepted", response.accepted),
        ("duplicate", response.duplicates),
        ("rejected", response.rejected),
    ] {
        state.metrics.count_heartbeats(result, n);
    }
    if response.rejected > 0 && response.rejected == response.results.len() {
        // Nothing in the request can ever be accepted: the agent drops it.
        let fields = response
            .results
            .iter()
            .filter_map(|r| r.error.as_ref())
            .map(|e| (e.field.clone(), e.message.clone()))
            .collect();
        let all_ahead = response
            .results
            .iter()
            .all(|r| r.error.as_ref().is_some_and(|e| e.code == "clock_ahead"));
        return Err(ApiError::Rejected {
            code: if all_ahead {
                "clock_ahead"
            } else {
                "invalid_field"
            },
            message: if response.results.len() == 1 {
                let e = response.results[0].error.as_ref();
                e.map(|e| format!("{} {}", e.field, e.message))
                    .unwrap_or_default()
            } else {
                "every heartbeat of the batch was rejected".into()
            },
            fields,
        });
    }
    Ok(Json(response))
}
