//! The backend conformance suite: every `Store` method and the DESIGN §2 invariants, run
//! against SQLite and PostgreSQL alike (`NAME::postgres`, `NAME::sqlite`).

use std::sync::Arc;

use greenops_collector::accounting::{self, Cursor, Increment, Outcome, Params, Rates};
use greenops_collector::secrets::{TokenHash, generate_token};
use greenops_collector::settings::AccountingSettings;
use greenops_collector::store::{
    EnrollAuth, EnrollCommand, EnrollRefusal, HeartbeatJob, JobOutcome, NewEnrollmentToken, Store,
    StoreError,
};
use greenops_protocol::{Session, ValidEnrollment, ValidHeartbeat};
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

fn params() -> Params {
    AccountingSettings::default().params()
}

fn default_rates() -> Rates {
    Rates {
        idle_watts: dec("65"),
        active_watts: dec("120"),
        price_per_kwh: dec("0.12"),
        carbon_g_per_kwh: dec("420"),
    }
}

fn beat(seq: u64, at_s: i64, idle_s: Option<i64>) -> ValidHeartbeat {
    ValidHeartbeat {
        seq,
        sent_at_ms: T0 + at_s * 1000,
        idle_ms: idle_s.map(|s| s * 1000),
        session: Session::Active,
        cpu_usage_ratio: Some(0.25),
        memory_usage_ratio: Some(0.5),
        uptime_seconds: Some(100),
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
    let (id, _) = enroll(s, EnrollAuth::Token(t), "key-00000000000000010")
        .await
        .unwrap();
    // Two jobs for the same machine in one batch, a duplicate, and an unknown machine.
    let jobs = vec![
        HeartbeatJob {
            machine_id: id.clone(),
            received_at_ms: T0,
            heartbeats: vec![beat(1, 0, Some(0))],
        },
        HeartbeatJob {
            machine_id: "nope".into(),
            received_at_ms: T0,
            heartbeats: vec![beat(1, 0, Some(0))],
        },
        HeartbeatJob {
            machine_id: id.clone(),
            received_at_ms: T0 + 120_000,
            heartbeats: vec![
                beat(2, 60, Some(400)),
                beat(3, 120, Some(30)),
                beat(3, 120, Some(30)),
            ],
        },
    ];
    let outcomes = s.commit_heartbeats(&jobs, params()).await.unwrap();
    assert_eq!(outcomes[0], JobOutcome::Committed(vec![true]));
    assert_eq!(outcomes[1], JobOutcome::UnknownMachine);
    assert_eq!(outcomes[2], JobOutcome::Committed(vec![true, true, false]));
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
    let replay = s.commit_heartbeats(&jobs, params()).await.unwrap();
    assert_eq!(replay[2], JobOutcome::Committed(vec![false, false, false]));
    assert_eq!(totals_of(s, &id).await, (totals, costs));
    let snap = s.fleet_snapshot().await.unwrap();
    let m = snap.machines.iter().find(|m| m.id == id).unwrap();
    let last = m.last.unwrap();
    assert_eq!(
        (last.received_at_ms, last.idle_ms),
        (T0 + 120_000, Some(30_000))
    );
    assert_eq!(
        (m.cpu_usage_ratio, m.memory_usage_ratio),
        (Some(0.25), Some(0.5))
    );
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
            .unwrap()
            .0,
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
                    .map(|id| HeartbeatJob {
                        machine_id: id.clone(),
                        received_at_ms: T0,
                        heartbeats: chunk.to_vec(),
                    })
                    .collect();
                store.commit_heartbeats(&jobs, params()).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let expected = model(&beats);
    for id in &ids {
        let (got, _) = totals_of(a.as_ref(), id).await;
        assert_eq!(
            got,
            Increment {
                cost: got.cost,
                idle_cost: got.idle_cost,
                ..expected.clone()
            }
        );
    }
    a.close().await;
    b.close().await;
}

/// The pure model's totals for a stream delivered once, in order.
fn model(beats: &[ValidHeartbeat]) -> Increment {
    let mut cursor = Cursor::default();
    let mut total = Increment::default();
    for b in beats {
        if let Outcome::Accepted(inc) =
            accounting::account(&mut cursor, b, params(), &default_rates())
        {
            total.add(&inc);
        }
    }
    Increment {
        cost: Default::default(),
        idle_cost: Default::default(),
        ..total
    }
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
        let (id, _) = enroll(
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
            let job = HeartbeatJob {
                machine_id: id.clone(),
                received_at_ms: T0,
                heartbeats: beats[start..i + len].to_vec(),
            };
            store.commit_heartbeats(&[job], params()).await.unwrap();
            i += len;
            k += 1;
        }
        let (got, _) = totals_of(store.as_ref(), &id).await;
        let expected = model(&beats);
        prop_assert_eq_totals(&got, &expected);
    }
    store.close().await;
}

fn prop_assert_eq_totals(got: &Increment, expected: &Increment) {
    assert_eq!(
        (
            got.observed_ms,
            got.idle_ms,
            got.unknown_ms,
            got.energy_j,
            got.idle_energy_j,
            got.co2_g,
            got.idle_co2_g
        ),
        (
            expected.observed_ms,
            expected.idle_ms,
            expected.unknown_ms,
            expected.energy_j,
            expected.idle_energy_j,
            expected.co2_g,
            expected.idle_co2_g
        )
    );
}

on_both_backends!(
    migrations_apply_from_empty_and_are_idempotent,
    enrolment_tokens_and_credentials,
    commits_account_exactly,
    concurrent_writers_never_double_count,
    any_split_into_batches_gives_the_model_totals,
);
