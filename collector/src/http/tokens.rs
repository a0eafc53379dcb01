//! Enrollment tokens (what agents enrol with) and personal API tokens (what scripts use
//! instead of a session), admins only. Plaintext tokens are answered once, at creation; the
//! store keeps only their SHA-256. The actions live in `operations::tokens`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::views::{ApiTokenView, EnrollmentTokenView};
use super::{Admin, ApiJson, ApiPath, AppState, Page, Result, schema};
use crate::operations::tokens::{self, EnrollmentTokenSpec};

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
    #[schema(schema_with = schema::field::name_ref_patch)]
    site: Option<String>,
    /// Department given to them.
    #[schema(schema_with = schema::field::department_patch)]
    department: Option<String>,
    /// Lifetime in seconds, 60 to 316224000 (default: never expires).
    #[schema(schema_with = schema::field::expires_in_seconds)]
    expires_in_seconds: Option<u64>,
    /// How many machines may enrol with it (default: unlimited).
    #[schema(schema_with = schema::field::max_uses)]
    max_uses: Option<i64>,
}

/// A created token: `token` is the plaintext, shown only in this answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedEnrollment {
    token: String,
    #[serde(flatten)]
    info: EnrollmentTokenView,
}

/// Every enrollment token (never their plaintext).
#[utoipa::path(get, path = "/api/v1/enrollment-tokens", tag = "tokens",
    operation_id = "list_enrollment_tokens",
    responses((status = 200, description = "every enrollment token", body = Page<EnrollmentTokenView>),
        (status = 401, description = "not signed in"), (status = 403, description = "admins only")),
    security(("session" = []), ("bearer" = [])))]
async fn list_enrollment(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<Page<EnrollmentTokenView>>> {
    let items = state.store.list_enrollment_tokens().await?;
    Ok(Json(Page::all(items.into_iter().map(Into::into).collect())))
}

/// Creates an enrollment token; the plaintext is in this answer only.
#[utoipa::path(post, path = "/api/v1/enrollment-tokens", tag = "tokens",
    operation_id = "create_enrollment_token", request_body = NewEnrollment,
    responses((status = 201, description = "the token, with its plaintext", body = CreatedEnrollment),
        (status = 401, description = "not signed in"), (status = 403, description = "admins only"),
        (status = 422, description = "invalid field or unknown site")),
    security(("session" = []), ("bearer" = [])))]
async fn create_enrollment(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiJson(input): ApiJson<NewEnrollment>,
) -> Result<(StatusCode, Json<CreatedEnrollment>)> {
    let (token, info) = tokens::create_enrollment_token(
        state.ctx(&admin.username),
        EnrollmentTokenSpec {
            site: input.site,
            department: input.department,
            expires_in_seconds: input.expires_in_seconds,
            max_uses: input.max_uses,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedEnrollment {
            token,
            info: info.into(),
        }),
    ))
}

/// Revokes an enrollment token; machines already enrolled keep their credentials.
#[utoipa::path(delete, path = "/api/v1/enrollment-tokens/{id}", tag = "tokens",
    operation_id = "revoke_enrollment_token", params(("id" = i64, Path, description = "token id")),
    responses((status = 204, description = "revoked"), (status = 401, description = "not signed in"),
        (status = 403, description = "admins only"),
        (status = 404, description = "no such unrevoked token")),
    security(("session" = []), ("bearer" = [])))]
async fn revoke_enrollment(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode> {
    tokens::revoke_enrollment_token(state.ctx(&admin.username), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new personal API token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiToken {
    /// What the token is for, e.g. `inventory sync` (1 to 100 characters).
    #[schema(schema_with = schema::field::token_name)]
    name: String,
    /// Whose role the token carries (default: the caller).
    #[schema(schema_with = schema::field::username_patch)]
    username: Option<String>,
}

/// A created API token: `token` is the plaintext, shown only in this answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiToken {
    token: String,
    #[serde(flatten)]
    info: ApiTokenView,
}

/// Every API token (never their plaintext).
#[utoipa::path(get, path = "/api/v1/api-tokens", tag = "tokens", operation_id = "list_api_tokens",
    responses((status = 200, description = "every API token", body = Page<ApiTokenView>),
        (status = 401, description = "not signed in"), (status = 403, description = "admins only")),
    security(("session" = []), ("bearer" = [])))]
async fn list_api(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<Page<ApiTokenView>>> {
    let items = state.store.list_api_tokens().await?;
    Ok(Json(Page::all(items.into_iter().map(Into::into).collect())))
}

/// Creates a personal API token, used as `Authorization: Bearer <token>`.
#[utoipa::path(post, path = "/api/v1/api-tokens", tag = "tokens", operation_id = "create_api_token",
    request_body = NewApiToken,
    responses((status = 201, description = "the token, with its plaintext", body = CreatedApiToken),
        (status = 401, description = "not signed in"), (status = 403, description = "admins only"),
        (status = 422, description = "invalid field or unknown user")),
    security(("session" = []), ("bearer" = [])))]
async fn create_api(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiJson(input): ApiJson<NewApiToken>,
) -> Result<(StatusCode, Json<CreatedApiToken>)> {
    let username = input.username.unwrap_or_else(|| admin.username.clone());
    let (token, info) =
        tokens::create_api_token(state.ctx(&admin.username), &input.name, &username).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiToken {
            token,
            info: info.into(),
        }),
    ))
}

/// Revokes an API token at once (on every collector sharing the database).
#[utoipa::path(delete, path = "/api/v1/api-tokens/{id}", tag = "tokens", operation_id = "revoke_api_token",
    params(("id" = i64, Path, description = "token id")),
    responses((status = 204, description = "revoked"), (status = 401, description = "not signed in"),
        (status = 403, description = "admins only"),
        (status = 404, description = "no such unrevoked token")),
    security(("session" = []), ("bearer" = [])))]
async fn revoke_api(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode> {
    tokens::revoke_api_token(state.ctx(&admin.username), id).await?;
    Ok(StatusCode::NO_CONTENT)
}
