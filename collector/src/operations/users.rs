//! Operator accounts: create, change (role, enabled, password), disable. The last enabled
//! admin can be neither demoted nor disabled.

use super::{Ctx, OpError, invalid};
use crate::auth;
use crate::store::{Role, User};

/// Creates an operator account.
pub async fn create(
    ctx: Ctx<'_>,
    username: &str,
    password: String,
    role: Role,
) -> Result<User, OpError> {
    auth::check_username(username).map_err(|m| invalid("username", m))?;
    let hash = hash(ctx, password).await?;
    let user = ctx
        .store
        .create_user(username, &hash, role, crate::clock::now_ms())
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict(_) => {
                OpError::Conflict(format!("user '{username}' already exists"))
            }
            other => other.into(),
        })?;
    ctx.audit(
        "user_created",
        &user.username,
        serde_json::json!({"after": {"role": user.role}}),
    )
    .await?;
    Ok(user)
}

/// Changes to an account; `None` keeps the current value.
#[derive(Debug, Default)]
pub struct UserPatch {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    /// A new password; ends the user's sessions.
    pub password: Option<String>,
}

/// Applies `patch` to an account: the account before and after.
pub async fn update(
    ctx: Ctx<'_>,
    username: &str,
    patch: UserPatch,
) -> Result<(User, User), OpError> {
    let before = existing(ctx, username).await?;
    // Names match regardless of case; act on the stored one.
    let username = before.username.as_str();
    let demoted = patch.role == Some(Role::Viewer) && before.role == Role::Admin;
    if demoted || patch.disabled == Some(true) {
        keep_an_admin(ctx, username).await?;
    }
    let password_hash = match patch.password {
        Some(p) => Some(hash(ctx, p).await?),
        None => None,
    };
    let now = crate::clock::now_ms();
    if let Some(role) = patch.role {
        ctx.store.set_role(username, role, now).await?;
    }
    match patch.disabled {
        Some(true) => {
            ctx.store.disable_user(username, now).await?;
        }
        Some(false) => {
            ctx.store.enable_user(username, now).await?;
        }
        None => {}
    }
    if let Some(h) = &password_hash {
        ctx.store.set_password(username, h, now).await?;
    }
    let after = existing(ctx, username).await?;
    ctx.audit(
        "user_updated",
        username,
        serde_json::json!({
            "before": summary(&before),
            "after": summary(&after),
            "password_changed": password_hash.is_some(),
        }),
    )
    .await?;
    Ok((before, after))
}

/// Sets a new password (ends the user's sessions).
pub async fn set_password(ctx: Ctx<'_>, username: &str, password: String) -> Result<(), OpError> {
    update(
        ctx,
        username,
        UserPatch {
            password: Some(password),
            ..UserPatch::default()
        },
    )
    .await
    .map(|_| ())
}

/// Disables an account (history keeps its name; it can be enabled again).
pub async fn disable(ctx: Ctx<'_>, username: &str) -> Result<(), OpError> {
    let user = existing(ctx, username).await?;
    let username = user.username.as_str();
    keep_an_admin(ctx, username).await?;
    ctx.store
        .disable_user(username, crate::clock::now_ms())
        .await?;
    ctx.audit("user_disabled", username, serde_json::json!({}))
        .await
}

fn summary(u: &User) -> serde_json::Value {
    serde_json::json!({"username": u.username, "role": u.role, "disabled": u.disabled})
}

async fn existing(ctx: Ctx<'_>, username: &str) -> Result<User, OpError> {
    ctx.store
        .user_by_name(username)
        .await?
        .ok_or_else(|| OpError::NotFound(format!("user '{username}' not found")))
}

/// Refuses a change that would leave no enabled admin.
async fn keep_an_admin(ctx: Ctx<'_>, username: &str) -> Result<(), OpError> {
    let others = ctx
        .store
        .list_users()
        .await?
        .into_iter()
        .filter(|u| u.role == Role::Admin && !u.disabled && u.username != username)
        .count();
    if others == 0 {
        return Err(OpError::Conflict(
            "this is the last enabled admin; make another user admin first".into(),
        ));
    }
    Ok(())
}

/// Checks a new password and hashes it on the bounded password pool.
async fn hash(ctx: Ctx<'_>, password: String) -> Result<String, OpError> {
    auth::check_password(&password).map_err(|m| invalid("password", m))?;
    Ok(ctx.passwords.hash(password).await?)
}
