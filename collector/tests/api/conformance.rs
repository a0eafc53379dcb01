//! The backend conformance suite: every `Store` method and the DESIGN §2 invariants, run
//! against SQLite and PostgreSQL alike (`NAME::postgres`, `NAME::sqlite`).

use std::sync::Arc;

use greenops_collector::accounting::{self, Increment};
use greenops_collector::ingest::plan::Accountant;
use greenops_collector::secrets::{TokenHash, generate_token};
use greenops_collector::store::ingest::{Candidate, HeartbeatOutcome, RateBookCache};
use greenops_collector::store::{
    EnrollAuth, EnrollCommand, EnrollRefusal, HeartbeatJob, JobOutcome, NewEnrollmentToken, Store,
    StoreError,
};
use greenops_protocol::{IdleSourceKind, Session, ValidEnrollment, ValidHeartbeat};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

use crate::helpers::{Db, dec, fresh_database_of, test_settings};

async fn store(db: Db) -> Option<(Arc<dyn Store>, String)> {
    let url = fresh_database_of(db).await?;
    let store = greenops_collector::open_store(&test_settings(&url))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    Some((store, url))
}

const T0: i64 = 1_795_770_900_000;

/// Commits jobs the way the ingest writer does (a fresh rate book cache: loaded from the store).
async fn commit(store: &dyn Store, jobs: &[HeartbeatJob]) -> Vec<JobOutcome> {
    let planner = Accountant {
        max_clock_skew_ms: 300_000,
    };
    store
        .commit_heartbeats(jobs, &RateBookCache::new(), &planner)
        .await
        .unwrap()
}

fn job(
    id: &str,
    credential: TokenHash,
    received_at_ms: i64,
    beats: &[ValidHeartbeat],
) -> HeartbeatJob {
    HeartbeatJob {
        machine_id: id.into(),
        credential,
        received_at_ms,
        heartbeats: beats
            .iter()
            .map(|b| Candidate {
                seq: Some(b.seq),
                assign_seq: false,
                heartbeat: Ok(*b),
            })
            .collect(),
    }
}

const A: HeartbeatOutcome = HeartbeatOutcome::Accepted;
const D: HeartbeatOutcome = HeartbeatOutcome::Duplicate;

fn beat(seq: u64, at_s: i64, idle_s: Option<i64>) -> ValidHeartbeat {
    ValidHeartbeat {
        seq,
        sent_at_ms: T0 + at_s * 1000,
        idle_ms: idle_s.map(|s| s * 1000),
        session: Session::Active,
        cpu_usage_ratio: Some(0.25),
        memory_usage_ratio: Some(0.5),
        uptime_seconds: Some(100),
        idle_source: Some(IdleSourceKind::Logind),
    }
}

fn machine(key: &str) -> ValidEnrollment {
    ValidEnrollment {
        machine_key: key.into(),
        hostname: format!("host-{key}"),
        os: "linux".into(),
        os_version: "Debian 12".into(),
        agent_version: "0.1.0".into(),
        mac_addresses: vec!["aa:bb:cc:dd:ee:ff".into()],
    }
}

async fn token(
    store: &dyn Store,
    site: &str,
    max_uses: Option<i64>,
    expires: Option<i64>,
) -> TokenHash {
    let hash = TokenHash::of(&generate_token("t_"));
    store
        .create_enrollment_token(&NewEnrollmentToken {
            token_hash: hash,
            site: site.into(),
            department: "it".into(),
            expires_at_ms: expires,
            max_uses,
            created_at_ms: T0,
        })
        .await
        .unwrap();
    hash
}

async fn enroll(
    store: &dyn Store,
    auth: EnrollAuth,
    key: &str,
) -> Result<(String, TokenHash), EnrollRefusal> {
    let credential = TokenHash::of(&generate_token("a_"));
    let id = greenops_collector::secrets::new_machine_id();
    store
        .enroll(&EnrollCommand {
            auth,
            machine: machine(key),
            new_machine_id: id,
            credential_hash: credential,
            now_ms: greenops_collector::clock::now_ms(),
        })
        .await
        .unwrap()
        .map(|m| (m.machine_id, credential))
}

async fn totals_of(store: &dyn Store, id: &str) -> (Increment, Vec<(String, String, String)>) {
    let snap = store.fleet_snapshot().await.unwrap();
    let m = snap.machines.into_iter().find(|m| m.id == id).unwrap();
    let costs = m
        .costs
        .iter()
        .map(|c| {
            (
                c.currency.clone(),
                c.cost.normalize().to_string(),
                c.idle_cost.normalize().to_string(),
            )
        })
        .collect();
    (m.totals, costs)
}

async fn migrations_apply_from_empty_and_are_idempotent(db: Db) {
    let Some((store, _)) = store(db).await else {
        return;
    };
    store.readiness().await.unwrap();
    store.migrate().await.unwrap();
    store.readiness().await.unwrap();
    let snap = store.fleet_snapshot().await.unwrap();
    assert!(snap.machines.is_empty());
    assert_eq!(snap.sites, vec!["default".to_string()]);
    store.close().await;
}

async fn enrolment_tokens_and_credentials(db: Db) {
    let Some((store, _)) = store(db).await else {
        return;
    };
    let s = store.as_ref();
    assert!(matches!(
        s.create_enrollment_token(&NewEnrollmentToken {
            token_hash: TokenHash::of("x"),
            site: "nowhere".into(),
            department: String::new(),
            expires_at_ms: None,
            max_uses: None,
            created_at_ms: T0,
        })
        .await,
        Err(StoreError::NotFound(_))
    ));
    let once = token(s, "default", Some(1), None).await;
    let (id, first) = enroll(s, EnrollAuth::Token(once), "key-00000000000000001")
        .await
        .unwrap();
    assert_eq!(
        s.machine_for_credential(&first).await.unwrap(),
        Some(id.clone())
    );
    assert_eq!(
        enroll(s, EnrollAuth::Token(once), "key-00000000000000002").await,
        Err(EnrollRefusal::InvalidToken)
    );
    let expired = token(s, "default", None, Some(1)).await;
    assert_eq!(
        enroll(s, EnrollAuth::Token(expired), "key-00000000000000003").await,
        Err(EnrollRefusal::InvalidToken)
    );
    assert_eq!(
        enroll(
            s,
            EnrollAuth::Token(TokenHash::of("unknown")),
            "key-00000000000000004"
        )
        .await,
        Err(EnrollRefusal::InvalidToken)
    );
    // Re-enrolment of the same key rotates the credential and keeps the machine.
    let many = token(s, "default", None, None).await;
    let (again, second) = enroll(s, EnrollAuth::Token(many), "key-00000000000000001")
        .await
        .unwrap();
    assert_eq!(again, id);
    assert_eq!(s.machine_for_credential(&first).await.unwrap(), None);
    assert_eq!(
        s.machine_for_credential(&second).await.unwrap(),
        Some(id.clone())
    );
    let (open, _) = enroll(s, EnrollAuth::Open, "key-00000000000000005")
        .await
        .unwrap();
    let snap = s.fleet_snapshot().await.unwrap();
    assert_eq!(snap.machines.len(), 2);
    let m = snap.machines.iter().find(|m| m.id == id).unwrap();
    assert_eq!(
        (
            m.site.as_str(),
            m.department.as_str(),
            m.power_profile.as_str()
        ),
        ("default", "it", "desktop")
    );
    assert!(m.last.is_none());
    let o = snap.machines.iter().find(|m| m.id == open).unwrap();
    assert_eq!(o.department, "");
    store.close().await;
}

async fn commits_account_exactly(db: Db) {
    let Some((store, _)) = store(db).await else {
        return;
    };
    let s = store.as_ref();
    let t = token(s, "default", None, None).await;
    let (id, cred) = enroll(s, EnrollAuth::Token(t), "key-00000000000000010")
        .await
        .unwrap();
    // Two jobs for the same machine in one batch, a duplicate, and an unknown machine.
    let jobs = vec![
        job(&id, cred, T0, &[beat(1, 0, Some(0))]),
        job("nope", cred, T0, &[beat(1, 0, Some(0))]),
        job(
            &id,
            cred,
            T0 + 120_000,
            &[
                beat(2, 60, Some(400)),
                beat(3, 120, Some(30)),
                beat(3, 120, Some(30)),
            ],
        ),
    ];
    let outcomes = commit(s, &jobs).await;
    assert_eq!(outcomes[0], JobOutcome::Committed(vec![A]));
    assert_eq!(outcomes[1], JobOutcome::UnknownMachine);
    assert_eq!(outcomes[2], JobOutcome::Committed(vec![A, A, D]));
    let (totals, costs) = totals_of(s, &id).await;
    assert_eq!(
        (totals.observed_ms, totals.idle_ms, totals.unknown_ms),
        (120_000, 60_000, 0)
    );
    assert_eq!(
        (totals.energy_j, totals.idle_energy_j),
        (dec("11100"), dec("3900"))
    );
    assert_eq!(
        (totals.co2_g, totals.idle_co2_g),
        (dec("1.295"), dec("0.455"))
    );
    assert_eq!(
        costs,
        vec![("USD".into(), "0.00037".into(), "0.00013".into())]
    );
    // Replaying everything changes nothing.
    let replay = commit(s, &jobs).await;
    assert_eq!(replay[2], JobOutcome::Committed(vec![D, D, D]));
    assert_eq!(totals_of(s, &id).await, (totals, costs));
    let snap = s.fleet_snapshot().await.unwrap();
    let m = snap.machines.iter().find(|m| m.id == id).unwrap();
    let last = m.last.unwrap();
    assert_eq!(
        (last.received_at_ms, last.idle_ms),
        (T0 + 120_000, Some(30_000))
    );
    assert_eq!(
        (m.cpu_usage_ratio, m.memory_usage_ratio, m.uptime_seconds),
        (Some(0.25), Some(0.5), Some(100))
    );
    assert_eq!(m.idle_source, Some(IdleSourceKind::Logind));
    store.close().await;
}

async fn concurrent_writers_never_double_count(db: Db) {
    let Some((a, url)) = store(db).await else {
        return;
    };
    let b = greenops_collector::open_store(&test_settings(&url))
        .await
        .unwrap();
    let t = token(a.as_ref(), "default", None, None).await;
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(
            enroll(
                a.as_ref(),
                EnrollAuth::Token(t),
                &format!("key-concurrent-{i:06}"),
            )
            .await
            .unwrap(),
        );
    }
    let beats: Vec<ValidHeartbeat> = (1..=40)
        .map(|i| beat(i, i as i64 * 60, Some((i as i64 * 37) % 700)))
        .collect();
    let mut tasks = Vec::new();
    for store in [a.clone(), b.clone()] {
        let ids = ids.clone();
        let beats = beats.clone();
        tasks.push(tokio::spawn(async move {
            for chunk in beats.chunks(5) {
                let jobs: Vec<HeartbeatJob> = ids
                    .iter()
                    .map(|(id, cred)| job(id, *cred, T0 + 3_000_000, chunk))
                    .collect();
                commit(store.as_ref(), &jobs).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for (id, _) in &ids {
        let expected = model(a.as_ref(), id, &beats).await;
        let (got, _) = totals_of(a.as_ref(), id).await;
        assert_eq!(got, expected);
    }
    a.close().await;
    b.close().await;
}

/// The pure model's totals (without money, as the snapshot's `totals`) for a stream delivered
/// once, in order, with the store's rates and the machine's placements.
async fn model(store: &dyn Store, id: &str, beats: &[ValidHeartbeat]) -> Increment {
    let book = store.rate_book().await.unwrap();
    let placements = greenops_collector::store::accounting_placements(store, id)
        .await
        .unwrap();
    accounting::replay(beats, &placements, &book)
        .unwrap()
        .without_money()
}

async fn any_split_into_batches_gives_the_model_totals(db: Db) {
    let Some((store, _)) = store(db).await else {
        return;
    };
    let t = token(store.as_ref(), "default", None, None).await;
    // A handful of generated cases (each needs a machine and real commits), reproducible.
    let mut runner = TestRunner::deterministic();
    let strategy = (
        proptest::collection::vec(
            (
                1u64..3,
                1i64..250,
                proptest::option::weighted(0.85, 0i64..1500),
            ),
            1..40,
        ),
        proptest::collection::vec(1usize..7, 1..10),
    );
    let cases: Vec<_> = (0..6)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect();
    for (n, (steps, splits)) in cases.into_iter().enumerate() {
        let (id, cred) = enroll(
            store.as_ref(),
            EnrollAuth::Token(t),
            &format!("key-split-{n:08}"),
        )
        .await
        .unwrap();
        let (mut seq, mut at) = (0, 0);
        let beats: Vec<ValidHeartbeat> = steps
            .iter()
            .map(|(dseq, dt, idle)| {
                seq += dseq;
                at += dt;
                beat(seq, at, *idle)
            })
            .collect();
        let mut i = 0;
        let mut k = 0;
        while i < beats.len() {
            let len = splits[k % splits.len()].min(beats.len() - i);
            // Every batch also re-sends the previous one (as after a lost answer).
            let start = i.saturating_sub(len);
            commit(
                store.as_ref(),
                &[job(&id, cred, T0 + 10_000_000, &beats[start..i + len])],
            )
            .await;
            i += len;
            k += 1;
        }
        let (got, _) = totals_of(store.as_ref(), &id).await;
        assert_eq!(got, model(store.as_ref(), &id, &beats).await);
    }
    store.close().await;
}

/// Issue #13, item 5: a new credential starts a new `seq` space; the machine keeps its totals,
/// and its high-water mark keeps replays of the old credential's time from counting again.
async fn a_new_credential_starts_a_new_seq_space(db: Db) {
    let Some((store, _)) = store(db).await else {
        return;
    };
    let s = store.as_ref();
    let t = token(s, "default", None, None).await;
    let (id, first) = enroll(s, EnrollAuth::Token(t), "key-reenrol-000000001")
        .await
        .unwrap();
    let early = [
        beat(1, 0, Some(0)),
        beat(2, 60, Some(0)),
        beat(3, 120, Some(0)),
    ];
    commit(s, &[job(&id, first, T0 + 120_000, &early)]).await;
    let (again, second) = enroll(s, EnrollAuth::Token(t), "key-reenrol-000000001")
        .await
        .unwrap();
    assert_eq!(again, id);
    // A restored snapshot: seq 1 again, first re-sending old time, then new time.
    let restored = [beat(1, 60, Some(0)), beat(2, 180, Some(0))];
    let outcomes = commit(s, &[job(&id, second, T0 + 180_000, &restored)]).await;
    assert_eq!(outcomes[0], JobOutcome::Committed(vec![A, A]));
    // The old credential is gone.
    let stale = commit(
        s,
        &[job(&id, first, T0 + 240_000, &[beat(4, 240, Some(0))])],
    )
    .await;
    assert_eq!(stale[0], JobOutcome::UnknownMachine);
    let (totals, _) = totals_of(s, &id).await;
    // 0–120 s from the first credential, 120–180 s from the second: nothing twice.
    assert_eq!(totals.observed_ms, 180_000);
    // Replaying the second credential's heartbeats is a duplicate.
    let replay = commit(s, &[job(&id, second, T0 + 180_000, &restored)]).await;
    assert_eq!(replay[0], JobOutcome::Committed(vec![D, D]));
    store.close().await;
}

/// Issue #13, items 2 and 3, at the store: a price change and a move that happened before
/// delivery price and place the spooled time as incurred, split at the exact moment.
async fn spooled_time_is_priced_and_placed_as_incurred(db: Db) {
    use greenops_collector::store::admin::{PlacementPatch, SiteFields, SiteVersionInfo};
    let Some((store, _)) = store(db).await else {
        return;
    };
    let s = store.as_ref();
    let now = greenops_collector::clock::now_ms();
    s.create_site(
        &SiteFields {
            name: "tokyo".into(),
            version: SiteVersionInfo::flat("Asia/Tokyo", "JPY", dec("31"), dec("450")),
        },
        now,
    )
    .await
    .unwrap();
    let t = token(s, "default", None, None).await;
    let (id, cred) = enroll(s, EnrollAuth::Token(t), "key-incurred-00000001")
        .await
        .unwrap();
    // The default site gets a new price 100 s from now; the machine moves to Tokyo 160 s from
    // now. The agent reports from now on but delivers only after both.
    let base = now - now.rem_euclid(1000);
    let default_site = s
        .list_sites(now)
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.name == "default")
        .unwrap();
    let cheaper = SiteVersionInfo {
        effective_from_ms: base + 100_000,
        ..SiteVersionInfo::flat("UTC", "USD", dec("0.06"), dec("420"))
    };
    s.add_site_version(default_site.id, &cheaper, now)
        .await
        .unwrap()
        .unwrap();
    let patch = PlacementPatch {
        site: Some("tokyo".into()),
        department: Some("sales".into()),
        power_profile: None,
    };
    s.place_machine(&id, &patch, base + 160_000, now)
        .await
        .unwrap()
        .unwrap();
    let at = |seq: u64, s_: i64| ValidHeartbeat {
        sent_at_ms: base + s_ * 1000,
        ..beat(seq, 0, Some(0))
    };
    let beats = [at(1, 0), at(2, 60), at(3, 120), at(4, 180)];
    commit(s, &[job(&id, cred, base + 200_000, &beats)]).await;
    let (totals, costs) = totals_of(s, &id).await;
    assert_eq!(totals.observed_ms, 180_000);
    // 100 s × 120 W at 0.12 USD, 60 s at 0.06 USD, 20 s in Tokyo at 31 JPY per kWh.
    let kwh = |j: i64| rust_decimal::Decimal::from(j) / rust_decimal::Decimal::from(3_600_000);
    let want_usd = (kwh(12_000) * dec("0.12") + kwh(7_200) * dec("0.06")).normalize();
    let want_jpy = (kwh(2_400) * dec("31")).round_dp(12).normalize();
    let by: std::collections::HashMap<_, _> = costs
        .iter()
        .map(|(c, cost, _)| (c.as_str(), cost.clone()))
        .collect();
    assert_eq!(by.get("USD"), Some(&want_usd.to_string()), "{costs:?}");
    assert_eq!(by.get("JPY"), Some(&want_jpy.to_string()), "{costs:?}");
    store.close().await;
}

/// Issue #13, item 4: retiring hides a machine but keeps its history in every total.
async fn retired_machines_keep_their_totals(db: Db) {
    let Some((store, _)) = store(db).await else {
        return;
    };
    let s = store.as_ref();
    let t = token(s, "default", None, None).await;
    let (id, cred) = enroll(s, EnrollAuth::Token(t), "key-retire-0000000001")
        .await
        .unwrap();
    commit(
        s,
        &[job(
            &id,
            cred,
            T0 + 60_000,
            &[beat(1, 0, Some(0)), beat(2, 60, Some(900))],
        )],
    )
    .await;
    let (before, _) = totals_of(s, &id).await;
    assert!(s.retire_machine(&id, T0 + 70_000).await.unwrap());
    let snap = s.fleet_snapshot().await.unwrap();
    let m = snap.machines.iter().find(|m| m.id == id).unwrap();
    assert!(m.retired);
    assert_eq!(m.totals, before);
    assert_eq!(s.machine_for_credential(&cred).await.unwrap(), None);
    store.close().await;
}

/// `fleet_changes` (the in-memory fleet's source): after a full read, a read from its cursor
/// returns exactly the machines written since — heartbeats, retirement — with all their
/// totals, and a change of sites reloads everything.
async fn fleet_changes_return_what_was_written_since(db: Db) {
    use greenops_collector::store::admin::{SiteFields, SiteVersionInfo};
    let Some((store, _)) = store(db).await else {
        return;
    };
    let s = store.as_ref();
    let t = token(s, "default", None, None).await;
    let mut machines = Vec::new();
    for i in 0..4 {
        machines.push(
            enroll(s, EnrollAuth::Token(t), &format!("key-changes-{i:010}"))
                .await
                .unwrap(),
        );
    }
    let first = s.fleet_changes(None).await.unwrap();
    assert!(first.full);
    assert_eq!(first.machines.len(), 4);
    // PostgreSQL re-reads rows written by transactions not finished before the last read
    // (xids are cluster-wide: other databases' transactions can hold the horizon back), so a
    // read may return machines again — but only unchanged ones.
    let unchanged = |changes: &greenops_collector::store::FleetChanges, except: &str| {
        for (m, incurred) in &changes.machines {
            if m.id != except {
                let before = first.machines.iter().find(|(b, _)| b.id == m.id).unwrap();
                assert_eq!((m, incurred), (&before.0, &before.1));
            }
        }
    };
    let quiet = s.fleet_changes(Some(first.cursor)).await.unwrap();
    assert!(!quiet.full);
    unchanged(&quiet, "");
    if db == Db::Sqlite {
        assert!(quiet.machines.is_empty(), "{:?}", quiet.machines);
    }

    let (id, cred) = machines[2].clone();
    commit(
        s,
        &[job(
            &id,
            cred,
            T0 + 60_000,
            &[beat(1, 0, Some(0)), beat(2, 60, Some(900))],
        )],
    )
    .await;
    let changed = s.fleet_changes(Some(quiet.cursor)).await.unwrap();
    assert!(!changed.full);
    unchanged(&changed, &id);
    if db == Db::Sqlite {
        assert_eq!(changed.machines.len(), 1);
    }
    let (m, incurred) = changed.machines.iter().find(|(m, _)| m.id == id).unwrap();
    assert_eq!(m.totals, totals_of(s, &id).await.0);
    assert_eq!(incurred.len(), 1);
    assert_eq!(incurred[0].values.without_money(), m.totals);
    assert_eq!(incurred[0].site, "default");

    assert!(s.retire_machine(&machines[0].0, T0 + 70_000).await.unwrap());
    let retired = s.fleet_changes(Some(changed.cursor)).await.unwrap();
    let gone = retired
        .machines
        .iter()
        .find(|(m, _)| m.id == machines[0].0)
        .unwrap();
    assert!(gone.0.retired);
    if db == Db::Sqlite {
        assert_eq!(retired.machines.len(), 1);
    }

    s.create_site(
        &SiteFields {
            name: "annex".into(),
            version: SiteVersionInfo::flat("UTC", "EUR", dec("0.2"), dec("50")),
        },
        greenops_collector::clock::now_ms(),
    )
    .await
    .unwrap();
    let reload = s.fleet_changes(Some(retired.cursor)).await.unwrap();
    assert!(reload.full);
    assert_eq!(reload.machines.len(), 4);
    assert!(reload.sites.contains(&"annex".to_string()));
    assert_eq!(reload.into_snapshot(), s.fleet_snapshot().await.unwrap());

    // Pruning the change log (PostgreSQL): the first call notes a horizon, a call `keep_ms`
    // later forgets the log before it. A cursor from before that horizon then reads every
    // machine; a read after it still reads only what changed.
    let now = greenops_collector::clock::now_ms();
    s.prune_fleet_log(now, 60_000).await.unwrap();
    let noted = s.fleet_changes(None).await.unwrap().cursor;
    commit(
        s,
        &[job(
            &id,
            machines[2].1,
            T0 + 180_000,
            &[beat(3, 120, Some(0))],
        )],
    )
    .await;
    let too_soon = s.prune_fleet_log(now + 59_999, 60_000).await.unwrap();
    assert_eq!(
        too_soon, 0,
        "nothing is pruned before it was kept `keep_ms`"
    );
    s.prune_fleet_log(now + 60_000, 60_000).await.unwrap();
    let ancient = greenops_collector::store::FleetCursor {
        changes: 1,
        ..noted
    };
    let after_ancient = s.fleet_changes(Some(ancient)).await.unwrap();
    assert_eq!(
        after_ancient.full,
        db == Db::Postgres,
        "an older cursor than the log reads all"
    );
    let after_noted = s.fleet_changes(Some(noted)).await.unwrap();
    assert!(!after_noted.full);
    for changes in [&after_ancient, &after_noted] {
        let (m, _) = changes
            .machines
            .iter()
            .find(|(m, _)| m.id == id)
            .expect("the machine written after the horizon is read");
        assert_eq!(m.totals, totals_of(s, &id).await.0);
        assert_eq!(m.last.map(|l| l.received_at_ms), Some(T0 + 180_000));
    }
    store.close().await;
}

on_both_backends!(
    fleet_changes_return_what_was_written_since,
    migrations_apply_from_empty_and_are_idempotent,
    enrolment_tokens_and_credentials,
    commits_account_exactly,
    concurrent_writers_never_double_count,
    any_split_into_batches_gives_the_model_totals,
    a_new_credential_starts_a_new_seq_space,
    spooled_time_is_priced_and_placed_as_incurred,
    retired_machines_keep_their_totals,
);
