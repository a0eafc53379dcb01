//! Machines: the list (server-side filters, sorting, paging), detail, history for charts,
//! placement changes (site, department, power profile) and retirement.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::views::MachineView;
use super::{
    Admin, ApiError, ApiJson, ApiPath, ApiQuery, AppState, Page, Result, Viewer, invalid, number,
    rfc3339, schema, timestamp_param,
};
use crate::accounting::Status;
use crate::operations::{self, reports};
use crate::settings::secs_to_ms;
use crate::store::admin::PlacementPatch;
use crate::store::{MachineQuery, MachineRow, MachineSnapshot, MachineSort};

/// Largest page.
pub const MAX_PER_PAGE: i64 = 500;
/// Most points one history answer may have.
pub const MAX_HISTORY_POINTS: i64 = 2000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(detail, update, retire))
        .routes(routes!(history))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// `active`, `idle`, `offline` or `unknown`.
    #[param(schema_with = schema::param::status)]
    status: Option<String>,
    /// Site name.
    #[param(schema_with = schema::param::text)]
    site: Option<String>,
    #[param(schema_with = schema::param::text)]
    department: Option<String>,
    /// Case-insensitive part of the hostname (the first 100 characters count).
    #[param(schema_with = schema::param::text)]
    q: Option<String>,
    /// hostname, site, department, status, last_seen, input_idle, idle_time or idle_energy.
    #[param(schema_with = schema::param::sort)]
    sort: Option<String>,
    /// `asc` (default) or `desc`.
    #[param(schema_with = schema::param::order)]
    order: Option<String>,
    /// From 1.
    #[param(schema_with = schema::param::page)]
    page: Option<String>,
    /// 1 to 500, default 50.
    #[param(schema_with = schema::param::per_page)]
    per_page: Option<String>,
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// Every live machine, with status derived now under the accounting settings in force.
pub(super) fn base_query(state: &AppState) -> MachineQuery {
    let accounting = state.accounting.get();
    MachineQuery::all(
        crate::clock::now_ms(),
        secs_to_ms(accounting.offline_after_seconds),
        secs_to_ms(accounting.idle_threshold_seconds),
    )
}

/// Lists live machines.
#[utoipa::path(get, path = "/api/v1/machines", tag = "machines", operation_id = "list_machines", params(ListParams),
    responses((status = 200, body = Page<MachineView>), (status = 422, description = "invalid parameter")),
    security(("session" = []), ("bearer" = [])))]
async fn list(
    State(state): State<AppState>,
    _viewer: Viewer,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Page<MachineView>>> {
    let status = match params.status.as_deref() {
        None => None,
        Some(s) => Some(
            Status::ALL
                .into_iter()
                .find(|st| st.as_str() == s)
                .ok_or_else(|| invalid("status", "must be active, idle, offline or unknown"))?,
        ),
    };
    let sort = match params.sort.as_deref() {
        None => MachineSort::Hostname,
        Some(s) => MachineSort::parse(s).ok_or_else(|| {
            invalid(
                "sort",
                "must be hostname, site, department, status, last_seen, input_idle, idle_time or idle_energy",
            )
        })?,
    };
    let descending = match params.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return Err(invalid("order", "must be asc or desc")),
    };
    let page = number("page", params.page.as_deref(), 1, 1_000_000)?;
    let per_page = number("per_page", params.per_page.as_deref(), 50, MAX_PER_PAGE)?;
    let query = MachineQuery {
        status,
        site: non_empty(params.site),
        department: params.department,
        q: non_empty(params.q).map(|q| q.chars().take(100).collect()),
        sort,
        descending,
        page,
        per_page,
        ..base_query(&state)
    };
    let (rows, total) = state.listing.list(&state.store, &query).await?;
    Ok(Json(Page {
        items: rows.into_iter().map(MachineView::from).collect(),
        total,
        page,
        per_page,
    }))
}

/// A placement of a machine, from when.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlacementView {
    site: String,
    department: String,
    power_profile: String,
    /// RFC 3339; `null`: from the beginning.
    effective_from: Option<String>,
}

/// One machine with its totals per currency, what it last reported and where it was placed.
#[derive(Debug, Serialize, ToSchema)]
pub struct MachineDetail {
    #[serde(flatten)]
    machine: MachineView,
    /// CPU use (0..1) in the last report.
    cpu_usage_ratio: Option<f64>,
    /// Memory use (0..1) in the last report.
    memory_usage_ratio: Option<f64>,
    /// Seconds since boot in the last report.
    uptime_seconds: Option<u64>,
    /// How the agent measured idle time in its last report (`none`: no source worked, so
    /// idle time is unknown); `null` when the agent did not say.
    idle_source: Option<greenops_protocol::IdleSourceKind>,
    /// Every placement, oldest first; the increments of each stretch of time stay with the
    /// placement they were incurred in.
    placements: Vec<PlacementView>,
}

async fn live_machine(state: &AppState, id: &str) -> Result<(MachineRow, MachineSnapshot)> {
    let query = MachineQuery {
        id: Some(id.to_string()),
        ..base_query(state)
    };
    let fleet = state.listing.fleet(&state.store).await?;
    let (mut rows, _) = crate::listing::page_of(fleet.all(), &query);
    let snapshot = fleet.all().find(|m| m.id == id && !m.retired).cloned();
    match (rows.pop(), snapshot) {
        (Some(row), Some(snapshot)) => Ok((row, snapshot)),
        _ => Err(ApiError::NotFound(format!("machine {id} not found"))),
    }
}

/// One live machine.
#[utoipa::path(get, path = "/api/v1/machines/{id}", tag = "machines", operation_id = "machine_detail",
    params(("id" = String, Path, description = "machine id")),
    responses((status = 200, description = "the machine", body = MachineDetail),
        (status = 401, description = "not signed in"),
        (status = 404, description = "no such live machine")),
    security(("session" = []), ("bearer" = [])))]
async fn detail(
    State(state): State<AppState>,
    _viewer: Viewer,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<MachineDetail>> {
    machine_detail(&state, &id).await
}

async fn machine_detail(state: &AppState, id: &str) -> Result<Json<MachineDetail>> {
    let (row, snapshot) = live_machine(state, id).await?;
    let placements = state
        .store
        .machine_placements(id)
        .await?
        .into_iter()
        .map(|p| PlacementView {
            site: p.site,
            department: p.department,
            power_profile: p.power_profile,
            effective_from: (p.effective_from_ms != i64::MIN)
                .then(|| rfc3339(p.effective_from_ms))
                .flatten(),
        })
        .collect();
    Ok(Json(MachineDetail {
        machine: row.into(),
        cpu_usage_ratio: snapshot.cpu_usage_ratio,
        memory_usage_ratio: snapshot.memory_usage_ratio,
        uptime_seconds: snapshot.uptime_seconds,
        idle_source: snapshot.idle_source,
        placements,
    }))
}

/// New placement of a machine; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MachinePatch {
    /// Site name.
    #[schema(schema_with = schema::field::name_ref_patch)]
    site: Option<String>,
    #[schema(schema_with = schema::field::department_patch)]
    department: Option<String>,
    /// Power profile name.
    #[schema(schema_with = schema::field::name_ref_patch)]
    power_profile: Option<String>,
    /// When the move applies (RFC 3339); absent or `null`: now. Never in the past.
    #[schema(schema_with = schema::field::effective_from)]
    effective_from: Option<String>,
}

/// Moves a machine to another site, department or power profile (admins only), from
/// `effective_from` on: earlier time stays where it was incurred.
#[utoipa::path(patch, path = "/api/v1/machines/{id}", tag = "machines", operation_id = "update_machine",
    params(("id" = String, Path, description = "machine id")),
    request_body = MachinePatch,
    responses((status = 200, description = "the machine after the move", body = MachineDetail),
        (status = 401, description = "not signed in"),
        (status = 403, description = "viewers cannot change anything"),
        (status = 404, description = "no such live machine"),
        (status = 409, description = "effective_from in the past"),
        (status = 422, description = "unknown site or power profile")),
    security(("session" = []), ("bearer" = [])))]
async fn update(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<MachinePatch>,
) -> Result<Json<MachineDetail>> {
    let from = super::sites::stated_from(patch.effective_from.as_deref())?;
    let patch = PlacementPatch {
        site: patch.site,
        department: patch.department,
        power_profile: patch.power_profile,
    };
    operations::machines::place(state.ctx(&admin.username), &id, patch, from).await?;
    machine_detail(&state, &id).await
}

/// Retires a machine (admins only): revokes its credential and hides it from lists and
/// `/metrics`, keeping its history.
#[utoipa::path(delete, path = "/api/v1/machines/{id}", tag = "machines", operation_id = "retire_machine",
    params(("id" = String, Path, description = "machine id")),
    responses((status = 204, description = "retired"), (status = 403, description = "viewers cannot change anything"),
        (status = 404, description = "no such live machine")),
    security(("session" = []), ("bearer" = [])))]
async fn retire(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode> {
    operations::machines::retire(state.ctx(&admin.username), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct HistoryParams {
    /// RFC 3339; default `to` minus 24 hours.
    #[param(schema_with = schema::param::timestamp)]
    from: Option<String>,
    /// RFC 3339; default now.
    #[param(schema_with = schema::param::timestamp)]
    to: Option<String>,
    /// Seconds per point: whole hours (3600, 7200, … ); default chosen for about 96 points.
    #[param(schema_with = schema::param::step)]
    step: Option<String>,
}

/// One step of a machine's history. Times are seconds; `unobserved` is the part of the step
/// no heartbeat interval covered (off, asleep or not reporting).
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPoint {
    start: String,
    observed_seconds: f64,
    active_seconds: f64,
    idle_seconds: f64,
    unknown_seconds: f64,
    unobserved_seconds: f64,
    #[schema(value_type = String)]
    energy_joules: Decimal,
    #[schema(value_type = String)]
    idle_energy_joules: Decimal,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct History {
    machine_id: String,
    from: String,
    to: String,
    step_seconds: i64,
    points: Vec<HistoryPoint>,
}

/// Idle, active and unobserved time and energy of one machine per step, from its hourly usage
/// (steps are whole hours from a whole hour; an interval counts in the hour it ends in).
#[utoipa::path(get, path = "/api/v1/machines/{id}/history", tag = "machines", operation_id = "machine_history",
    params(("id" = String, Path, description = "machine id"), HistoryParams),
    responses((status = 200, description = "the machine's history", body = History),
        (status = 401, description = "not signed in"),
        (status = 404, description = "no such live machine"),
        (status = 422, description = "invalid range or step")),
    security(("session" = []), ("bearer" = [])))]
async fn history(
    State(state): State<AppState>,
    _viewer: Viewer,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<HistoryParams>,
) -> Result<Json<History>> {
    live_machine(&state, &id).await?;
    const HOUR: i64 = crate::accounting::rates::HOUR_MS;
    let now = crate::clock::now_ms();
    let to =
        timestamp_param("to", params.to.as_deref())?.unwrap_or(now - now.rem_euclid(HOUR) + HOUR);
    let from = timestamp_param("from", params.from.as_deref())?.unwrap_or(to - 86_400_000);
    if from >= to {
        return Err(invalid("from", "must be before to"));
    }
    // Usage is kept per hour: the window starts on one.
    let from = from - from.rem_euclid(HOUR);
    let span = to - from;
    let step_ms = match params.step.as_deref() {
        None => ((span / 96).max(HOUR) + HOUR - 1) / HOUR * HOUR,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|s| (3600..=31_622_400).contains(s) && s % 3600 == 0)
            .map(|s| s * 1000)
            .ok_or_else(|| {
                invalid(
                    "step",
                    "must be whole hours in seconds (3600, 7200, …) up to 31622400",
                )
            })?,
    };
    let points = (span + step_ms - 1) / step_ms;
    if points > MAX_HISTORY_POINTS {
        return Err(invalid(
            "step",
            &format!("gives {points} points; at most {MAX_HISTORY_POINTS} are allowed"),
        ));
    }
    let buckets = reports::history(state.store.as_ref(), Some(&id), from, to, step_ms).await?;
    let seconds = |ms: i64| ms as f64 / 1000.0;
    let points = buckets
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let start = from + i as i64 * step_ms;
            let length = step_ms.min(to - start);
            HistoryPoint {
                start: rfc3339(start).unwrap_or_default(),
                observed_seconds: seconds(t.observed_ms),
                active_seconds: seconds(t.observed_ms - t.idle_ms - t.unknown_ms),
                idle_seconds: seconds(t.idle_ms),
                unknown_seconds: seconds(t.unknown_ms),
                unobserved_seconds: seconds((length - t.observed_ms).max(0)),
                energy_joules: t.energy_j,
                idle_energy_joules: t.idle_energy_j,
            }
        })
        .collect();
    Ok(Json(History {
        machine_id: id,
        from: rfc3339(from).unwrap_or_default(),
        to: rfc3339(to).unwrap_or_default(),
        step_seconds: step_ms / 1000,
        points,
    }))
}
