//! Sites (time zone, tariff with optional time-of-use bands, grid carbon intensity, business
//! hours, holidays, an optional idle threshold) and power profiles (idle, active and sleep
//! watts): list for everyone; create, change and delete for admins; a site's tariff versions
//! and its imported hourly grid intensity. The actions live in `operations::catalog`.
//!
//! Rates are effective-dated (DESIGN §2): a change adds a version from `effective_from` (now
//! when absent; a moment in the past is refused with 409), so history is never rewritten.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::ApiBytes;
use super::views::{BandView, PowerProfileView, SiteVersionView, SiteView, SpanView};
use super::{
    Admin, ApiError, ApiJson, ApiPath, ApiQuery, AppState, DecimalInput, Page, Result, Viewer,
    invalid, rfc3339, schema, timestamp_param,
};
use crate::operations::catalog::{
    self, PowerProfiles, ProfileWatts, SiteRates, Sites, effective_from,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_sites, create_site))
        .routes(routes!(update_site, delete_site))
        .routes(routes!(list_tariffs, add_tariff))
        .routes(routes!(get_intensity, put_intensity))
        .routes(routes!(list_profiles, create_profile))
        .routes(routes!(update_profile, delete_profile))
}

/// An optional RFC 3339 body field as milliseconds.
fn moment(field: &str, value: Option<&str>) -> Result<Option<i64>> {
    timestamp_param(field, value)
}

/// A new site. Only `name`, `price_per_kwh` and `carbon_intensity_g_per_kwh` are required.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSite {
    /// 1 to 64 characters, no surrounding spaces; unique.
    #[schema(schema_with = schema::name)]
    name: String,
    /// Active ISO 4217 code (default `USD`).
    #[schema(schema_with = schema::currency_patch)]
    currency: Option<String>,
    /// Price per kWh, 0 to 1000 (at most 6 decimals): a decimal string or a whole number.
    #[schema(schema_with = schema::price)]
    price_per_kwh: DecimalInput,
    /// Time-of-use bands in local time (default none: the flat price all day).
    #[schema(nullable)]
    bands: Option<Vec<BandView>>,
    /// Grams CO₂e per kWh, 0 to 5000 (at most 3 decimals), where no hourly value is imported.
    #[schema(schema_with = schema::carbon)]
    carbon_intensity_g_per_kwh: DecimalInput,
    /// IANA time zone name, e.g. `Europe/Paris` (default `UTC`).
    #[schema(schema_with = schema::timezone_patch)]
    timezone: Option<String>,
    /// Business hours in local time (default Monday–Friday 08:00–18:00).
    #[schema(nullable)]
    business_hours: Option<Vec<SpanView>>,
    /// Local dates that are after hours all day (`YYYY-MM-DD`).
    #[schema(schema_with = schema::field::holidays_patch)]
    holidays: Option<Vec<String>>,
    /// Overrides the global idle threshold for machines at this site.
    #[schema(schema_with = schema::field::seconds_patch)]
    idle_threshold_seconds: Option<u64>,
}

/// Changes to a site. `name` changes now; any other field adds a version of the site's
/// figures from `effective_from` (default now; never in the past). Absent or `null`: kept.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteChange {
    #[schema(schema_with = schema::name_patch)]
    name: Option<String>,
    #[schema(schema_with = schema::currency_patch)]
    currency: Option<String>,
    #[schema(schema_with = schema::price_patch)]
    price_per_kwh: Option<DecimalInput>,
    #[schema(nullable)]
    bands: Option<Vec<BandView>>,
    #[schema(schema_with = schema::carbon_patch)]
    carbon_intensity_g_per_kwh: Option<DecimalInput>,
    #[schema(schema_with = schema::timezone_patch)]
    timezone: Option<String>,
    #[schema(nullable)]
    business_hours: Option<Vec<SpanView>>,
    #[schema(schema_with = schema::field::holidays_patch)]
    holidays: Option<Vec<String>>,
    /// A threshold override in seconds; `0` removes the override.
    #[schema(schema_with = schema::field::seconds_patch)]
    idle_threshold_seconds: Option<u64>,
    /// When the changes apply (RFC 3339); absent or `null`: now.
    #[schema(schema_with = schema::field::effective_from)]
    effective_from: Option<String>,
}

fn rates(
    currency: Option<String>,
    price: Option<DecimalInput>,
    bands: Option<Vec<BandView>>,
    carbon: Option<DecimalInput>,
    timezone: Option<String>,
    business_hours: Option<Vec<SpanView>>,
    holidays: Option<Vec<String>>,
) -> SiteRates {
    SiteRates {
        timezone,
        currency,
        price_per_kwh: price.map(|d| d.0),
        bands: bands.map(|b| b.into_iter().map(Into::into).collect()),
        carbon_intensity_g_per_kwh: carbon.map(|d| d.0),
        business_hours: business_hours.map(|b| b.into_iter().map(Into::into).collect()),
        holidays,
        idle_threshold_seconds: None,
    }
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
    let sites = state.store.list_sites(crate::clock::now_ms()).await?;
    Ok(Json(Page::all(sites.into_iter().map(Into::into).collect())))
}

/// Creates a site (admins only); its figures apply from the beginning.
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
    let mut r = rates(
        input.currency,
        Some(input.price_per_kwh),
        input.bands,
        Some(input.carbon_intensity_g_per_kwh),
        input.timezone,
        input.business_hours,
        input.holidays,
    );
    r.idle_threshold_seconds = input.idle_threshold_seconds.map(|s| (s > 0).then_some(s));
    let site = catalog::create_site(state.ctx(&admin.username), &input.name, r).await?;
    Ok((StatusCode::CREATED, Json(site.into())))
}

/// Changes a site (admins only): a rename now, rate changes from `effective_from`.
#[utoipa::path(patch, path = "/api/v1/sites/{id}", tag = "sites", operation_id = "update_site",
    request_body = SiteChange, params(("id" = i64, Path, description = "site id")),
    responses((status = 200, description = "the site after the change", body = SiteView),
        (status = 401, description = "not signed in"),
        (status = 403, description = "viewers cannot change anything"),
        (status = 404, description = "no such site"),
        (status = 409, description = "name taken, or effective_from in the past"),
        (status = 422, description = "invalid field")),
    security(("session" = []), ("bearer" = [])))]
async fn update_site(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<SiteChange>,
) -> Result<Json<SiteView>> {
    let from = moment("effective_from", input.effective_from.as_deref())?;
    let mut r = rates(
        input.currency,
        input.price_per_kwh,
        input.bands,
        input.carbon_intensity_g_per_kwh,
        input.timezone,
        input.business_hours,
        input.holidays,
    );
    r.idle_threshold_seconds = input.idle_threshold_seconds.map(|s| (s > 0).then_some(s));
    let site = catalog::update_site(
        state.ctx(&admin.username),
        id,
        input.name.as_deref(),
        r,
        from,
    )
    .await?;
    Ok(Json(site.into()))
}

/// Deletes a site nothing ever used (admins only); 409 while machines (now or in their
/// history) or enrollment tokens use it.
#[utoipa::path(delete, path = "/api/v1/sites/{id}", tag = "sites", operation_id = "delete_site",
    params(("id" = i64, Path, description = "site id")),
    responses((status = 204, description = "deleted"), (status = 401, description = "not signed in"),
        (status = 403, description = "viewers cannot change anything"),
        (status = 404, description = "no such site"), (status = 409, description = "in use")),
    security(("session" = []), ("bearer" = [])))]
async fn delete_site(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode> {
    catalog::delete::<Sites>(state.ctx(&admin.username), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One tariff version of a site.
#[derive(Debug, Serialize, ToSchema)]
pub struct TariffView {
    /// When it applies from (RFC 3339); `null`: from the beginning.
    effective_from: Option<String>,
    currency: String,
    #[schema(value_type = String)]
    price_per_kwh: rust_decimal::Decimal,
    bands: Vec<BandView>,
}

impl From<SiteVersionView> for TariffView {
    fn from(v: SiteVersionView) -> Self {
        Self {
            effective_from: v.effective_from,
            currency: v.currency,
            price_per_kwh: v.price_per_kwh,
            bands: v.bands,
        }
    }
}

/// Every tariff of a site, oldest first (one per version of its figures).
#[utoipa::path(get, path = "/api/v1/sites/{id}/tariffs", tag = "sites", operation_id = "list_tariffs",
    params(("id" = i64, Path, description = "site id")),
    responses((status = 200, description = "the site's tariff versions", body = Page<TariffView>),
        (status = 401, description = "not signed in"), (status = 404, description = "no such site")),
    security(("session" = []), ("bearer" = [])))]
async fn list_tariffs(
    State(state): State<AppState>,
    _viewer: Viewer,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Page<TariffView>>> {
    let versions = state.store.site_versions(id).await?;
    if versions.is_empty() {
        return Err(ApiError::NotFound(format!("site {id} not found")));
    }
    Ok(Json(Page::all(
        versions
            .iter()
            .map(|v| TariffView::from(SiteVersionView::from(v)))
            .collect(),
    )))
}

/// A new tariff for a site from `effective_from` (default now).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTariff {
    #[schema(schema_with = schema::currency_patch)]
    currency: Option<String>,
    /// The flat price, where no band applies.
    #[schema(schema_with = schema::price)]
    price_per_kwh: DecimalInput,
    /// Time-of-use bands in the site's local time (default none).
    #[schema(nullable)]
    bands: Option<Vec<BandView>>,
    #[schema(schema_with = schema::field::effective_from)]
    effective_from: Option<String>,
}

/// Adds a tariff version (admins only); the site's other figures stay as they are.
#[utoipa::path(post, path = "/api/v1/sites/{id}/tariffs", tag = "sites", operation_id = "add_tariff",
    request_body = NewTariff, params(("id" = i64, Path, description = "site id")),
    responses((status = 201, description = "the site with the new tariff", body = SiteView),
        (status = 401, description = "not signed in"),
        (status = 403, description = "viewers cannot change anything"),
        (status = 404, description = "no such site"),
        (status = 409, description = "effective_from in the past, or a version starts then"),
        (status = 422, description = "invalid field")),
    security(("session" = []), ("bearer" = [])))]
async fn add_tariff(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<NewTariff>,
) -> Result<(StatusCode, Json<SiteView>)> {
    let from = moment("effective_from", input.effective_from.as_deref())?;
    let r = SiteRates {
        currency: input.currency,
        price_per_kwh: Some(input.price_per_kwh.0),
        bands: Some(
            input
                .bands
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
        ),
        ..SiteRates::default()
    };
    let site = catalog::update_site(state.ctx(&admin.username), id, None, r, from).await?;
    Ok((StatusCode::CREATED, Json(site.into())))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct IntensityParams {
    /// RFC 3339, inclusive; default now minus 7 days.
    #[param(schema_with = schema::param::timestamp)]
    from: Option<String>,
    /// RFC 3339, exclusive; default `from` plus 30 days.
    #[param(schema_with = schema::param::timestamp)]
    to: Option<String>,
}

/// One imported hour.
#[derive(Debug, Serialize, ToSchema)]
pub struct IntensityHour {
    /// Start of the UTC hour (RFC 3339).
    hour_start: String,
    #[schema(value_type = String)]
    g_co2e_per_kwh: rust_decimal::Decimal,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IntensityHours {
    site_id: i64,
    /// Hours without a value use the site's static `carbon_intensity_g_per_kwh`.
    hours: Vec<IntensityHour>,
}

/// The imported hourly grid intensity of a site in a window.
#[utoipa::path(get, path = "/api/v1/sites/{id}/carbon-intensity", tag = "sites",
    operation_id = "get_carbon_intensity",
    params(("id" = i64, Path, description = "site id"), IntensityParams),
    responses((status = 200, description = "the imported hours", body = IntensityHours),
        (status = 401, description = "not signed in"), (status = 404, description = "no such site"),
        (status = 422, description = "invalid parameter")),
    security(("session" = []), ("bearer" = [])))]
async fn get_intensity(
    State(state): State<AppState>,
    _viewer: Viewer,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(params): ApiQuery<IntensityParams>,
) -> Result<Json<IntensityHours>> {
    let now = crate::clock::now_ms();
    let from = timestamp_param("from", params.from.as_deref())?.unwrap_or(now - 7 * 86_400_000);
    let to = timestamp_param("to", params.to.as_deref())?.unwrap_or(from + 30 * 86_400_000);
    if from >= to {
        return Err(invalid("from", "must be before to"));
    }
    if state.store.site_versions(id).await?.is_empty() {
        return Err(ApiError::NotFound(format!("site {id} not found")));
    }
    let hours = state.store.intensity_hours(id, from, to).await?;
    Ok(Json(IntensityHours {
        site_id: id,
        hours: hours
            .into_iter()
            .map(|(ms, g)| IntensityHour {
                hour_start: rfc3339(ms).unwrap_or_default(),
                g_co2e_per_kwh: g,
            })
            .collect(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IntensityImported {
    site_id: i64,
    /// Hours written (an hour imported again replaces its value).
    imported: usize,
}

/// Imports hourly grid intensity (admins only): a CSV body of `hour_start,g_co2e_per_kwh`
/// lines (UTC hours, RFC 3339; a header line is allowed). All or nothing; a bad line is a 422
/// naming its line number; hours that have begun are refused (409).
#[utoipa::path(put, path = "/api/v1/sites/{id}/carbon-intensity", tag = "sites",
    operation_id = "import_carbon_intensity",
    params(("id" = i64, Path, description = "site id")),
    request_body(content = String, content_type = "text/csv",
        description = "hour_start,g_co2e_per_kwh\\n2026-12-02T14:00:00Z,251.5\\n…"),
    responses((status = 200, description = "imported", body = IntensityImported),
        (status = 401, description = "not signed in"),
        (status = 403, description = "viewers cannot change anything"),
        (status = 404, description = "no such site"),
        (status = 409, description = "an hour that has begun"),
        (status = 413, description = "the body is larger than 1 MiB"),
        (status = 422, description = "a bad line (named in `fields`)")),
    security(("session" = []), ("bearer" = [])))]
async fn put_intensity(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiPath(id): ApiPath<i64>,
    ApiBytes(body): ApiBytes,
) -> Result<Json<IntensityImported>> {
    let text = text_body(&body)?;
    let imported = catalog::import_intensity(state.ctx(&admin.username), id, text).await?;
    Ok(Json(IntensityImported {
        site_id: id,
        imported,
    }))
}

/// A UTF-8 text body without NUL characters.
fn text_body(body: &Bytes) -> Result<&str> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::Malformed("the body is not UTF-8 text".into()))?;
    if text.contains('\0') {
        return Err(invalid("csv", "must not contain NUL characters"));
    }
    Ok(text)
}

/// A new power profile.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPowerProfile {
    /// 1 to 64 characters, no surrounding spaces; unique.
    #[schema(schema_with = schema::name)]
    name: String,
    /// Watts while idle, 0 to 10000 (at most 3 decimals).
    #[schema(schema_with = schema::watts)]
    idle_watts: DecimalInput,
    /// Watts while in use.
    #[schema(schema_with = schema::watts)]
    active_watts: DecimalInput,
    /// Watts while asleep (default 2).
    #[schema(schema_with = schema::watts_patch)]
    sleep_watts: Option<DecimalInput>,
}

/// Changes to a power profile. `name` changes now; watts add a version from `effective_from`
/// (default now; never in the past). Absent or `null`: kept.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PowerProfileChange {
    #[schema(schema_with = schema::name_patch)]
    name: Option<String>,
    #[schema(schema_with = schema::watts_patch)]
    idle_watts: Option<DecimalInput>,
    #[schema(schema_with = schema::watts_patch)]
    active_watts: Option<DecimalInput>,
    #[schema(schema_with = schema::watts_patch)]
    sleep_watts: Option<DecimalInput>,
    #[schema(schema_with = schema::field::effective_from)]
    effective_from: Option<String>,
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
    let profiles = state
        .store
        .list_power_profiles(crate::clock::now_ms())
        .await?;
    Ok(Json(Page::all(
        profiles.into_iter().map(Into::into).collect(),
    )))
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
    let watts = ProfileWatts {
        idle_watts: Some(input.idle_watts.0),
        active_watts: Some(input.active_watts.0),
        sleep_watts: input.sleep_watts.map(|d| d.0),
    };
    let profile = catalog::create_profile(state.ctx(&admin.username), &input.name, watts).await?;
    Ok((StatusCode::CREATED, Json(profile.into())))
}

/// Changes a power profile (admins only): a rename now, watts from `effective_from`.
#[utoipa::path(patch, path = "/api/v1/power-profiles/{id}", tag = "power profiles",
    operation_id = "update_power_profile", request_body = PowerProfileChange,
    params(("id" = i64, Path, description = "power profile id")),
    responses((status = 200, description = "the profile after the change", body = PowerProfileView),
        (status = 401, description = "not signed in"),
        (status = 403, description = "viewers cannot change anything"),
        (status = 404, description = "no such profile"),
        (status = 409, description = "name taken, or effective_from in the past"),
        (status = 422, description = "invalid field")),
    security(("session" = []), ("bearer" = [])))]
async fn update_profile(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<PowerProfileChange>,
) -> Result<Json<PowerProfileView>> {
    let from = moment("effective_from", input.effective_from.as_deref())?;
    let watts = ProfileWatts {
        idle_watts: input.idle_watts.map(|d| d.0),
        active_watts: input.active_watts.map(|d| d.0),
        sleep_watts: input.sleep_watts.map(|d| d.0),
    };
    let profile = catalog::update_profile(
        state.ctx(&admin.username),
        id,
        input.name.as_deref(),
        watts,
        from,
    )
    .await?;
    Ok(Json(profile.into()))
}

/// Deletes a power profile nothing ever used (admins only).
#[utoipa::path(delete, path = "/api/v1/power-profiles/{id}", tag = "power profiles",
    operation_id = "delete_power_profile", params(("id" = i64, Path, description = "power profile id")),
    responses((status = 204, description = "deleted"), (status = 401, description = "not signed in"),
        (status = 403, description = "viewers cannot change anything"),
        (status = 404, description = "no such profile"), (status = 409, description = "in use")),
    security(("session" = []), ("bearer" = [])))]
async fn delete_profile(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode> {
    catalog::delete::<PowerProfiles>(state.ctx(&admin.username), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Validates `effective_from` the way every change does (used by machine moves).
pub(super) fn stated_from(value: Option<&str>) -> Result<i64> {
    let stated = moment("effective_from", value)?;
    Ok(effective_from(stated, crate::clock::now_ms())?)
}
