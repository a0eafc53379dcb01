//! The machines list and the fleet statistics, answered from the in-memory fleet
//! ([`crate::fleet`], the one `/metrics` reads).
//!
//! Every list request filters, sorts and pages the fleet: status is derived at request time,
//! `q` is a case-insensitive substring of the hostname, absent sort keys sort last in both
//! directions, ties are broken by machine id, and text sorts by byte order. Below
//! `admin.list_memory_min_machines` live machines each request first reads what changed in
//! the database (exact and immediate); above it the fleet is read again only when older than
//! `admin.list_memory_max_age_ms` — by SQL a sorted page of 100k machines costs two scans of
//! the machines table, from memory a few milliseconds — and an admin change made through this
//! collector (retire, move, site or profile edits) makes the next request read again.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::accounting::{Status, status};
use crate::fleet::{Fleet, FleetView};
use crate::store::{MachineQuery, MachineRow, MachineSnapshot, MachineSort, Store, StoreError};

/// The machines list of one collector (see the module docs).
#[derive(Debug)]
pub struct Listing {
    view: Arc<FleetView>,
    min_machines: usize,
    max_age: Duration,
}

impl Listing {
    pub fn new(view: Arc<FleetView>, min_machines: usize, max_age: Duration) -> Arc<Self> {
        Arc::new(Self {
            view,
            min_machines,
            max_age,
        })
    }

    /// The next request reads the database again: placement, names or membership changed.
    pub fn invalidate(&self) {
        self.view.invalidate();
    }

    /// A page of live machines and the number matching (see the module docs).
    pub async fn list(
        &self,
        store: &Arc<dyn Store>,
        query: &MachineQuery,
    ) -> Result<(Vec<MachineRow>, i64), StoreError> {
        let fleet = self.fleet(store).await?;
        Ok(page(fleet.all(), query))
    }

    /// Every machine, retired ones included: at most `max_age` old for large fleets, as the
    /// database holds it now otherwise.
    pub async fn fleet(&self, store: &Arc<dyn Store>) -> Result<Arc<Fleet>, StoreError> {
        let large = self
            .view
            .last()
            .is_some_and(|f| f.live_count() >= self.min_machines);
        if large || self.min_machines == 0 {
            self.view.recent(store.as_ref(), self.max_age).await
        } else {
            self.view.fresh(store.as_ref()).await
        }
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
pub fn page_of<'a>(
    machines: impl IntoIterator<Item = &'a MachineSnapshot>,
    query: &MachineQuery,
) -> (Vec<MachineRow>, i64) {
    page(machines, query)
}

fn page<'a>(
    machines: impl IntoIterator<Item = &'a MachineSnapshot>,
    query: &MachineQuery,
) -> (Vec<MachineRow>, i64) {
    let needle = query.q.as_ref().map(|q| q.to_lowercase());
    let mut hits: Vec<&MachineSnapshot> = machines
        .into_iter()
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
