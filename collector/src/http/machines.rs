//! `GET /api/v1/machines` (server-side filters, sorting, paging) and
//! `DELETE /api/v1/machines/{id}` (retire: revoke the credential, keep history and totals).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use greenops_protocol::ValidationError;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::auth::Operator;
use super::{ApiError, AppState};
use crate::accounting::Status;
use crate::settings::secs_to_ms;
use crate::store::{AuditEntry, MachineQuery, MachineRow, MachineSort};

/// Largest page.
pub const MAX_PER_PAGE: i64 = 500;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/machines", get(list))
        .route("/api/v1/machines/{id}", delete(retire))
}

#[derive(Debug, Deserialize)]
struct ListParams {
    status: Option<String>,
    site: Option<String>,
    department: Option<String>,
    q: Option<String>,
    sort: Option<String>,
    order: Option<String>,
    page: Option<String>,
    per_page: Option<String>,
}

#[derive(Debug, Serialize)]
struct MachineView {
    #[serde(flatten)]
    row: MachineRow,
    last_seen: Option<String>,
}

#[derive(Debug, Serialize)]
struct Page<T> {
    items: Vec<T>,
    total: i64,
    page: i64,
    per_page: i64,
}

fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::Invalid(ValidationError::new(field, message))
}

fn number(field: &str, value: Option<&str>, default: i64, max: i64) -> Result<i64, ApiError> {
    match value {
        None | Some("") => Ok(default),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| invalid(field, &format!("must be a whole number from 1 to {max}"))),
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

async fn list(
    State(state): State<AppState>,
    _operator: Operator,
    Query(params): Query<ListParams>,
) -> Result<Json<Page<MachineView>>, ApiError> {
    let status = match params.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            Status::ALL
                .into_iter()
                .find(|st| st.as_str() == s)
                .ok_or_else(|| invalid("status", "must be active, idle, offline or unknown"))?,
        ),
    };
    let sort = match params.sort.as_deref() {
        None | Some("") => MachineSort::Hostname,
        Some(s) => MachineSort::parse(s).ok_or_else(|| {
            invalid(
                "sort",
                "must be hostname, site, department, status, last_seen, input_idle, idle_time or idle_energy",
            )
        })?,
    };
    let descending = match params.order.as_deref() {
        None | Some("") | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return Err(invalid("order", "must be asc or desc")),
    };
    let page = number("page", params.page.as_deref(), 1, 1_000_000)?;
    let per_page = number("per_page", params.per_page.as_deref(), 50, MAX_PER_PAGE)?;
    let accounting = &state.settings.accounting;
    let query = MachineQuery {
        status,
        site: non_empty(params.site),
        department: params.department,
        q: non_empty(params.q).map(|q| q.chars().take(100).collect()),
        sort,
        descending,
        page,
        per_page,
        now_ms: crate::clock::now_ms(),
        offline_after_ms: secs_to_ms(accounting.offline_after_seconds),
        idle_threshold_ms: secs_to_ms(accounting.idle_threshold_seconds),
    };
    let (rows, total) = state.store.list_machines(&query).await?;
    let items = rows
        .into_iter()
        .map(|row| MachineView {
            last_seen: row.last_seen_ms.and_then(|ms| {
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                    .ok()?
                    .format(&Rfc3339)
                    .ok()
            }),
            row,
        })
        .collect();
    Ok(Json(Page {
        items,
        total,
        page,
        per_page,
    }))
}

async fn retire(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    operator.require_admin()?;
    let now = crate::clock::now_ms();
    if !state.store.retire_machine(&id, now).await? {
        return Err(ApiError::NotFound(format!("machine {id} not found")));
    }
    state
        .store
        .audit(&AuditEntry {
            at_ms: now,
            actor: operator.username.clone(),
            action: "machine_retired".into(),
            target: id.clone(),
            details: "{}".into(),
        })
        .await?;
    tracing::info!(machine_id = %id, by = %operator.username, "machine retired");
    Ok(StatusCode::NO_CONTENT)
}
