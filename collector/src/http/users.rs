//! Operators (admins only): `GET|POST /api/v1/users`, `PATCH|DELETE /api/v1/users/{username}`,
//! and the audit log `GET /api/v1/audit`. The actions themselves live in
//! `operations::users`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::UserView;
use super::views::{AuditEntryView, RoleView};
use super::{Admin, ApiJson, ApiPath, ApiQuery, AppState, Page, Result, number, schema};
use crate::operations::users;
use crate::store::User;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(update, disable))
        .routes(routes!(audit_log))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserItem {
    username: String,
    role: RoleView,
    disabled: bool,
}

impl From<&User> for UserItem {
    fn from(u: &User) -> Self {
        Self {
            username: u.username.clone(),
            role: u.role.into(),
            disabled: u.disabled,
        }
    }
}

/// Every operator account.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", operation_id = "list_users",
    responses((status = 200, description = "every account", body = Page<UserItem>),
        (status = 401, description = "not signed in"), (status = 403, description = "admins only")),
    security(("session" = []), ("bearer" = [])))]
async fn list(State(state): State<AppState>, _admin: Admin) -> Result<Json<Page<UserItem>>> {
    let users = state.store.list_users().await?;
    Ok(Json(Page::all(users.iter().map(UserItem::from).collect())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// 1 to 64 characters: letters, digits, `.`, `_`, `-`, `@`; unique ignoring case.
    #[schema(schema_with = schema::field::username)]
    username: String,
    /// 12 to 1024 characters.
    #[schema(schema_with = schema::field::new_password)]
    password: String,
    role: RoleView,
}

/// Creates an operator account.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", operation_id = "create_user",
    request_body = NewUser,
    responses((status = 201, description = "the created account", body = UserView),
        (status = 401, description = "not signed in"), (status = 403, description = "admins only"),
        (status = 409, description = "username taken"), (status = 422, description = "invalid field")),
    security(("session" = []), ("bearer" = [])))]
async fn create(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiJson(new): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<UserView>)> {
    let user = users::create(
        state.ctx(&admin.username),
        &new.username,
        new.password,
        new.role.into(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(UserView {
            username: user.username,
            role: user.role.into(),
        }),
    ))
}

/// Changes to an account; absent fields stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[schema(nullable)]
    role: Option<RoleView>,
    #[schema(schema_with = schema::field::bool_patch)]
    disabled: Option<bool>,
    /// A new password (12 to 1024 characters); ends the user's sessions.
    #[schema(schema_with = schema::field::new_password_patch)]
    password: Option<String>,
}

/// Changes an account's role, enables/disables it, or sets its password. Disabling or a new
/// password ends the account's sessions at once.
#[utoipa::path(patch, path = "/api/v1/users/{username}", tag = "users", operation_id = "update_user",
    request_body = UserPatch,
    params(("username" = String, Path, description = "username")),
    responses((status = 200, description = "the account after the change", body = UserItem),
        (status = 401, description = "not signed in"), (status = 403, description = "admins only"),
        (status = 404, description = "no such user"), (status = 409, description = "would leave no enabled admin"),
        (status = 422, description = "invalid field")),
    security(("session" = []), ("bearer" = [])))]
async fn update(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiPath(username): ApiPath<String>,
    ApiJson(patch): ApiJson<UserPatch>,
) -> Result<Json<UserItem>> {
    let (_, after) = users::update(
        state.ctx(&admin.username),
        &username,
        users::UserPatch {
            role: patch.role.map(Into::into),
            disabled: patch.disabled,
            password: patch.password,
        },
    )
    .await?;
    Ok(Json(UserItem::from(&after)))
}

/// Disables an account (history keeps its name; it can be enabled again with PATCH).
#[utoipa::path(delete, path = "/api/v1/users/{username}", tag = "users", operation_id = "disable_user",
    params(("username" = String, Path, description = "username")),
    responses((status = 204, description = "disabled"), (status = 401, description = "not signed in"),
        (status = 403, description = "admins only"),
        (status = 404, description = "no such user"), (status = 409, description = "would leave no enabled admin")),
    security(("session" = []), ("bearer" = [])))]
async fn disable(
    State(state): State<AppState>,
    Admin(admin): Admin,
    ApiPath(username): ApiPath<String>,
) -> Result<StatusCode> {
    users::disable(state.ctx(&admin.username), &username).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditParams {
    /// Newest entries to return, 1 to 1000 (default 100).
    #[param(schema_with = schema::param::limit)]
    limit: Option<String>,
}

/// The audit log, newest first: who did what to what, when, with before/after values.
#[utoipa::path(get, path = "/api/v1/audit", tag = "users", operation_id = "audit_log",
    params(AuditParams),
    responses((status = 200, description = "the newest entries first", body = Page<AuditEntryView>),
        (status = 401, description = "not signed in"), (status = 403, description = "admins only"),
        (status = 422, description = "invalid parameter")),
    security(("session" = []), ("bearer" = [])))]
async fn audit_log(
    State(state): State<AppState>,
    _admin: Admin,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<Page<AuditEntryView>>> {
    let limit = number("limit", params.limit.as_deref(), 100, 1000)?;
    let items: Vec<AuditEntryView> = state
        .store
        .audit_log(limit)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    let total = items.len() as i64;
    Ok(Json(Page {
        items,
        total,
        page: 1,
        per_page: limit,
    }))
}
