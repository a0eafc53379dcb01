//! The fleet in memory: every machine (retired ones too) with its totals and last report, one
//! copy per collector shared by `/metrics`, the machines list and the statistics.
//!
//! The copy is kept by reading what changed in the database since the last read
//! ([`IngestStore::fleet_changes`](crate::store::IngestStore::fleet_changes)), never by
//! trusting what this process itself committed: every replica converges on the database, and
//! a read after a commit (by any collector) sees it. Each read costs the changed machines
//! only; a change of sites or power profiles (their names are on every machine) reloads all.
//! Totals per site and department *as incurred* (for the aggregate metrics) are kept up to
//! date as machines change: their old rows are taken back and their new rows added, exactly.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::accounting::Increment;
use crate::store::{FleetCursor, IncurredTotal, MachineSnapshot, Store, StoreError};

/// One machine of the in-memory fleet.
#[derive(Debug)]
pub struct FleetMachine {
    pub snapshot: MachineSnapshot,
    /// Its totals rows, by where they were incurred.
    pub incurred: Vec<IncurredTotal>,
    /// Its per-machine series, rendered once per change by the exposition.
    pub(crate) exposition: OnceLock<crate::exposition::MachineText>,
}

impl FleetMachine {
    pub fn new(snapshot: MachineSnapshot, incurred: Vec<IncurredTotal>) -> Self {
        Self {
            snapshot,
            incurred,
            exposition: OnceLock::new(),
        }
    }
}

/// Totals of every machine (retired ones included) by where they were incurred:
/// `(site, department, currency)` → time, energy, CO₂ and money in that currency.
pub type GroupTotals = BTreeMap<(String, String, String), Increment>;

/// The fleet as of one read of the database.
#[derive(Debug)]
pub struct Fleet {
    /// Every machine, retired ones included, by id.
    pub machines: Vec<Arc<FleetMachine>>,
    /// All site names.
    pub sites: Vec<String>,
    pub groups: Arc<GroupTotals>,
    /// When the read that produced it started.
    pub taken: Instant,
}

impl Fleet {
    /// The machines that are not retired.
    pub fn live(&self) -> impl Iterator<Item = &MachineSnapshot> {
        self.machines
            .iter()
            .map(|m| &m.snapshot)
            .filter(|m| !m.retired)
    }

    /// Every machine, retired ones included.
    pub fn all(&self) -> impl Iterator<Item = &MachineSnapshot> {
        self.machines.iter().map(|m| &m.snapshot)
    }
}

/// What one reader has merged so far.
#[derive(Debug, Default)]
struct Merged {
    cursor: Option<FleetCursor>,
    machines: BTreeMap<String, Arc<FleetMachine>>,
    groups: GroupTotals,
}

impl Merged {
    fn take_back(&mut self, rows: &[IncurredTotal]) {
        for row in rows {
            if let Some(g) = self.groups.get_mut(&group_key(row)) {
                g.sub(&row.values);
            }
        }
    }

    fn add(&mut self, rows: &[IncurredTotal]) {
        for row in rows {
            self.groups
                .entry(group_key(row))
                .or_default()
                .add(&row.values);
        }
    }
}

fn group_key(row: &IncurredTotal) -> (String, String, String) {
    (
        row.site.clone(),
        row.department.clone(),
        row.currency.clone(),
    )
}

#[derive(Debug, Default)]
struct Published {
    fleet: Option<Arc<Fleet>>,
    /// Bumped by [`FleetView::invalidate`].
    generation: u64,
    /// The generation when the published fleet's read started: older means `recent` reads.
    read_at_generation: u64,
}

/// The in-memory fleet of one collector (see the module docs).
#[derive(Debug, Default)]
pub struct FleetView {
    published: Mutex<Published>,
    /// One reader at a time; it holds what has been merged.
    merged: tokio::sync::Mutex<Merged>,
}

impl FleetView {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn published(&self) -> std::sync::MutexGuard<'_, Published> {
        self.published.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fleet as the database holds it now: every change committed before this call.
    pub async fn fresh(&self, store: &dyn Store) -> Result<Arc<Fleet>, StoreError> {
        let asked = Instant::now();
        let mut merged = self.merged.lock().await;
        // Another caller read while this one waited, starting after this one asked.
        if let Some(f) = self.published().fleet.clone()
            && f.taken >= asked
        {
            return Ok(f);
        }
        self.read(store, &mut merged).await
    }

    /// The fleet as of at most `max_age` ago (and after any [`Self::invalidate`]).
    pub async fn recent(
        &self,
        store: &dyn Store,
        max_age: Duration,
    ) -> Result<Arc<Fleet>, StoreError> {
        {
            let published = self.published();
            if let Some(f) = &published.fleet
                && published.read_at_generation == published.generation
                && f.taken.elapsed() < max_age
            {
                return Ok(f.clone());
            }
        }
        self.fresh(store).await
    }

    /// The last fleet read, if any (no database access).
    pub fn last(&self) -> Option<Arc<Fleet>> {
        self.published().fleet.clone()
    }

    /// The next [`Self::recent`] reads again (an operator changed placements or names).
    pub fn invalidate(&self) {
        self.published().generation += 1;
    }

    async fn read(&self, store: &dyn Store, merged: &mut Merged) -> Result<Arc<Fleet>, StoreError> {
        let taken = Instant::now();
        let generation = self.published().generation;
        let changes = store.fleet_changes(merged.cursor).await?;
        let changed = changes.machines.len();
        if changes.full {
            *merged = Merged::default();
        }
        for (snapshot, incurred) in changes.machines {
            if let Some(old) = merged.machines.get(&snapshot.id).cloned() {
                merged.take_back(&old.incurred);
            }
            merged.add(&incurred);
            merged.machines.insert(
                snapshot.id.clone(),
                Arc::new(FleetMachine::new(snapshot, incurred)),
            );
        }
        merged.cursor = Some(changes.cursor);
        let previous = self.published().fleet.clone();
        let fleet = match previous {
            // Nothing changed: the same machines, read again now.
            Some(p) if changed == 0 && !changes.full && p.sites == changes.sites => Fleet {
                machines: p.machines.clone(),
                sites: changes.sites,
                groups: p.groups.clone(),
                taken,
            },
            _ => Fleet {
                machines: merged.machines.values().cloned().collect(),
                sites: changes.sites,
                groups: Arc::new(merged.groups.clone()),
                taken,
            },
        };
        let fleet = Arc::new(fleet);
        tracing::debug!(
            changed,
            full = changes.full,
            machines = fleet.machines.len(),
            read_ms = taken.elapsed().as_millis() as u64,
            "fleet read"
        );
        let mut published = self.published();
        published.fleet = Some(fleet.clone());
        published.read_at_generation = generation;
        Ok(fleet)
    }
}
