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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::accounting::{self, Increment, LastReport, Status};
use crate::exposition::ChunkText;
use crate::store::{FleetCursor, IncurredTotal, MachineSnapshot, Store, StoreError};

/// One machine of the in-memory fleet.
#[derive(Debug)]
pub struct FleetMachine {
    pub snapshot: MachineSnapshot,
    /// Its totals rows, by where they were incurred.
    pub incurred: Vec<IncurredTotal>,
}

impl FleetMachine {
    pub fn new(snapshot: MachineSnapshot, incurred: Vec<IncurredTotal>) -> Self {
        Self { snapshot, incurred }
    }
}

/// Totals of every machine (retired ones included) by where they were incurred:
/// `(site, department, currency)` → time, energy, CO₂ and money in that currency.
pub type GroupTotals = BTreeMap<(String, String, String), Increment>;

/// Live machines of one placement by status, in [`Status::ALL`] order.
pub type StatusCounts = [i64; 4];

/// Machines per chunk of the list: a change copies its chunk's pointers, not the whole list.
#[cfg(not(test))]
const CHUNK: usize = 512;
/// Small in tests, so that a handful of machines spans several chunks.
#[cfg(test)]
const CHUNK: usize = 3;

/// Up to [`CHUNK`] machines of the list, with their per-machine series once rendered.
#[derive(Debug, Default)]
pub struct Chunk {
    machines: Vec<Arc<FleetMachine>>,
    text: OnceLock<Arc<ChunkText>>,
    /// Texts of earlier versions of these machines' chunks: the lines of machines found
    /// there unchanged are copied rather than rendered again.
    previous: Mutex<Vec<Arc<ChunkText>>>,
}

impl Clone for Chunk {
    fn clone(&self) -> Self {
        Self {
            machines: self.machines.clone(),
            text: self.text.clone(),
            previous: Mutex::new(lock(&self.previous).clone()),
        }
    }
}

impl Chunk {
    fn new(machines: Vec<Arc<FleetMachine>>, previous: Vec<Arc<ChunkText>>) -> Self {
        Self {
            machines,
            text: OnceLock::new(),
            previous: Mutex::new(previous),
        }
    }

    /// The text rendered last for this chunk, or those it would copy from.
    fn texts(&self) -> Vec<Arc<ChunkText>> {
        match self.text.get() {
            Some(text) => vec![text.clone()],
            None => lock(&self.previous).clone(),
        }
    }

    /// Replaces the machine at `k`; the text rendered so far becomes the previous one.
    fn replace(&mut self, k: usize, machine: Arc<FleetMachine>) -> Arc<FleetMachine> {
        if let Some(text) = self.text.take() {
            *self.previous.get_mut().unwrap_or_else(|p| p.into_inner()) = vec![text];
        }
        std::mem::replace(&mut self.machines[k], machine)
    }

    /// The per-machine series of this chunk, rendered at the first call.
    pub(crate) fn text(&self) -> &ChunkText {
        self.text.get_or_init(|| {
            // Kept while rendering: a copy of this chunk made meanwhile copies from it too.
            let previous = lock(&self.previous).clone();
            let text = Arc::new(ChunkText::build(&self.machines, &previous));
            lock(&self.previous).clear();
            text
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the status counts need of one machine, kept in one contiguous array beside the list
/// (counting 100 000 machines then reads a few megabytes, not 100 000 heap objects).
#[derive(Debug, Clone, Copy)]
struct Brief {
    last: Option<LastReport>,
    /// Index of the machine's site and department in [`Fleet::placements`].
    placement: u32,
    retired: bool,
}

/// The fleet as of one read of the database.
#[derive(Debug)]
pub struct Fleet {
    /// Every machine, retired ones included, in id order, in chunks of [`CHUNK`].
    chunks: Vec<Arc<Chunk>>,
    /// One per machine, in the same order.
    briefs: Arc<Vec<Brief>>,
    /// Every (site, department) a machine has had since the last full read.
    placements: Arc<Vec<(String, String)>>,
    /// Machines that are not retired.
    live: usize,
    /// All site names.
    pub sites: Vec<String>,
    pub groups: Arc<GroupTotals>,
    /// When the read that produced it started.
    pub taken: Instant,
}

impl Fleet {
    /// A fleet of just these machines (no totals rows), as a first read would merge them.
    #[cfg(test)]
    pub fn of(machines: Vec<MachineSnapshot>, sites: Vec<String>) -> Self {
        let mut merged = Merged::default();
        merged.apply(machines.into_iter().map(|m| (m, Vec::new())).collect());
        merged.publish(sites, Instant::now())
    }

    /// Every machine, retired ones included, in id order.
    pub fn machines(&self) -> impl Iterator<Item = &FleetMachine> {
        self.chunks
            .iter()
            .flat_map(|c| c.machines.iter())
            .map(|m| m.as_ref())
    }

    /// How many machines are not retired.
    pub fn live_count(&self) -> usize {
        self.live
    }

    /// Every machine, retired ones included.
    pub fn all(&self) -> impl Iterator<Item = &MachineSnapshot> {
        self.machines().map(|m| &m.snapshot)
    }

    /// Each chunk of the list with the status at `now_ms` of each of its machines (`None`:
    /// retired).
    pub(crate) fn chunks_with_status(
        &self,
        now_ms: i64,
        offline_after_ms: i64,
        idle_threshold_ms: i64,
    ) -> impl Iterator<Item = (&Chunk, Vec<Option<Status>>)> {
        let mut briefs = self.briefs.iter();
        self.chunks.iter().map(move |chunk| {
            let statuses = briefs
                .by_ref()
                .take(chunk.machines.len())
                .map(|b| {
                    (!b.retired).then(|| {
                        accounting::status(b.last, now_ms, offline_after_ms, idle_threshold_ms)
                    })
                })
                .collect();
            (chunk.as_ref(), statuses)
        })
    }

    /// The machines that are not retired counted by site, department and status at
    /// `now_ms`, sorted by site and department; a site without any such machine appears once,
    /// with department `""` and no machines.
    pub fn census(
        &self,
        now_ms: i64,
        offline_after_ms: i64,
        idle_threshold_ms: i64,
    ) -> Vec<(&str, &str, StatusCounts)> {
        let mut counts: Vec<StatusCounts> = vec![[0; 4]; self.placements.len()];
        for b in self.briefs.iter().filter(|b| !b.retired) {
            let s = accounting::status(b.last, now_ms, offline_after_ms, idle_threshold_ms);
            if let Some(n) = counts.get_mut(b.placement as usize) {
                n[status_index(s)] += 1;
            }
        }
        let mut out: Vec<(&str, &str, StatusCounts)> = self
            .placements
            .iter()
            .zip(counts)
            .filter(|(_, n)| n.iter().any(|c| *c > 0))
            .map(|((site, department), n)| (site.as_str(), department.as_str(), n))
            .collect();
        let with_machines: HashSet<&str> = out.iter().map(|(site, _, _)| *site).collect();
        for site in &self.sites {
            if !with_machines.contains(site.as_str()) {
                out.push((site.as_str(), "", [0; 4]));
            }
        }
        out.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        // Site names are unique in the database; a list that repeats one still counts once.
        out.dedup_by(|a, b| (a.0, a.1) == (b.0, b.1));
        out
    }
}

/// The position of a status in [`Status::ALL`].
pub(crate) fn status_index(s: Status) -> usize {
    Status::ALL.iter().position(|x| *x == s).unwrap_or(0)
}

/// What one reader has merged so far: the next [`Fleet`], changed in place where the
/// published one does not share it.
#[derive(Debug, Default)]
struct Merged {
    cursor: Option<FleetCursor>,
    /// Position of every machine in the id order.
    positions: HashMap<String, usize>,
    chunks: Vec<Arc<Chunk>>,
    briefs: Arc<Vec<Brief>>,
    placements: Arc<Vec<(String, String)>>,
    /// Site → department → index in `placements`.
    placement_index: HashMap<String, HashMap<String, u32>>,
    live: usize,
    groups: Arc<GroupTotals>,
}

impl Merged {
    /// Merges the machines of one read: each replaces its previous state (its totals rows
    /// are taken back from the groups and its new ones added); new machines take their
    /// place in the id order.
    fn apply(&mut self, changes: Vec<(MachineSnapshot, Vec<IncurredTotal>)>) {
        if changes.is_empty() {
            return;
        }
        let mut added = Vec::new();
        for (snapshot, incurred) in changes {
            self.add(&incurred);
            let brief = Brief {
                last: snapshot.last,
                placement: self.placement(&snapshot.site, &snapshot.department),
                retired: snapshot.retired,
            };
            let machine = Arc::new(FleetMachine::new(snapshot, incurred));
            match self.positions.get(&machine.snapshot.id).copied() {
                Some(p) => {
                    let old =
                        Arc::make_mut(&mut self.chunks[p / CHUNK]).replace(p % CHUNK, machine);
                    self.take_back(&old.incurred);
                    Arc::make_mut(&mut self.briefs)[p] = brief;
                }
                None => added.push((machine, brief)),
            }
        }
        if !added.is_empty() {
            self.insert(added);
        }
        self.live = self.briefs.iter().filter(|b| !b.retired).count();
    }

    /// Rebuilds the list with `added` in their places (enrolment only: O(fleet)); each new
    /// chunk keeps the texts of the old chunks its machines come from.
    fn insert(&mut self, added: Vec<(Arc<FleetMachine>, Brief)>) {
        let old_texts: Vec<Vec<Arc<ChunkText>>> = self.chunks.iter().map(|c| c.texts()).collect();
        let old_chunk: HashMap<*const FleetMachine, usize> = self
            .chunks
            .iter()
            .enumerate()
            .flat_map(|(i, c)| c.machines.iter().map(move |m| (Arc::as_ptr(m), i)))
            .collect();
        let mut all: Vec<(Arc<FleetMachine>, Brief)> = self
            .chunks
            .iter()
            .flat_map(|c| c.machines.iter().cloned())
            .zip(self.briefs.iter().copied())
            .collect();
        all.extend(added);
        // Stable and run-aware: the list is sorted already, so this merges two runs.
        all.sort_by(|a, b| a.0.snapshot.id.cmp(&b.0.snapshot.id));
        self.positions = all
            .iter()
            .enumerate()
            .map(|(i, (m, _))| (m.snapshot.id.clone(), i))
            .collect();
        self.briefs = Arc::new(all.iter().map(|(_, b)| *b).collect());
        self.chunks = all
            .chunks(CHUNK)
            .map(|c| {
                let mut from: Vec<usize> = c
                    .iter()
                    .filter_map(|(m, _)| old_chunk.get(&Arc::as_ptr(m)).copied())
                    .collect();
                from.dedup();
                let previous = from.iter().flat_map(|i| old_texts[*i].clone()).collect();
                Arc::new(Chunk::new(
                    c.iter().map(|(m, _)| m.clone()).collect(),
                    previous,
                ))
            })
            .collect();
    }

    fn placement(&mut self, site: &str, department: &str) -> u32 {
        if let Some(i) = self
            .placement_index
            .get(site)
            .and_then(|d| d.get(department))
        {
            return *i;
        }
        let i = u32::try_from(self.placements.len()).unwrap_or(u32::MAX);
        Arc::make_mut(&mut self.placements).push((site.to_string(), department.to_string()));
        self.placement_index
            .entry(site.to_string())
            .or_default()
            .insert(department.to_string(), i);
        i
    }

    fn take_back(&mut self, rows: &[IncurredTotal]) {
        let groups = Arc::make_mut(&mut self.groups);
        for row in rows {
            if let Some(g) = groups.get_mut(&group_key(row)) {
                g.sub(&row.values);
            }
        }
    }

    fn add(&mut self, rows: &[IncurredTotal]) {
        let groups = Arc::make_mut(&mut self.groups);
        for row in rows {
            groups.entry(group_key(row)).or_default().add(&row.values);
        }
    }

    /// The fleet as merged so far (shares everything with it: O(chunks)).
    fn publish(&self, sites: Vec<String>, taken: Instant) -> Fleet {
        Fleet {
            chunks: self.chunks.clone(),
            briefs: self.briefs.clone(),
            placements: self.placements.clone(),
            live: self.live,
            sites,
            groups: self.groups.clone(),
            taken,
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
        merged.apply(changes.machines);
        merged.cursor = Some(changes.cursor);
        let fleet = merged.publish(changes.sites, taken);
        let fleet = Arc::new(fleet);
        tracing::debug!(
            changed,
            full = changes.full,
            machines = fleet.briefs.len(),
            read_ms = taken.elapsed().as_millis() as u64,
            "fleet read"
        );
        let mut published = self.published();
        published.fleet = Some(fleet.clone());
        published.read_at_generation = generation;
        Ok(fleet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use greenops_protocol::Session;
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    /// One machine as a read returns it: `(id, site, department, retired, last received)`.
    type Row = (u8, u8, u8, bool, Option<i64>);

    fn machine(
        (id, site, department, retired, last): Row,
    ) -> (MachineSnapshot, Vec<IncurredTotal>) {
        let snapshot = MachineSnapshot {
            id: format!("m{id:02}"),
            site: format!("s{site}"),
            department: format!("d{department}"),
            retired,
            last: last.map(|received_at_ms| LastReport {
                received_at_ms,
                idle_ms: (received_at_ms % 3 > 0).then_some(received_at_ms % 500),
                session: if received_at_ms % 5 == 0 {
                    Session::Locked
                } else {
                    Session::Active
                },
            }),
            ..Default::default()
        };
        // Rows where it was incurred: its own placement and always site s0.
        let incurred = [
            (snapshot.site.clone(), snapshot.department.clone()),
            ("s0".into(), String::new()),
        ]
        .into_iter()
        .map(|(site, department)| IncurredTotal {
            site,
            department,
            currency: "EUR".into(),
            values: Increment {
                observed_ms: last.unwrap_or(0) + i64::from(id),
                cost: Decimal::new(last.unwrap_or(7) * 13 + i64::from(id), 3),
                ..Default::default()
            },
        })
        .collect();
        (snapshot, incurred)
    }

    /// The reference: the machines counted one by one.
    fn census_by_hand(
        machines: &[MachineSnapshot],
        sites: &[String],
        now: i64,
    ) -> Vec<(String, String, StatusCounts)> {
        let mut counts: BTreeMap<(String, String), StatusCounts> = BTreeMap::new();
        for m in machines.iter().filter(|m| !m.retired) {
            let s = accounting::status(m.last, now, 300, 200);
            counts
                .entry((m.site.clone(), m.department.clone()))
                .or_default()[status_index(s)] += 1;
        }
        for site in sites {
            if !counts.keys().any(|(s, _)| s == site) {
                counts.insert((site.clone(), String::new()), [0; 4]);
            }
        }
        counts.into_iter().map(|((s, d), n)| (s, d, n)).collect()
    }

    fn owned(census: Vec<(&str, &str, StatusCounts)>) -> Vec<(String, String, StatusCounts)> {
        census
            .into_iter()
            .map(|(s, d, n)| (s.to_string(), d.to_string(), n))
            .collect()
    }

    fn nonzero(groups: &GroupTotals) -> GroupTotals {
        groups
            .iter()
            .filter(|(_, v)| **v != Increment::default())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The per-machine exposition of `fleet` (rendering and caching each chunk's text).
    fn exposition(fleet: &Fleet, now: i64) -> String {
        use crate::exposition::{Piece, Sink, write_fleet};
        let mut whole = String::new();
        let mut send = |piece: Piece| match piece {
            Piece::Text(t) => whole.push_str(&t),
            Piece::Shared(b) => whole.push_str(std::str::from_utf8(b.text()).unwrap()),
        };
        let mut sink = Sink::new(&mut send);
        write_fleet(fleet, true, now, 300, 200, &mut sink);
        sink.flush();
        drop(sink);
        whole
    }

    proptest! {
        /// Reads merged one after another leave the fleet a single full read would give, and
        /// never change a fleet already published.
        #[test]
        fn merging_reads_agrees_with_one_full_read(
            reads in proptest::collection::vec(
                proptest::collection::vec((0u8..14, 0u8..3, 0u8..2, proptest::bool::weighted(0.2), proptest::option::of(0i64..1_000)), 0..9),
                1..7),
            now in 0i64..1_300,
        ) {
            let sites: Vec<String> = ["s0", "s1", "s2", "s9"].map(String::from).to_vec();
            let mut merged = Merged::default();
            let mut latest: BTreeMap<u8, Row> = BTreeMap::new();
            let mut published: Vec<(Fleet, Vec<MachineSnapshot>, String)> = Vec::new();
            for read in reads {
                // A read returns each changed machine once.
                let read: BTreeMap<u8, Row> = read.into_iter().map(|r| (r.0, r)).collect();
                latest.extend(read.clone());
                merged.apply(read.into_values().map(machine).collect());
                let fleet = merged.publish(sites.clone(), Instant::now());
                let seen: Vec<MachineSnapshot> = fleet.all().cloned().collect();
                // Rendered now, so the next read's chunks copy from these texts.
                let text = exposition(&fleet, now);
                published.push((fleet, seen, text));
            }
            let mut scratch = Merged::default();
            scratch.apply(latest.values().copied().map(machine).collect());
            let full = scratch.publish(sites.clone(), Instant::now());
            let (fleet, _, _) = published.last().unwrap();

            let all: Vec<MachineSnapshot> = fleet.all().cloned().collect();
            prop_assert_eq!(&all, &full.all().cloned().collect::<Vec<_>>());
            let ids: Vec<&str> = all.iter().map(|m| m.id.as_str()).collect();
            prop_assert!(ids.windows(2).all(|w| w[0] < w[1]), "id order: {:?}", ids);
            prop_assert_eq!(fleet.live_count(), all.iter().filter(|m| !m.retired).count());
            prop_assert_eq!(nonzero(&fleet.groups), nonzero(&full.groups));
            let census = owned(fleet.census(now, 300, 200));
            prop_assert_eq!(&census, &census_by_hand(&all, &sites, now));
            prop_assert_eq!(census, owned(full.census(now, 300, 200)));
            let statuses: Vec<(String, Status)> = fleet
                .chunks_with_status(now, 300, 200)
                .flat_map(|(c, s)| c.machines.iter().zip(s).collect::<Vec<_>>())
                .filter_map(|(m, s)| s.map(|s| (m.snapshot.id.clone(), s)))
                .collect();
            let by_hand: Vec<(String, Status)> = all
                .iter()
                .filter(|m| !m.retired)
                .map(|m| (m.id.clone(), accounting::status(m.last, now, 300, 200)))
                .collect();
            prop_assert_eq!(statuses, by_hand);
            prop_assert_eq!(exposition(fleet, now), exposition(&full, now));
            for (fleet, seen, text) in &published {
                prop_assert_eq!(&fleet.all().cloned().collect::<Vec<_>>(), seen);
                prop_assert_eq!(&exposition(fleet, now), text);
                prop_assert_eq!(fleet.briefs.len(), seen.len());
            }
        }
    }
}
