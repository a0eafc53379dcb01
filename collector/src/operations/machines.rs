//! Machines: moving one to another site, department or power profile, and retiring it.

use super::{Ctx, OpError, invalid};
use crate::store::StoreError;
use crate::store::admin::{Placement, PlacementPatch};

/// Moves a live machine; the placement before and after.
pub async fn place(
    ctx: Ctx<'_>,
    id: &str,
    patch: PlacementPatch,
) -> Result<(Placement, Placement), OpError> {
    if let Some(d) = &patch.department {
        greenops_protocol::check_text("department", d, 0, 100)?;
    }
    for (field, value) in [
        ("site", &patch.site),
        ("power_profile", &patch.power_profile),
    ] {
        if let Some(v) = value {
            greenops_protocol::check_text(field, v, 1, 64)?;
        }
    }
    let (before, after) = match ctx.store.place_machine(id, &patch).await {
        Ok(Some(change)) => change,
        Ok(None) => return Err(OpError::NotFound(format!("machine {id} not found"))),
        Err(StoreError::NotFound(what)) => {
            let field = if what.starts_with("site") {
                "site"
            } else {
                "power_profile"
            };
            return Err(invalid(field, format!("{what} does not exist")));
        }
        Err(e) => return Err(e.into()),
    };
    ctx.machines_changed();
    ctx.audit(
        "machine_updated",
        id,
        serde_json::json!({"before": before, "after": after}),
    )
    .await?;
    Ok((before, after))
}

/// Retires a machine: revokes its credential and hides it, keeping its history.
pub async fn retire(ctx: Ctx<'_>, id: &str) -> Result<(), OpError> {
    if !ctx.store.retire_machine(id, crate::clock::now_ms()).await? {
        return Err(OpError::NotFound(format!("machine {id} not found")));
    }
    ctx.machines_changed();
    ctx.audit("machine_retired", id, serde_json::json!({}))
        .await?;
    tracing::info!(machine_id = %crate::telemetry::untrusted(id), by = %crate::telemetry::untrusted(ctx.actor), "machine retired");
    Ok(())
}
