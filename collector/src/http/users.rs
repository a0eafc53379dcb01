//! Operators (admins only): `GET|POST /api/v1/users`, `PATCH|DELETE /api/v1/users/{username}`,
//! and the audit log `GET /api/v1/audit`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Operator, UserView};
use super::{ApiError, AppState, Page, audit, body, invalid, number, parse_json};
use crate::auth;
use crate::store::{AuditEntry, Role, User};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(update, disable))
        .routes(routes!(audit_log))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserItem {
    username: String,
    role: Role,
    disabled: bool,
}

impl From<&User> for UserItem {
    fn from(u: &User) -> Self {
        Self {
            username: u.username.clone(),
            role: u.role,
            disabled: u.disabled,
        }
    }
}

/// Every operator account.
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = Page<UserItem>), (status = 403, description = "admins only")),
    security(("session" = []), ("bearer" = [])))]
async fn list(
    State(state): State<AppState>,
    operator: Operator,
) -> Result<Json<Page<UserItem>>, ApiError> {
    operator.require_admin()?;
    let users = state.store.list_users().await?;
    Ok(Json(Page::all(users.iter().map(UserItem::from).collect())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    username: String,
    /// At least 12 characters.
    password: String,
    role: Role,
}

async fn hash(password: String) -> Result<String, ApiError> {
    auth::check_password(&password).map_err(|m| invalid("password", &m))?;
    // Argon2 is deliberately slow: keep it off the async workers.
    tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .map_err(ApiError::from)
}

/// Creates an operator account.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = UserView), (status = 403, description = "admins only"),
        (status = 409, description = "username taken"), (status = 422, description = "invalid field")),
    security(("session" = []), ("bearer" = [])))]
async fn create(
    State(state): State<AppState>,
    operator: Operator,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    operator.require_admin()?;
    let new: NewUser = parse_json(&body(raw)?)?;
    auth::check_username(&new.username).map_err(|m| invalid("username", &m))?;
    let hash = hash(new.password).await?;
    let user = state
        .store
        .create_user(&new.username, &hash, new.role, crate::clock::now_ms())
        .await?;
    audit(
        &state,
        &operator.username,
        "user_created",
        &user.username,
        serde_json::json!({"after": {"role": user.role}}),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(UserView {
            username: user.username,
            role: user.role,
        }),
    ))
}

/// Changes to an account; absent fields stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    role: Option<Role>,
    disabled: Option<bool>,
    /// A new password (at least 12 characters); ends the user's sessions.
    password: Option<String>,
}

async fn existing(state: &AppState, username: &str) -> Result<User, ApiError> {
    state
        .store
        .user_by_name(username)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user '{username}' not found")))
}

/// Refuses a change that would leave no enabled admin.
async fn keep_an_admin(state: &AppState, username: &str) -> Result<(), ApiError> {
    let others = state
        .store
        .list_users()
        .await?
        .into_iter()
        .filter(|u| u.role == Role::Admin && !u.disabled && u.username != username)
        .count();
    if others == 0 {
        return Err(ApiError::Conflict(
            "this is the last enabled admin; make another user admin first".into(),
        ));
    }
    Ok(())
}

/// Changes an account's role, enables/disables it, or sets its password. Disabling or a new
/// password ends the account's sessions at once.
#[utoipa::path(patch, path = "/api/v1/users/{username}", tag = "users", request_body = UserPatch,
    params(("username" = String, Path, description = "username")),
    responses((status = 200, body = UserItem), (status = 403, description = "admins only"),
        (status = 404, description = "no such user"), (status = 409, description = "would leave no enabled admin"),
        (status = 422, description = "invalid field")),
    security(("session" = []), ("bearer" = [])))]
async fn update(
    State(state): State<AppState>,
    operator: Operator,
    Path(username): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<UserItem>, ApiError> {
    operator.require_admin()?;
    let patch: UserPatch = parse_json(&body(raw)?)?;
    let before = existing(&state, &username).await?;
    let demoted = patch.role == Some(Role::Viewer) && before.role == Role::Admin;
    if demoted || patch.disabled == Some(true) {
        keep_an_admin(&state, &username).await?;
    }
    let now = crate::clock::now_ms();
    let password_hash = match patch.password {
        Some(p) => Some(hash(p).await?),
        None => None,
    };
    if let Some(role) = patch.role {
        state.store.set_role(&username, role, now).await?;
    }
    match patch.disabled {
        Some(true) => {
            state.store.disable_user(&username, now).await?;
        }
        Some(false) => {
            state.store.enable_user(&username, now).await?;
        }
        None => {}
    }
    if let Some(h) = &password_hash {
        state.store.set_password(&username, h, now).await?;
    }
    let after = existing(&state, &username).await?;
    audit(
        &state,
        &operator.username,
        "user_updated",
        &username,
        serde_json::json!({
            "before": UserItem::from(&before),
            "after": UserItem::from(&after),
            "password_changed": password_hash.is_some(),
        }),
    )
    .await?;
    Ok(Json(UserItem::from(&after)))
}

/// Disables an account (history keeps its name; it can be enabled again with PATCH).
#[utoipa::path(delete, path = "/api/v1/users/{username}", tag = "users",
    params(("username" = String, Path, description = "username")),
    responses((status = 204, description = "disabled"), (status = 403, description = "admins only"),
        (status = 404, description = "no such user"), (status = 409, description = "would leave no enabled admin")),
    security(("session" = []), ("bearer" = [])))]
async fn disable(
    State(state): State<AppState>,
    operator: Operator,
    Path(username): Path<String>,
) -> Result<StatusCode, ApiError> {
    operator.require_admin()?;
    existing(&state, &username).await?;
    keep_an_admin(&state, &username).await?;
    state
        .store
        .disable_user(&username, crate::clock::now_ms())
        .await?;
    audit(
        &state,
        &operator.username,
        "user_disabled",
        &username,
        serde_json::json!({}),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditParams {
    /// Newest entries to return, 1 to 1000 (default 100).
    limit: Option<String>,
}

/// The audit log, newest first: who did what to what, when, with before/after values.
#[utoipa::path(get, path = "/api/v1/audit", tag = "users", params(AuditParams),
    responses((status = 200, body = Page<AuditEntry>), (status = 403, description = "admins only")),
    security(("session" = []), ("bearer" = [])))]
async fn audit_log(
    State(state): State<AppState>,
    operator: Operator,
    Query(params): Query<AuditParams>,
) -> Result<Json<Page<AuditEntry>>, ApiError> {
    operator.require_admin()?;
    let limit = number("limit", params.limit.as_deref(), 100, 1000)?;
    let items = state.store.audit_log(limit).await?;
    let total = items.len() as i64;
    Ok(Json(Page {
        items,
        total,
        page: 1,
        per_page: limit,
    }))
}
