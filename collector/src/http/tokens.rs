//! Enrollment tokens (what agents enrol with) and personal API tokens (what scripts use
//! instead of a session), admins only. Plaintext tokens are answered once, at creation; the
//! store keeps only their SHA-256.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::Operator;
use super::{ApiError, AppState, Page, audit, body, invalid, parse_json, unknown};
use crate::secrets::{self, TokenHash};
use crate::store::NewEnrollmentToken;
use crate::store::admin::{ApiTokenInfo, EnrollmentTokenInfo};

/// Prefix of personal API tokens.
pub const API_TOKEN_PREFIX: &str = "gok_api_";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_enrollment, create_enrollment))
        .routes(routes!(revoke_enrollment))
        .routes(routes!(list_api, create_api))
        .routes(routes!(revoke_api))
}

/// A new enrollment token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEnrollment {
    /// Site of the machines that enrol with it (default `default`).
    site: Option<String>,
    /// Department given to them.
    department: Option<String>,
    /// Lifetime in seconds (default: never expires).
    expires_in_seconds: Option<u64>,
    /// How many machines may enrol with it (default: unlimited).
    max_uses: Option<i64>,
}

/// A created token: `token` is the plaintext, shown only in this answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedEnrollment {
    token: String,
    #[serde(flatten)]
    info: EnrollmentTokenInfo,
}

/// Every enrollment token (never their plaintext).
#[utoipa::path(get, path = "/api/v1/enrollment-tokens", tag = "tokens",
    responses((status = 200, body = Page<EnrollmentTokenInfo>), (status = 403, description = "admins only")),
    security(("session" = []), ("bearer" = [])))]
async fn list_enrollment(
    State(state): State<AppState>,
    operator: Operator,
) -> Result<Json<Page<EnrollmentTokenInfo>>, ApiError> {
    operator.require_admin()?;
    Ok(Json(Page::all(state.store.list_enrollment_tokens().await?)))
}

/// Creates an enrollment token; the plaintext is in this answer only.
#[utoipa::path(post, path = "/api/v1/enrollment-tokens", tag = "tokens", request_body = NewEnrollment,
    responses((status = 201, body = CreatedEnrollment), (status = 403, description = "admins only"),
        (status = 422, description = "invalid field or unknown site")),
    security(("session" = []), ("bearer" = [])))]
async fn create_enrollment(
    State(state): State<AppState>,
    operator: Operator,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CreatedEnrollment>), ApiError> {
    operator.require_admin()?;
    let input: NewEnrollment = parse_json(&body(raw)?)?;
    let department = input.department.unwrap_or_default();
    greenops_protocol::check_text("department", &department, 0, 100)?;
    let site = input.site.unwrap_or_else(|| "default".to_string());
    if let Some(n) = input.max_uses
        && n < 1
    {
        return Err(invalid("max_uses", "must be at least 1"));
    }
    let now = crate::clock::now_ms();
    let expires_at_ms = match input.expires_in_seconds {
        None => None,
        Some(s) if (60..=10 * 366 * 86_400).contains(&s) => {
            Some(now + crate::settings::secs_to_ms(s))
        }
        Some(_) => {
            return Err(invalid(
                "expires_in_seconds",
                "must be from 60 seconds to 10 years",
            ));
        }
    };
    let token = secrets::generate_token(secrets::ENROLLMENT_TOKEN_PREFIX);
    let info = state
        .store
        .create_enrollment_token(&NewEnrollmentToken {
            token_hash: TokenHash::of(&token),
            site,
            department,
            expires_at_ms,
            max_uses: input.max_uses,
            created_at_ms: now,
        })
        .await
        .map_err(unknown("site"))?;
    audit(
        &state,
        &operator.username,
        "enrollment_token_created",
        &info.id.to_string(),
        serde_json::json!({"after": info}),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(CreatedEnrollment { token, info })))
}

/// Revokes an enrollment token; machines already enrolled keep their credentials.
#[utoipa::path(delete, path = "/api/v1/enrollment-tokens/{id}", tag = "tokens",
    params(("id" = i64, Path, description = "token id")),
    responses((status = 204, description = "revoked"), (status = 403, description = "admins only"),
        (status = 404, description = "no such unrevoked token")),
    security(("session" = []), ("bearer" = [])))]
async fn revoke_enrollment(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    operator.require_admin()?;
    let revoked = state
        .store
        .revoke_enrollment_token(id, crate::clock::now_ms())
        .await?;
    revoked_or_404(&state, &operator, "enrollment token", id, revoked).await
}

/// 204 and an audit entry for a revocation, or 404 when there was nothing to revoke.
async fn revoked_or_404(
    state: &AppState,
    operator: &Operator,
    kind: &str,
    id: i64,
    revoked: bool,
) -> Result<StatusCode, ApiError> {
    if !revoked {
        return Err(ApiError::NotFound(format!(
            "{kind} {id} not found or already revoked"
        )));
    }
    audit(
        state,
        &operator.username,
        &format!("{}_revoked", kind.replace(' ', "_").to_lowercase()),
        &id.to_string(),
        serde_json::json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new personal API token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiToken {
    /// What the token is for, e.g. `inventory sync`.
    name: String,
    /// Whose role the token carries (default: the caller).
    username: Option<String>,
}

/// A created API token: `token` is the plaintext, shown only in this answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiToken {
    token: String,
    #[serde(flatten)]
    info: ApiTokenInfo,
}

/// Every API token (never their plaintext).
#[utoipa::path(get, path = "/api/v1/api-tokens", tag = "tokens",
    responses((status = 200, body = Page<ApiTokenInfo>), (status = 403, description = "admins only")),
    security(("session" = []), ("bearer" = [])))]
async fn list_api(
    State(state): State<AppState>,
    operator: Operator,
) -> Result<Json<Page<ApiTokenInfo>>, ApiError> {
    operator.require_admin()?;
    Ok(Json(Page::all(state.store.list_api_tokens().await?)))
}

/// Creates a personal API token, used as `Authorization: Bearer <token>`.
#[utoipa::path(post, path = "/api/v1/api-tokens", tag = "tokens", request_body = NewApiToken,
    responses((status = 201, body = CreatedApiToken), (status = 403, description = "admins only"),
        (status = 422, description = "invalid field or unknown user")),
    security(("session" = []), ("bearer" = [])))]
async fn create_api(
    State(state): State<AppState>,
    operator: Operator,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CreatedApiToken>), ApiError> {
    operator.require_admin()?;
    let input: NewApiToken = parse_json(&body(raw)?)?;
    greenops_protocol::check_text("name", &input.name, 1, 100)?;
    let username = input.username.unwrap_or_else(|| operator.username.clone());
    let token = secrets::generate_token(API_TOKEN_PREFIX);
    let info = state
        .store
        .create_api_token(
            &username,
            &input.name,
            &TokenHash::of(&token),
            crate::clock::now_ms(),
        )
        .await
        .map_err(unknown("username"))?;
    audit(
        &state,
        &operator.username,
        "api_token_created",
        &info.id.to_string(),
        serde_json::json!({"after": info}),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(CreatedApiToken { token, info })))
}

/// Revokes an API token at once (on every collector sharing the database).
#[utoipa::path(delete, path = "/api/v1/api-tokens/{id}", tag = "tokens",
    params(("id" = i64, Path, description = "token id")),
    responses((status = 204, description = "revoked"), (status = 403, description = "admins only"),
        (status = 404, description = "no such unrevoked token")),
    security(("session" = []), ("bearer" = [])))]
async fn revoke_api(
    State(state): State<AppState>,
    operator: Operator,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    operator.require_admin()?;
    let revoked = state
        .store
        .revoke_api_token(id, crate::clock::now_ms())
        .await?;
    revoked_or_404(&state, &operator, "API token", id, revoked).await
}
