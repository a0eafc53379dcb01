//! Sites (currency, price per kWh, grid carbon intensity, time zone) and power profiles (idle
//! and active watts): list for everyone, create / change / delete for admins.
//!
//! A change applies to time accounted after it: every heartbeat stores the increments it
//! caused, so history and totals are never rewritten.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rust_decimal::Decimal;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Operator;
use super::{ApiError, AppState, DecimalInput, Page, audit, body, invalid, parse_json};
use crate::store::admin::{PowerProfile, PowerProfileFields, Site, SiteFields};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_sites, create_site))
        .routes(routes!(update_site, delete_site))
        .routes(routes!(list_profiles, create_profile))
        .routes(routes!(update_profile, delete_profile))
}

/// Site fields; on PATCH every field is optional.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteInput {
    name: Option<String>,
    /// ISO 4217 code (three capital letters).
    currency: Option<String>,
    /// Decimal string or number, 0 to 1000.
    #[schema(value_type = Option<String>)]
    price_per_kwh: Option<DecimalInput>,
    /// Grams CO₂e per kWh, 0 to 5000.
    #[schema(value_type = Option<String>)]
    carbon_intensity_g_per_kwh: Option<DecimalInput>,
    /// IANA time zone name, e.g. `Europe/Paris` (default `UTC`).
    timezone: Option<String>,
}

fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    greenops_protocol::check_text(field, name, 1, 64)?;
    if name.trim() != name {
        return Err(invalid(field, "must not start or end with spaces"));
    }
    Ok(())
}

fn check_range(field: &str, value: Decimal, max: i64) -> Result<Decimal, ApiError> {
    if value.is_sign_negative() || value > Decimal::from(max) {
        return Err(invalid(field, &format!("must be from 0 to {max}")));
    }
    if value.scale() > 12 {
        return Err(invalid(field, "must have at most 12 decimal places"));
    }
    Ok(value.normalize())
}

/// A field of a create or PATCH: the given value, else the current one (PATCH), else the
/// default; with neither, the field is required.
fn field<T>(
    name: &str,
    given: Option<T>,
    current: Option<T>,
    default: Option<T>,
) -> Result<T, ApiError> {
    given
        .or(current)
        .or(default)
        .ok_or_else(|| invalid(name, "is required"))
}

impl SiteInput {
    /// The complete fields: this input over `base` (or required when there is no base).
    fn apply(self, base: Option<&Site>) -> Result<SiteFields, ApiError> {
        let name = field("name", self.name, base.map(|b| b.name.clone()), None)?;
        check_name("name", &name)?;
        let currency = field(
            "currency",
            self.currency,
            base.map(|b| b.currency.clone()),
            Some("USD".to_string()),
        )?;
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid(
                "currency",
                "must be an ISO 4217 code of three capital letters, e.g. EUR",
            ));
        }
        let price = field(
            "price_per_kwh",
            self.price_per_kwh.map(|d| d.0),
            base.map(|b| b.price_per_kwh),
            None,
        )?;
        let carbon = field(
            "carbon_intensity_g_per_kwh",
            self.carbon_intensity_g_per_kwh.map(|d| d.0),
            base.map(|b| b.carbon_intensity_g_per_kwh),
            None,
        )?;
        let timezone = field(
            "timezone",
            self.timezone,
            base.map(|b| b.timezone.clone()),
            Some("UTC".to_string()),
        )?;
        let tz_ok = (1..=64).contains(&timezone.len())
            && timezone
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_+-".contains(&b))
            && !timezone.starts_with('/')
            && !timezone.ends_with('/');
        if !tz_ok {
            return Err(invalid(
                "timezone",
                "must be an IANA time zone name such as UTC or Europe/Paris",
            ));
        }
        Ok(SiteFields {
            name,
            currency,
            price_per_kwh: check_range("price_per_kwh", price, 1000)?,
            carbon_intensity_g_per_kwh: check_range("carbon_intensity_g_per_kwh", carbon, 5000)?,
            timezone,
        })
    }
}

/// All sites.
#[utoipa::path(get, path = "/api/v1/sites", tag = "sites",
    responses((status = 200, body = Page<Site>)), security(("session" = []), ("bearer" = [])))]
async fn list_sites(
    State(state): State<AppState>,
    _operator: Operator,
) -> Result<Json<Page<Site>>, ApiError> {
    Ok(Json(Page::all(state.store.list_sites().await?)))
}

/// Creates a site (admins only).
#[utoipa::path(post, path = "/api/v1/sites", tag = "sites", request_body = SiteInput,
    responses((status = 201, body = Site), (status = 403, description = "viewers cannot change anything"),
        (status = 409, description = "name taken"), (status = 422, description = "invalid field")),
    security(("session" = []), ("bearer" = [])))]
async fn create_site(
    State(state): State<AppState>,
    operator: Operator,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Site>), ApiError> {
    operator.require_admin()?;
    let input: SiteInput = parse_json(&body(raw)?)?;
    let fields = input.apply(None)?;
    let site = state
        .store
        .create_site(&fields, crate::clock::now_ms())
        .await?;
    audit(
        &state,
        &operator.username,
        "site_created",
        &site.name,
        serde_json::json!({"after": site}),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(site)))
}

/// Changes a site (admins only); only time accounted afterwards uses the new values.
#[utoipa::path(patch, path = "/api/v1/sites/{id}", tag = "sites", request_body = SiteInput,
    params(("id" = i64, Path, description = "site id")),
    responses((status = 200, body = Site), (status = 403, description = "viewers cannot change anything"),
        (status = 404, description = "no such site"), (status = 409, description = "name taken"),
        (status = 422, description = "invalid field")),
    security(("session" = []), ("bearer" = [])))]
async fn update_site(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<i64>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Site>, ApiError> {
    operator.require_admin()?;
    let input: SiteInput = parse_json(&body(raw)?)?;
    let sites = state.store.list_sites().await?;
    let current = sites
        .iter()
        .find(|s| s.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("site {id} not found")))?;
    let fields = input.apply(Some(current))?;
    let (before, after) = state
        .store
        .update_site(id, &fields)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("site {id} not found")))?;
    state.listing.invalidate();
    audit(
        &state,
        &operator.username,
        "site_updated",
        &after.name,
        serde_json::json!({"before": before, "after": after}),
    )
    .await?;
    Ok(Json(after))
}

/// Deletes an unused site (admins only); 409 while machines or enrollment tokens use it.
#[utoipa::path(delete, path = "/api/v1/sites/{id}", tag = "sites",
    params(("id" = i64, Path, description = "site id")),
    responses((status = 204, description = "deleted"), (status = 403, description = "viewers cannot change anything"),
        (status = 404, description = "no such site"), (status = 409, description = "still in use")),
    security(("session" = []), ("bearer" = [])))]
async fn delete_site(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    operator.require_admin()?;
    let site = state
        .store
        .delete_site(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("site {id} not found")))?;
    state.listing.invalidate();
    audit(
        &state,
        &operator.username,
        "site_deleted",
        &site.name,
        serde_json::json!({"before": site}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Power profile fields; on PATCH every field is optional.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PowerProfileInput {
    name: Option<String>,
    /// Watts while idle, 0 to 10000.
    #[schema(value_type = Option<String>)]
    idle_watts: Option<DecimalInput>,
    /// Watts while in use, 0 to 10000.
    #[schema(value_type = Option<String>)]
    active_watts: Option<DecimalInput>,
}

impl PowerProfileInput {
    fn apply(self, base: Option<&PowerProfile>) -> Result<PowerProfileFields, ApiError> {
        let name = field("name", self.name, base.map(|b| b.name.clone()), None)?;
        check_name("name", &name)?;
        let idle = field(
            "idle_watts",
            self.idle_watts.map(|d| d.0),
            base.map(|b| b.idle_watts),
            None,
        )?;
        let active = field(
            "active_watts",
            self.active_watts.map(|d| d.0),
            base.map(|b| b.active_watts),
            None,
        )?;
        Ok(PowerProfileFields {
            name,
            idle_watts: check_range("idle_watts", idle, 10_000)?,
            active_watts: check_range("active_watts", active, 10_000)?,
        })
    }
}

/// All power profiles.
#[utoipa::path(get, path = "/api/v1/power-profiles", tag = "power profiles",
    responses((status = 200, body = Page<PowerProfile>)), security(("session" = []), ("bearer" = [])))]
async fn list_profiles(
    State(state): State<AppState>,
    _operator: Operator,
) -> Result<Json<Page<PowerProfile>>, ApiError> {
    Ok(Json(Page::all(state.store.list_power_profiles().await?)))
}

/// Creates a power profile (admins only).
#[utoipa::path(post, path = "/api/v1/power-profiles", tag = "power profiles",
    request_body = PowerProfileInput,
    responses((status = 201, body = PowerProfile), (status = 403, description = "viewers cannot change anything"),
        (status = 409, description = "name taken"), (status = 422, description = "invalid field")),
    security(("session" = []), ("bearer" = [])))]
async fn create_profile(
    State(state): State<AppState>,
    operator: Operator,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<PowerProfile>), ApiError> {
    operator.require_admin()?;
    let input: PowerProfileInput = parse_json(&body(raw)?)?;
    let fields = input.apply(None)?;
    let profile = state
        .store
        .create_power_profile(&fields, crate::clock::now_ms())
        .await?;
    audit(
        &state,
        &operator.username,
        "power_profile_created",
        &profile.name,
        serde_json::json!({"after": profile}),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(profile)))
}

/// Changes a power profile (admins only); only time accounted afterwards uses the new watts.
#[utoipa::path(patch, path = "/api/v1/power-profiles/{id}", tag = "power profiles",
    request_body = PowerProfileInput, params(("id" = i64, Path, description = "power profile id")),
    responses((status = 200, body = PowerProfile), (status = 403, description = "viewers cannot change anything"),
        (status = 404, description = "no such profile"), (status = 409, description = "name taken"),
        (status = 422, description = "invalid field")),
    security(("session" = []), ("bearer" = [])))]
async fn update_profile(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<i64>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<PowerProfile>, ApiError> {
    operator.require_admin()?;
    let input: PowerProfileInput = parse_json(&body(raw)?)?;
    let profiles = state.store.list_power_profiles().await?;
    let current = profiles
        .iter()
        .find(|p| p.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("power profile {id} not found")))?;
    let fields = input.apply(Some(current))?;
    let (before, after) = state
        .store
        .update_power_profile(id, &fields)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("power profile {id} not found")))?;
    state.listing.invalidate();
    audit(
        &state,
        &operator.username,
        "power_profile_updated",
        &after.name,
        serde_json::json!({"before": before, "after": after}),
    )
    .await?;
    Ok(Json(after))
}

/// Deletes an unused power profile (admins only).
#[utoipa::path(delete, path = "/api/v1/power-profiles/{id}", tag = "power profiles",
    params(("id" = i64, Path, description = "power profile id")),
    responses((status = 204, description = "deleted"), (status = 403, description = "viewers cannot change anything"),
        (status = 404, description = "no such profile"), (status = 409, description = "still in use")),
    security(("session" = []), ("bearer" = [])))]
async fn delete_profile(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    operator.require_admin()?;
    let profile = state
        .store
        .delete_power_profile(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("power profile {id} not found")))?;
    state.listing.invalidate();
    audit(
        &state,
        &operator.username,
        "power_profile_deleted",
        &profile.name,
        serde_json::json!({"before": profile}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
