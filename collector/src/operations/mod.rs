//! Operator actions, each in one place: the store change, its audit entry and the cached
//! views it makes stale. The HTTP handlers and the `greenops` CLI are both thin callers.

pub mod catalog;
pub mod machines;
pub mod reports;
pub mod savings;
pub mod seed;
pub mod settings;
pub mod tokens;
pub mod users;

use greenops_protocol::ValidationError;

use crate::auth::PasswordPool;
use crate::listing::Listing;
use crate::store::{AuditEntry, Store, StoreError};

/// Who acts, on which store, and which in-memory views to drop after a change.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub store: &'a dyn Store,
    /// The machines list of a running collector (none in the CLI).
    pub listing: Option<&'a Listing>,
    /// Where passwords are hashed.
    pub passwords: &'a PasswordPool,
    /// The operator's name, or `cli` for the command line.
    pub actor: &'a str,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("actor", &self.actor).finish()
    }
}

impl<'a> Ctx<'a> {
    /// A context for the command line (no running collector's caches to drop).
    pub fn cli(store: &'a dyn Store, passwords: &'a PasswordPool) -> Self {
        Self {
            store,
            listing: None,
            passwords,
            actor: "cli",
        }
    }

    /// Appends an entry to the audit log (before/after values in `details`).
    pub async fn audit(
        &self,
        action: &str,
        target: &str,
        details: serde_json::Value,
    ) -> Result<(), OpError> {
        self.store
            .audit(&AuditEntry {
                at_ms: crate::clock::now_ms(),
                actor: self.actor.to_string(),
                action: action.to_string(),
                target: target.to_string(),
                details: details.to_string(),
            })
            .await?;
        Ok(())
    }

    /// Drops the in-memory machines list: placement, names or membership changed.
    pub fn machines_changed(&self) {
        if let Some(listing) = self.listing {
            listing.invalidate();
        }
    }
}

/// Why an operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// A value the caller gave is not acceptable (422 naming the field).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The object acted on does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The change conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else (500).
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// A 422 naming `field`.
pub fn invalid(field: &str, message: impl Into<String>) -> OpError {
    OpError::Invalid(ValidationError::new(field, message))
}

/// The store's "no such site / user / …" for a name the caller gave, as a 422 naming `field`.
pub(crate) fn unknown(field: &'static str) -> impl FnOnce(StoreError) -> OpError {
    move |e| match e {
        StoreError::NotFound(what) => invalid(field, format!("{what} does not exist")),
        other => other.into(),
    }
}
