//! `GET|POST /api/v1/users` (admins only) and `GET /api/v1/audit` (admins only).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use greenops_protocol::ValidationError;
use serde::{Deserialize, Serialize};

use super::auth::{Operator, UserView};
use super::{ApiError, AppState, body, parse_json};
use crate::auth;
use crate::store::{AuditEntry, Role};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/users", get(list).post(create))
        .route("/api/v1/audit", get(audit_log))
}

#[derive(Serialize)]
struct UserItem {
    username: String,
    role: Role,
    disabled: bool,
}

#[derive(Serialize)]
struct Page<T> {
    items: Vec<T>,
    total: i64,
    page: i64,
    per_page: i64,
}

async fn list(
    State(state): State<AppState>,
    operator: Operator,
) -> Result<Json<Page<UserItem>>, ApiError> {
    operator.require_admin()?;
    let items: Vec<UserItem> = state
        .store
        .list_users()
        .await?
        .into_iter()
        .map(|u| UserItem {
            username: u.username,
            role: u.role,
            disabled: u.disabled,
        })
        .collect();
    let total = items.len() as i64;
    Ok(Json(Page {
        items,
        total,
        page: 1,
        per_page: total.max(1),
    }))
}

#[derive(Deserialize)]
struct NewUser {
    username: String,
    password: String,
    role: Role,
}

async fn create(
    State(state): State<AppState>,
    operator: Operator,
    raw: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    operator.require_admin()?;
    let new: NewUser = parse_json(&body(raw)?)?;
    auth::check_username(&new.username).map_err(|m| ValidationError::new("username", m))?;
    auth::check_password(&new.password).map_err(|m| ValidationError::new("password", m))?;
    let password = new.password;
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(e.into()))??;
    let now = crate::clock::now_ms();
    let user = state
        .store
        .create_user(&new.username, &hash, new.role, now)
        .await?;
    state
        .store
        .audit(&AuditEntry {
            at_ms: now,
            actor: operator.username,
            action: "user_created".into(),
            target: user.username.clone(),
            details: serde_json::json!({"role": user.role}).to_string(),
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(UserView {
            username: user.username,
            role: user.role,
        }),
    ))
}

#[derive(Deserialize)]
struct AuditParams {
    limit: Option<String>,
}

async fn audit_log(
    State(state): State<AppState>,
    operator: Operator,
    Query(params): Query<AuditParams>,
) -> Result<Json<Page<AuditEntry>>, ApiError> {
    operator.require_admin()?;
    let limit = match params.limit.as_deref() {
        None | Some("") => 100,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                ValidationError::new("limit", "must be a whole number from 1 to 1000")
            })?,
    };
    let items = state.store.audit_log(limit).await?;
    let total = items.len() as i64;
    Ok(Json(Page {
        items,
        total,
        page: 1,
        per_page: limit,
    }))
}
