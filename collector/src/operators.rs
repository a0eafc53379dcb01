//! Operator accounts outside HTTP: first-start bootstrap and the `greenops user` commands.

use std::io::Read;

use crate::auth;
use crate::clock;
use crate::store::{Role, Store};

/// No default credentials (DESIGN §6): when no operator exists, create `admin` with the
/// password from `GREENOPS_ADMIN_PASSWORD`, or a generated one printed once on stderr.
pub async fn bootstrap(
    store: &dyn Store,
    passwords: &auth::PasswordPool,
    env_password: Option<String>,
) -> anyhow::Result<()> {
    if store.count_users().await? > 0 {
        return Ok(());
    }
    let (password, generated) = match env_password.filter(|p| !p.is_empty()) {
        Some(p) => {
            auth::check_password(&p).map_err(|e| anyhow::anyhow!("GREENOPS_ADMIN_PASSWORD {e}"))?;
            (p, false)
        }
        None => (auth::generate_password(), true),
    };
    let hash = (passwords.hash(password.clone()).await?, password);
    match store
        .create_user("admin", &hash.0, Role::Admin, clock::now_ms())
        .await
    {
        Ok(_) if generated => {
            // Printed, never logged: log pipelines keep secrets forever.
            eprintln!(
                "\n  Created the operator account 'admin' with the one-time password:\n\n      {}\n\n  \
                 It is not stored anywhere in clear and will not be shown again; change it with\n  \
                 `greenops user passwd admin` (or set GREENOPS_ADMIN_PASSWORD before the first start).\n",
                hash.1
            );
            Ok(())
        }
        Ok(_) => {
            tracing::info!("created the operator account 'admin' from GREENOPS_ADMIN_PASSWORD");
            Ok(())
        }
        // Another replica created it at the same moment: fine.
        Err(crate::store::StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `serve --demo`: the demo database's `admin` gets a password at every start — the one in
/// `GREENOPS_ADMIN_PASSWORD`, or a generated one — so the printed password always works, also
/// after a restart (the previous sessions end). Returns the password, for the demo to print.
pub async fn demo_admin(
    store: &dyn Store,
    passwords: &auth::PasswordPool,
    env_password: Option<String>,
) -> anyhow::Result<String> {
    let password = match env_password.filter(|p| !p.is_empty()) {
        Some(p) => {
            auth::check_password(&p).map_err(|e| anyhow::anyhow!("GREENOPS_ADMIN_PASSWORD {e}"))?;
            p
        }
        None => auth::generate_password(),
    };
    let ctx = crate::operations::Ctx::cli(store, passwords);
    let patch = crate::operations::users::UserPatch {
        disabled: Some(false),
        password: Some(password.clone()),
        ..Default::default()
    };
    match crate::operations::users::update(ctx, "admin", patch).await {
        Ok(_) => {}
        Err(crate::operations::OpError::NotFound(_)) => {
            crate::operations::users::create(ctx, "admin", password.clone(), Role::Admin)
                .await
                .map_err(|e| anyhow::anyhow!("creating the demo's admin: {e}"))?;
        }
        Err(e) => return Err(anyhow::anyhow!("setting the demo's admin password: {e}")),
    }
    Ok(password)
}

/// A password from stdin (first line), or a generated one that is printed once.
pub fn password_from(stdin: bool) -> anyhow::Result<(String, bool)> {
    if stdin {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        let password = text.lines().next().unwrap_or_default().to_string();
        auth::check_password(&password).map_err(|e| anyhow::anyhow!("the password {e}"))?;
        Ok((password, false))
    } else {
        Ok((auth::generate_password(), true))
    }
}
