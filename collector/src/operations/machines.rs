//! Machines: moving one to another site, department or power profile (from now or a stated
//! later moment: the increments of earlier time stay where they were incurred), and retiring
//! it (its history stays in every fleet total).

use super::{Ctx, OpError, invalid};
use crate::store::StoreError;
use crate::store::admin::{Placement, PlacementPatch};

/// Moves a live machine from `effective_from_ms` on; the placement in force before and the
/// new one.
pub async fn place(
    ctx: Ctx<'_>,
    id: &str,
    patch: PlacementPatch,
    effective_from_ms: i64,
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
    let now = crate::clock::now_ms();
    let (before, after) = match ctx
        .store
        .place_machine(id, &patch, effective_from_ms, now)
        .await
    {
        Ok(Some(change)) => change,
        Ok(None) => return Err(OpError::NotFound(format!("machine {id} not found"))),
        Err(StoreError::Conflict(what)) => {
            return Err(OpError::Conflict(format!("{what} exists already")));
        }
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
