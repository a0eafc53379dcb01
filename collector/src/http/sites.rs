//! Sites (currency, price per kWh, grid carbon intensity, time zone) and power profiles (idle
//! and active watts): list for everyone, create / change / delete for admins. Both kinds go
//! through the same generic operations (`operations::catalog`); the handlers here only map
//! JSON in and out.
//!
//! A change applies to time accounted after it: every heartbeat stores the increments it
//! caused, so history and totals are never rewritten.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::views::{PowerProfileView, SiteView};
use super::{Admin, ApiJson, ApiPath, AppState, DecimalInput, Page, Result, Viewer, schema};
use crate::operations::catalog::{self, Kind, PowerProfilePatch, PowerProfiles, SitePatch, Sites};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_sites, create_site))
        .routes(routes!(update_site, delete_site))
        .routes(routes!(list_profiles, create_profile))
        .routes(routes!(update_profile, delete_profile))
}

/// A new site.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSite {
    /// 1 to 64 characters, no surrounding spaces; unique.
    #[schema(schema_with = schema::name)]
    name: String,
    /// Active ISO 4217 code (default `USD`).
    #[schema(schema_with = schema::currency_patch)]
    currency: Option<String>,
    /// Price per kWh, 0 to 1000: a decimal string (at most 12 decimal places) or a whole number.
    #[schema(schema_with = schema::price)]
    price_per_kwh: DecimalInput,
    /// Grams CO₂e per kWh, 0 to 5000.
    #[schema(schema_with = schema::carbon)]
    carbon_intensity_g_per_kwh: DecimalInput,
    /// IANA time zone name, e.g. `Europe/Paris` (default `UTC`).
    #[schema(schema_with = schema::timezone_patch)]
    timezone: Option<String>,
}

/// Changes to a site; absent (or `null`) fields keep their value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteChange {
    #[schema(schema_with = schema::name_patch)]
    name: Option<String>,
    #[schema(schema_with = schema::currency_patch)]
    currency: Option<String>,
    #[schema(schema_with = schema::price_patch)]
    price_per_kwh: Option<DecimalInput>,
    #[schema(schema_with = schema::carbon_patch)]
    carbon_intensity_g_per_kwh: Option<DecimalInput>,
    #[schema(schema_with = schema::timezone_patch)]
    timezone: Option<String>,
}

impl From<NewSite> for SitePatch {
    fn from(i: NewSite) -> Self {
        Self {
            name: Some(i.name),
            currency: i.currency,
            price_per_kwh: Some(i.price_per_kwh.0),
            carbon_intensity_g_per_kwh: Some(i.carbon_intensity_g_per_kwh.0),
            timezone: i.timezone,
        }
    }
}

impl From<SiteChange> for SitePatch {
    fn from(i: SiteChange) -> Self {
        Self {
            name: i.name,
            currency: i.currency,
            price_per_kwh: i.price_per_kwh.map(|d| d.0),
            carbon_intensity_g_per_kwh: i.carbon_intensity_g_per_kwh.map(|d| d.0),
            timezone: i.timezone,
        }
    }
}

/// A new power profile.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPowerProfile {
    /// 1 to 64 characters, no surrounding spaces; unique.
    #[schema(schema_with = schema::name)]
    name: String,
    /// Watts while idle, 0 to 10000.
    #[schema(schema_with = schema::watts)]
    idle_watts: DecimalInput,
    /// Watts while in use, 0 to 10000.
    #[schema(schema_with = schema::watts)]
    active_watts: DecimalInput,
}

/// Changes to a power profile; absent (or `null`) fields keep their value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PowerProfileChange {
    #[schema(schema_with = schema::name_patch)]
    name: Option<String>,
    #[schema(schema_with = schema::watts_patch)]
    idle_watts: Option<DecimalInput>,
    #[schema(schema_with = schema::watts_patch)]
    active_watts: Option<DecimalInput>,
}

impl From<NewPowerProfile> for PowerProfilePatch {
    fn from(i: NewPowerProfile) -> Self {
        Self {
            name: Some(i.name),
            idle_watts: Some(i.idle_watts.0),
            active_watts: Some(i.active_watts.0),
        }
    }
}

impl From<PowerProfileChange> for PowerProfilePatch {
    fn from(i: PowerProfileChange) -> Self {
        Self {
            name: i.name,
            idle_watts: i.idle_watts.map(|d| d.0),
            active_watts: i.active_watts.map(|d| d.0),
        }
    }
}

/// The generic handlers behind both kinds' routes.
async fn list<K: Kind, V: From<K::Item>>(state: &AppState) -> Result<Json<Page<V>>> {
    let items = K::list(state.store.as_ref()).await?;
    Ok(Json(Page::all(items.into_iter().map(V::from).collect())))
}

async fn create<K: Kind, V: From<K::Item>>(
    state: &AppState,
    admin: &str,
    patch: K::Patch,
) -> Result<(StatusCode, Json<V>)> {
    let item = catalog::create::<K>(state.ctx(admin), patch).await?;
    Ok((StatusCode::CREATED, Json(V::from(item))))
}

async fn update<K: Kind, V: From<K::Item>>(
    state: &AppState,
    admin: &str,
    id: i64,
    patch: K::Patch,
) -> Result<Json<V>> {
    let item = catalog::update::<K>(state.ctx(admin), id, patch).await?;
    Ok(Json(V::from(item)))
}

async fn delete<K: Kind>(state: &AppState, admin: &str, id: i64) -> Result<StatusCode> {
    catalog::delete::<K>(state.ctx(admin), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// All sites.
#[utoipa::path(get, path = "/api/v1/sites", tag = "sites", operation_id = "list_sites",
    responses((status = 200, description = "every site", body = Page<SiteView>),
        (status = 401, description = "not signed in")),
    security(("session" = []), ("bearer" = [])))]
async fn list_sites(
    State(state): State<AppState>,
    _viewer: Viewer,
) -> Result<Json<Page<SiteView>>> {
    list::<Sites, SiteView>(&state).await
}

/// Creates a site (admins only).
#[utoipa::path(post, path = "/api/v1/sites", tag = "sites", operation_id = "create_site",
    request_body = NewSite,
    responses((status = 201, description = "the created site", body = SiteView),
        (status = 401, description = "not signed in"),
        (status = 403, description = "viewers cannot change anything"),
        (status = 409, description = "name taken"), (status = 422, description = "invalid field")),
    security(("session" = []), ("bearer" = [])))]
async fn create_site(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiJson(input): ApiJson<NewSite>,
) -> Result<(StatusCode, Json<SiteView>)> {
    create::<Sites, SiteView>(&state, &admin.username, input.into()).await
}

/// Changes a site (admins only); only time accounted afterwards uses the new values.
#[utoipa::path(patch, path = "/api/v1/sites/{id}", tag = "sites", operation_id = "update_site",
    request_body = SiteChange, params(("id" = i64, Path, description = "site id")),
    responses((status = 200, description = "the site after the change", body = SiteView),
        (status = 401, description = "not signed in"),
        (status = 403, description = "viewers cannot change anything"),
        (status = 404, description = "no such site"), (status = 409, description = "name taken"),
        (status = 422, description = "invalid field")),
    security(("session" = []), ("bearer" = [])))]
async fn update_site(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<SiteChange>,
) -> Result<Json<SiteView>> {
    update::<Sites, SiteView>(&state, &admin.username, id, input.into()).await
}

/// Deletes an unused site (admins only); 409 while machines or enrollment tokens use it.
#[utoipa::path(delete, path = "/api/v1/sites/{id}", tag = "sites", operation_id = "delete_site",
    params(("id" = i64, Path, description = "site id")),
    responses((status = 204, description = "deleted"), (status = 401, description = "not signed in"),
        (status = 403, description = "viewers cannot change anything"),
        (status = 404, description = "no such site"), (status = 409, description = "still in use")),
    security(("session" = []), ("bearer" = [])))]
async fn delete_site(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode> {
    delete::<Sites>(&state, &admin.username, id).await
}

/// All power profiles.
#[utoipa::path(get, path = "/api/v1/power-profiles", tag = "power profiles",
    operation_id = "list_power_profiles",
    responses((status = 200, description = "every power profile", body = Page<PowerProfileView>),
        (status = 401, description = "not signed in")),
    security(("session" = []), ("bearer" = [])))]
async fn list_profiles(
    State(state): State<AppState>,
    _viewer: Viewer,
) -> Result<Json<Page<PowerProfileView>>> {
    list::<PowerProfiles, PowerProfileView>(&state).await
}

/// Creates a power profile (admins only).
#[utoipa::path(post, path = "/api/v1/power-profiles", tag = "power profiles",
    operation_id = "create_power_profile", request_body = NewPowerProfile,
    responses((status = 201, description = "the created profile", body = PowerProfileView),
        (status = 401, description = "not signed in"),
        (status = 403, description = "viewers cannot change anything"),
        (status = 409, description = "name taken"), (status = 422, description = "invalid field")),
    security(("session" = []), ("bearer" = [])))]
async fn create_profile(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiJson(input): ApiJson<NewPowerProfile>,
) -> Result<(StatusCode, Json<PowerProfileView>)> {
    create::<PowerProfiles, PowerProfileView>(&state, &admin.username, input.into()).await
}

/// Changes a power profile (admins only); only time accounted afterwards uses the new watts.
#[utoipa::path(patch, path = "/api/v1/power-profiles/{id}", tag = "power profiles",
    operation_id = "update_power_profile", request_body = PowerProfileChange,
    params(("id" = i64, Path, description = "power profile id")),
    responses((status = 200, description = "the profile after the change", body = PowerProfileView),
        (status = 401, description = "not signed in"),
        (status = 403, description = "viewers cannot change anything"),
        (status = 404, description = "no such profile"), (status = 409, description = "name taken"),
        (status = 422, description = "invalid field")),
    security(("session" = []), ("bearer" = [])))]
async fn update_profile(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<PowerProfileChange>,
) -> Result<Json<PowerProfileView>> {
    update::<PowerProfiles, PowerProfileView>(&state, &admin.username, id, input.into()).await
}

/// Deletes an unused power profile (admins only).
#[utoipa::path(delete, path = "/api/v1/power-profiles/{id}", tag = "power profiles",
    operation_id = "delete_power_profile", params(("id" = i64, Path, description = "power profile id")),
    responses((status = 204, description = "deleted"), (status = 401, description = "not signed in"),
        (status = 403, description = "viewers cannot change anything"),
        (status = 404, description = "no such profile"), (status = 409, description = "still in use")),
    security(("session" = []), ("bearer" = [])))]
async fn delete_profile(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode> {
    delete::<PowerProfiles>(&state, &admin.username, id).await
}
