//! The machines list and the fleet statistics, answered from a fleet snapshot in memory.
//!
//! Every list request filters, sorts and pages the fleet snapshot (the same one `/metrics`
//! reads): status is derived at request time, `q` is a case-insensitive substring of the
//! hostname, absent sort keys sort last in both directions, ties are broken by machine id, and
//! text sorts by byte order. Below `admin.list_memory_min_machines` live machines the snapshot
//! is read fresh for every request (exact and immediate); above it a copy is kept — by SQL a
//! sorted page of 100k machines costs two scans of the machines table, from memory a few
//! milliseconds — refreshed in the background while the list is in use, at most
//! `admin.list_memory_max_age_ms` (plus one refresh) old; an admin change made through this
//! collector (retire, move, site or profile edits) drops it at once.

use std::cmp::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::accounting::{Status, status};
use crate::store::{MachineQuery, MachineRow, MachineSnapshot, MachineSort, Store, StoreError};

/// A copy of the live fleet, taken at one moment.
#[derive(Debug)]
struct Copy {
    taken: Instant,
    machines: Arc<[MachineSnapshot]>,
}

#[derive(Debug, Default)]
struct State {
    copy: Option<Arc<Copy>>,
    refreshing: bool,
    /// Bumped by every invalidation: a refresh started before it must not install its copy.
    generation: u64,
    /// Live machines at the last count, and when it was taken.
    fleet_size: Option<(i64, Instant)>,
}

/// The in-memory machine list (see the module docs).
#[derive(Debug)]
pub struct Listing {
    min_machines: i64,
    max_age: Duration,
    state: Mutex<State>,
    /// Requests that find no copy wait here, so only one of them reads the fleet.
    first_read: tokio::sync::Mutex<()>,
}

/// How long a fleet size is trusted before it is counted again.
const FLEET_SIZE_TTL: Duration = Duration::from_secs(30);

impl Listing {
    pub fn new(min_machines: usize, max_age: Duration) -> Arc<Self> {
        Arc::new(Self {
            min_machines: i64::try_from(min_machines).unwrap_or(i64::MAX),
            max_age,
            state: Mutex::new(State::default()),
            first_read: tokio::sync::Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets the copy: the next list request reads a fresh one.
    pub fn invalidate(&self) {
        let mut state = self.lock();
        state.copy = None;
        state.generation += 1;
    }

    /// A page of live machines and the number matching (see the module docs).
    pub async fn list(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        query: &MachineQuery,
    ) -> Result<(Vec<MachineRow>, i64), StoreError> {
        let fleet = self.fleet(store).await?;
        Ok(page(&fleet, query))
    }

    /// Every machine, retired ones included: the in-memory copy for large fleets, a fresh
    /// snapshot otherwise.
    pub async fn fleet(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
    ) -> Result<Arc<[MachineSnapshot]>, StoreError> {
        let known = self.lock().fleet_size;
        let large = match known {
            Some((n, at)) if at.elapsed() < FLEET_SIZE_TTL => n >= self.min_machines,
            _ => self.min_machines == 0,
        };
        if large {
            return Ok(self.copy(store).await?.machines.clone());
        }
        let snapshot: Arc<[MachineSnapshot]> = store.fleet_snapshot().await?.machines.into();
        let live = snapshot.iter().filter(|m| !m.retired).count() as i64;
        self.lock().fleet_size = Some((live, Instant::now()));
        Ok(snapshot)
    }

    /// The current copy: fresh enough is served as is (a background refresh starts when it is
    /// getting old); without one, the caller waits for the first.
    async fn copy(self: &Arc<Self>, store: &Arc<dyn Store>) -> Result<Arc<Copy>, StoreError> {
        let (current, start_refresh, generation) = {
            let mut state = self.lock();
            let stale = state
                .copy
                .as_ref()
                .is_none_or(|c| c.taken.elapsed() >= self.max_age);
            let start = stale && !state.refreshing && state.copy.is_some();
            if start {
                state.refreshing = true;
            }
            (state.copy.clone(), start, state.generation)
        };
        if start_refresh {
            let me = self.clone();
            let store = store.clone();
            tokio::spawn(async move {
                let result = me.read(&store, generation).await;
                me.lock().refreshing = false;
                if let Err(e) = result {
                    tracing::warn!(error = %e, "could not refresh the in-memory machine list");
                }
            });
        }
        match current {
            Some(copy) => Ok(copy),
            None => {
                let _one_reader = self.first_read.lock().await;
                let (copy, generation) = {
                    let state = self.lock();
                    (state.copy.clone(), state.generation)
                };
                match copy {
                    // Another request read it while this one waited.
                    Some(copy) => Ok(copy),
                    None => self.read(store, generation).await,
                }
            }
        }
    }

    /// Reads the fleet and installs the copy unless it was invalidated meanwhile.
    async fn read(&self, store: &Arc<dyn Store>, generation: u64) -> Result<Arc<Copy>, StoreError> {
        let taken = Instant::now();
        let snapshot = store.fleet_snapshot().await?;
        let copy = Arc::new(Copy {
            taken,
            machines: snapshot.machines.into(),
        });
        let mut state = self.lock();
        let live = copy.machines.iter().filter(|m| !m.retired).count() as i64;
        state.fleet_size = Some((live, taken));
        if state.generation == generation {
            state.copy = Some(copy.clone());
        }
        Ok(copy)
    }
}

/// A machine's derived status for `query`.
fn status_of(m: &MachineSnapshot, query: &MachineQuery) -> Status {
    status(
        m.last,
        query.now_ms,
        query.offline_after_ms,
        query.idle_threshold_ms,
    )
}

fn matches(m: &MachineSnapshot, query: &MachineQuery, needle: Option<&str>) -> bool {
    !m.retired
        && query.id.as_deref().is_none_or(|id| m.id == id)
        && query.status.is_none_or(|s| status_of(m, query) == s)
        && query.site.as_deref().is_none_or(|s| m.site == s)
        && query
            .department
            .as_deref()
            .is_none_or(|d| m.department == d)
        && needle.is_none_or(|n| m.hostname.to_lowercase().contains(n))
}

/// Compares two present sort keys in the query's direction; absent keys sort last either way.
fn nulls_last<T: PartialOrd>(a: Option<T>, b: Option<T>, descending: bool) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => {
            let o = a.partial_cmp(&b).unwrap_or(Ordering::Equal);
            if descending { o.reverse() } else { o }
        }
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

fn compare(a: &MachineSnapshot, b: &MachineSnapshot, query: &MachineQuery) -> Ordering {
    let d = query.descending;
    let by = match query.sort {
        MachineSort::Hostname => nulls_last(Some(&a.hostname), Some(&b.hostname), d),
        MachineSort::Site => nulls_last(Some(&a.site), Some(&b.site), d),
        MachineSort::Department => nulls_last(Some(&a.department), Some(&b.department), d),
        MachineSort::Status => nulls_last(
            Some(status_of(a, query).as_str()),
            Some(status_of(b, query).as_str()),
            d,
        ),
        MachineSort::LastSeen => nulls_last(
            a.last.map(|l| l.received_at_ms),
            b.last.map(|l| l.received_at_ms),
            d,
        ),
        MachineSort::InputIdle => nulls_last(
            a.last.and_then(|l| l.idle_ms),
            b.last.and_then(|l| l.idle_ms),
            d,
        ),
        MachineSort::IdleTime => nulls_last(Some(a.totals.idle_ms), Some(b.totals.idle_ms), d),
        MachineSort::IdleEnergy => nulls_last(
            Some(a.totals.idle_energy_j),
            Some(b.totals.idle_energy_j),
            d,
        ),
    };
    by.then_with(|| a.id.cmp(&b.id))
}

fn row_of(m: &MachineSnapshot, query: &MachineQuery) -> MachineRow {
    MachineRow {
        id: m.id.clone(),
        hostname: m.hostname.clone(),
        os: m.os.clone(),
        os_version: m.os_version.clone(),
        agent_version: m.agent_version.clone(),
        site: m.site.clone(),
        department: m.department.clone(),
        power_profile: m.power_profile.clone(),
        status: status_of(m, query).as_str().to_string(),
        last_seen_ms: m.last.map(|l| l.received_at_ms),
        input_idle_seconds: m.last.and_then(|l| l.idle_ms).map(|ms| ms as f64 / 1000.0),
        observed_seconds: m.totals.observed_ms as f64 / 1000.0,
        idle_seconds: m.totals.idle_ms as f64 / 1000.0,
        energy_j: m.totals.energy_j,
        idle_energy_j: m.totals.idle_energy_j,
        costs: m.costs.clone(),
    }
}

/// Filters, sorts and pages a fleet copy: only the rows up to the requested page are sorted.
pub fn page_of(machines: &[MachineSnapshot], query: &MachineQuery) -> (Vec<MachineRow>, i64) {
    page(machines, query)
}

fn page(machines: &[MachineSnapshot], query: &MachineQuery) -> (Vec<MachineRow>, i64) {
    let needle = query.q.as_ref().map(|q| q.to_lowercase());
    let mut hits: Vec<&MachineSnapshot> = machines
        .iter()
        .filter(|m| matches(m, query, needle.as_deref()))
        .collect();
    let total = hits.len() as i64;
    let offset = usize::try_from((query.page - 1).max(0) * query.per_page).unwrap_or(usize::MAX);
    let end = offset.saturating_add(usize::try_from(query.per_page).unwrap_or(0));
    if offset >= hits.len() {
        return (Vec::new(), total);
    }
    let cmp = |a: &&MachineSnapshot, b: &&MachineSnapshot| compare(a, b, query);
    if end < hits.len() {
        hits.select_nth_unstable_by(end, cmp);
        hits.truncate(end);
    }
    hits.sort_unstable_by(cmp);
    let rows = hits[offset..].iter().map(|m| row_of(m, query)).collect();
    (rows, total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::{Increment, LastReport};
    use greenops_protocol::Session;
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    fn machine(i: usize, idle: Option<i64>, received: Option<i64>, energy: i64) -> MachineSnapshot {
        MachineSnapshot {
            id: format!("id-{i:04}"),
            hostname: format!("pc-{:03}", (i * 7) % 50),
            os: "linux".into(),
            os_version: "12".into(),
            agent_version: "0.1".into(),
            site: ["default", "paris"][i % 2].into(),
            department: ["it", "finance", ""][i % 3].into(),
            power_profile: "desktop".into(),
            last: received.map(|r| LastReport {
                received_at_ms: r,
                idle_ms: idle,
                session: if i.is_multiple_of(5) {
                    Session::Locked
                } else {
                    Session::Active
                },
            }),
            cpu_usage_ratio: None,
            memory_usage_ratio: None,
            uptime_seconds: None,
            idle_source: None,
            retired: false,
            totals: Increment {
                idle_ms: (i as i64 * 13) % 7,
                idle_energy_j: Decimal::new(energy, 1),
                ..Increment::default()
            },
            costs: Vec::new(),
        }
    }

    fn query(sort: MachineSort, descending: bool, page: i64, per_page: i64) -> MachineQuery {
        MachineQuery {
            id: None,
            status: None,
            site: None,
            department: None,
            q: None,
            sort,
            descending,
            page,
            per_page,
            now_ms: 1_000_000,
            offline_after_ms: 180_000,
            idle_threshold_ms: 300_000,
        }
    }

    const SORTS: [MachineSort; 8] = [
        MachineSort::Hostname,
        MachineSort::Site,
        MachineSort::Department,
        MachineSort::Status,
        MachineSort::LastSeen,
        MachineSort::InputIdle,
        MachineSort::IdleTime,
        MachineSort::IdleEnergy,
    ];

    proptest! {
        /// Paging through the partially sorted copy gives exactly the fully sorted order.
        #[test]
        fn pages_concatenate_to_the_full_sort(
            spec in proptest::collection::vec((proptest::option::of(0i64..600_000), proptest::option::of(700_000i64..1_000_000), 0i64..20), 0..60),
            sort in 0usize..8,
            descending: bool,
            per_page in 1i64..9,
        ) {
            let fleet: Vec<MachineSnapshot> = spec.iter().enumerate().map(|(i, (idle, rec, e))| machine(i, *idle, *rec, *e)).collect();
            let q = query(SORTS[sort], descending, 1, 1000);
            let mut expected: Vec<&MachineSnapshot> = fleet.iter().collect();
            expected.sort_by(|a, b| compare(a, b, &q));
            let expected: Vec<String> = expected.iter().map(|m| m.id.clone()).collect();
            let mut paged = Vec::new();
            let mut p = 1;
            loop {
                let (rows, total) = page(&fleet, &query(SORTS[sort], descending, p, per_page));
                prop_assert_eq!(total, fleet.len() as i64);
                if rows.is_empty() { break; }
                paged.extend(rows.into_iter().map(|r| r.id));
                p += 1;
            }
            prop_assert_eq!(paged, expected);
        }
    }

    #[test]
    fn absent_values_sort_last_in_both_directions() {
        let fleet = vec![
            machine(1, None, None, 1),
            machine(2, Some(5), Some(900_000), 2),
            machine(3, Some(9), Some(950_000), 3),
        ];
        for descending in [false, true] {
            let (rows, _) = page(&fleet, &query(MachineSort::InputIdle, descending, 1, 10));
            assert_eq!(rows.last().map(|r| r.id.as_str()), Some("id-0001"));
        }
    }

    #[test]
    fn filters_match_the_sql_meaning() {
        let fleet: Vec<MachineSnapshot> = (0..30)
            .map(|i| machine(i, Some(i as i64 * 20_000), Some(900_000), 1))
            .collect();
        let mut q = query(MachineSort::Hostname, false, 1, 100);
        q.status = Some(Status::Idle);
        q.site = Some("paris".into());
        q.q = Some("PC-0".into());
        let (rows, total) = page(&fleet, &q);
        assert_eq!(total as usize, rows.len());
        assert!(!rows.is_empty());
        for r in rows {
            assert_eq!((r.status.as_str(), r.site.as_str()), ("idle", "paris"));
            assert!(r.hostname.starts_with("pc-0"));
        }
    }
}
