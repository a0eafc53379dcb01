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
use super::{Admin, ApiJson, ApiPath, AppState, DecimalInput, Page, Result, Viewer};
use crate::operations::catalog::{self, Kind, PowerProfilePatch, PowerProfiles, SitePatch, Sites};

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
    /// 1 to 64 characters.
    #[schema(min_length = 1, max_length = 64)]
    name: Option<String>,
    /// Active ISO 4217 code in capitals (default `USD`).
    #[schema(pattern = "^[A-Z]{3}$", example = "EUR")]
    currency: Option<String>,
    /// Plain decimal string or number, 0 to 1000, at most 12 decimal places.
    #[schema(value_type = Option<String>, example = "0.12")]
    price_per_kwh: Option<DecimalInput>,
    /// Grams CO₂e per kWh, 0 to 5000.
    #[schema(value_type = Option<String>, example = "420")]
    carbon_intensity_g_per_kwh: Option<DecimalInput>,
    /// IANA time zone name, e.g. `Europe/Paris` (default `UTC`).
    #[schema(max_length = 64, example = "Europe/Paris")]
    timezone: Option<String>,
}

impl From<SiteInput> for SitePatch {
    fn from(i: SiteInput) -> Self {
        Self {
            name: i.name,
            currency: i.currency,
            price_per_kwh: i.price_per_kwh.map(|d| d.0),
            carbon_intensity_g_per_kwh: i.carbon_intensity_g_per_kwh.map(|d| d.0),
            timezone: i.timezone,
        }
    }
}

/// Power profile fields; on PATCH every field is optional.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PowerProfileInput {
    /// 1 to 64 characters.
    #[schema(min_length = 1, max_length = 64)]
    name: Option<String>,
    /// Watts while idle, 0 to 10000.
    #[schema(value_type = Option<String>, example = "65")]
    idle_watts: Option<DecimalInput>,
    /// Watts while in use, 0 to 10000.
    #[schema(value_type = Option<String>, example = "120")]
    active_watts: Option<DecimalInput>,
}

impl From<PowerProfileInput> for PowerProfilePatch {
    fn from(i: PowerProfileInput) -> Self {
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
    request_body = SiteInput,
    responses((status = 201, description = "the created site", body = SiteView),
        (status = 401, description = "not signed in"),
        (status = 403, description = "viewers cannot change anything"),
        (status = 409, description = "name taken"), (status = 422, description = "invalid field")),
    security(("session" = []), ("bearer" = [])))]
async fn create_site(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiJson(input): ApiJson<SiteInput>,
) -> Result<(StatusCode, Json<SiteView>)> {
    create::<Sites, SiteView>(&state, &admin.username, input.into()).await
}

/// Changes a site (admins only); only time accounted afterwards uses the new values.
#[utoipa::path(patch, path = "/api/v1/sites/{id}", tag = "sites", operation_id = "update_site",
    request_body = SiteInput, params(("id" = i64, Path, description = "site id")),
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
    ApiJson(input): ApiJson<SiteInput>,
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
    operation_id = "create_power_profile", request_body = PowerProfileInput,
    responses((status = 201, description = "the created profile", body = PowerProfileView),
        (status = 401, description = "not signed in"),
        (status = 403, description = "viewers cannot change anything"),
        (status = 409, description = "name taken"), (status = 422, description = "invalid field")),
    security(("session" = []), ("bearer" = [])))]
async fn create_profile(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiJson(input): ApiJson<PowerProfileInput>,
) -> Result<(StatusCode, Json<PowerProfileView>)> {
    create::<PowerProfiles, PowerProfileView>(&state, &admin.username, input.into()).await
}

/// Changes a power profile (admins only); only time accounted afterwards uses the new watts.
#[utoipa::path(patch, path = "/api/v1/power-profiles/{id}", tag = "power profiles",
    operation_id = "update_power_profile", request_body = PowerProfileInput,
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
    ApiJson(input): ApiJson<PowerProfileInput>,
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
