//! Worked cases and property tests for the invariants of DESIGN §2.

use std::str::FromStr;

use proptest::prelude::*;

use super::*;

const T0: i64 = 1_795_771_700_000;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn params() -> Params {
    Params {
        idle_threshold_ms: 300_000,
        max_gap_ms: 180_000,
    }
}

fn rates() -> Rates {
    Rates {
        idle_watts: d("65"),
        active_watts: d("120"),
        price_per_kwh: d("0.12"),
        carbon_g_per_kwh: d("420"),
    }
}

fn hb(seq: u64, at_s: i64, idle_s: Option<i64>, session: Session) -> ValidHeartbeat {
    ValidHeartbeat {
        seq,
        sent_at_ms: T0 + at_s * 1000,
        idle_ms: idle_s.map(|s| s * 1000),
        session,
        cpu_usage_ratio: None,
        memory_usage_ratio: None,
        uptime_seconds: None,
    }
}

fn run(hbs: &[ValidHeartbeat]) -> (Cursor, Increment, Vec<Outcome>) {
    let mut cursor = Cursor::default();
    let mut total = Increment::default();
    let mut outcomes = Vec::new();
    for h in hbs {
        let o = account(&mut cursor, h, params(), &rates());
        if let Outcome::Accepted(inc) = &o {
            total.add(inc);
        }
        outcomes.push(o);
    }
    (cursor, total, outcomes)
}

#[test]
fn the_worked_scenario_of_the_issue() {
    let (_, total, _) = run(&[
        hb(1, 0, Some(0), Session::Active),
        hb(2, 60, Some(400), Session::Active),
        hb(3, 120, Some(30), Session::Active),
    ]);
    assert_eq!(total.observed_ms, 120_000);
    assert_eq!(total.idle_ms, 60_000);
    assert_eq!(total.unknown_ms, 0);
    assert_eq!(total.idle_energy_j, d("3900"));
    assert_eq!(total.energy_j, d("11100"));
    // 3900 J = 0.0010833… kWh; × 0.12 = 0.00013 exactly; × 420 g = 0.455 g.
    assert_eq!(total.idle_cost, d("0.00013"));
    assert_eq!(total.idle_co2_g, d("0.455"));
    // 11100 J × 0.12 / 3.6e6 = 0.00037; × 420 / 3.6e6 = 1.295 g.
    assert_eq!(total.cost, d("0.00037"));
    assert_eq!(total.co2_g, d("1.295"));
}

#[test]
fn first_heartbeat_is_unobserved() {
    let (cursor, total, outcomes) = run(&[hb(7, 0, Some(9999), Session::Active)]);
    assert_eq!(outcomes, vec![Outcome::Accepted(Increment::default())]);
    assert_eq!(total, Increment::default());
    assert_eq!(cursor.last_seq, 7);
}

#[test]
fn idle_below_threshold_is_not_waste_and_waste_is_clamped_to_delta() {
    let (_, total, _) = run(&[
        hb(1, 0, Some(0), Session::Active),
        hb(2, 60, Some(299), Session::Active),
        hb(3, 120, Some(310), Session::Active),
        hb(4, 180, Some(5000), Session::Active),
    ]);
    assert_eq!(total.observed_ms, 180_000);
    assert_eq!(total.idle_ms, 10_000 + 60_000);
}

#[test]
fn gaps_beyond_max_gap_and_backwards_clocks_are_unobserved() {
    let (_, total, outcomes) = run(&[
        hb(1, 0, Some(1000), Session::Active),
        hb(2, 181, Some(1000), Session::Active),
        hb(3, 181, Some(1000), Session::Active),
        hb(4, 100, Some(1000), Session::Active),
        hb(5, 280, Some(1000), Session::Active),
    ]);
    assert_eq!(outcomes.len(), 5);
    // Only 4 -> 5 (180 s, exactly max_gap) is observed.
    assert_eq!(total.observed_ms, 180_000);
    assert_eq!(total.idle_ms, 180_000);
}

#[test]
fn unknown_idle_is_observed_but_never_waste() {
    let (_, total, _) = run(&[
        hb(1, 0, None, Session::Unknown),
        hb(2, 60, None, Session::Unknown),
    ]);
    assert_eq!(total.observed_ms, 60_000);
    assert_eq!(total.unknown_ms, 60_000);
    assert_eq!(total.idle_ms, 0);
    assert_eq!(total.idle_energy_j, Decimal::ZERO);
    assert_eq!(total.energy_j, d("3900"));
    assert_eq!(total.idle_cost, Decimal::ZERO);
}

#[test]
fn locked_and_logged_off_sessions_are_idle_without_grace() {
    for session in [Session::Locked, Session::None] {
        let (_, total, _) = run(&[
            hb(1, 0, Some(0), Session::Active),
            hb(2, 60, Some(45), session),
        ]);
        assert_eq!(total.idle_ms, 45_000, "{session:?}");
        assert_eq!(total.idle_energy_j, d("2925"));
        assert_eq!(total.energy_j, d("2925") + d("1800"));
    }
}

#[test]
fn duplicates_change_nothing() {
    let (cursor, total, outcomes) = run(&[
        hb(1, 0, Some(0), Session::Active),
        hb(2, 60, Some(400), Session::Active),
        hb(2, 60, Some(400), Session::Active),
        hb(1, 0, Some(0), Session::Active),
    ]);
    assert_eq!(outcomes[2], Outcome::Duplicate);
    assert_eq!(outcomes[3], Outcome::Duplicate);
    assert_eq!(cursor.last_seq, 2);
    assert_eq!(total.idle_ms, 60_000);
}

#[test]
fn fractional_watts_and_prices_stay_exact() {
    let rates = Rates {
        idle_watts: d("12.345"),
        active_watts: d("47.5"),
        price_per_kwh: d("0.3171"),
        carbon_g_per_kwh: d("233.7"),
    };
    let mut c = Cursor::default();
    let _ = account(
        &mut c,
        &hb(1, 0, Some(0), Session::Active),
        params(),
        &rates,
    );
    let Outcome::Accepted(inc) = account(
        &mut c,
        &hb(2, 61, Some(400), Session::Active),
        params(),
        &rates,
    ) else {
        panic!()
    };
    assert_eq!(inc.idle_energy_j, d("753.045"));
    assert!(inc.cost.scale() <= MONEY_SCALE);
}

#[test]
fn status_is_derived_from_the_last_report() {
    let last = |idle: Option<i64>, session| {
        Some(LastReport {
            received_at_ms: 1_000_000,
            idle_ms: idle,
            session,
        })
    };
    let st = |l, now| status(l, now, 180_000, 300_000);
    assert_eq!(st(None, 0), Status::Offline);
    assert_eq!(
        st(last(Some(0), Session::Active), 1_180_001),
        Status::Offline
    );
    assert_eq!(
        st(last(Some(0), Session::Active), 1_180_000),
        Status::Active
    );
    assert_eq!(st(last(None, Session::Active), 1_000_000), Status::Unknown);
    assert_eq!(
        st(last(Some(300_000), Session::Active), 1_000_000),
        Status::Idle
    );
    assert_eq!(st(last(Some(1), Session::Locked), 1_000_000), Status::Idle);
    assert_eq!(st(last(Some(1), Session::None), 1_000_000), Status::Idle);
    assert_eq!(
        st(last(Some(299_999), Session::Unknown), 1_000_000),
        Status::Active
    );
}

fn session_strategy() -> impl Strategy<Value = Session> {
    prop_oneof![
        Just(Session::Active),
        Just(Session::Locked),
        Just(Session::None),
        Just(Session::Unknown),
    ]
}

/// A plausible agent stream over real (receive) time, which only moves forward: strictly
/// increasing seq (with holes), intervals with occasional long gaps, unknown idle, and an agent
/// clock that sometimes steps backwards (NTP corrections). Returns `(real_ms, heartbeat)`.
fn stream() -> impl Strategy<Value = Vec<(i64, ValidHeartbeat)>> {
    proptest::collection::vec(
        (
            1u64..4,
            prop_oneof![8 => 1i64..120_000, 1 => 120_000i64..400_000],
            proptest::option::weighted(0.1, 1i64..300_000),
            proptest::option::weighted(0.9, 0i64..2_000_000),
            session_strategy(),
        ),
        1..60,
    )
    .prop_map(|steps| {
        let (mut seq, mut real, mut offset) = (0, T0, 0);
        steps
            .into_iter()
            .map(|(dseq, dt, step_back, idle, session)| {
                seq += dseq;
                real += dt;
                offset -= step_back.unwrap_or(0);
                let hb = ValidHeartbeat {
                    seq,
                    sent_at_ms: real + offset,
                    idle_ms: idle,
                    session,
                    cpu_usage_ratio: None,
                    memory_usage_ratio: None,
                    uptime_seconds: None,
                };
                (real, hb)
            })
            .collect()
    })
}

fn beats(s: &[(i64, ValidHeartbeat)]) -> Vec<ValidHeartbeat> {
    s.iter().map(|(_, h)| *h).collect()
}

proptest! {
    #[test]
    fn replaying_any_subset_never_changes_totals(
        s in stream(),
        replay in proptest::collection::vec(any::<prop::sample::Index>(), 0..30),
    ) {
        let hbs = beats(&s);
        let (mut cursor, total, _) = run(&hbs);
        for i in replay {
            let h = hbs[i.index(hbs.len())];
            prop_assert_eq!(account(&mut cursor, &h, params(), &rates()), Outcome::Duplicate);
        }
        let (_, again, _) = run(&hbs);
        prop_assert_eq!(total, again);
    }

    #[test]
    fn observed_time_never_exceeds_wall_time(s in stream()) {
        let (_, total, _) = run(&beats(&s));
        let wall = s.last().unwrap().0 - s.first().unwrap().0;
        prop_assert!(total.observed_ms <= wall);
        prop_assert!(total.idle_ms + total.unknown_ms <= total.observed_ms);
        prop_assert!(total.idle_energy_j <= total.energy_j);
        prop_assert!(total.idle_cost <= total.cost);
        prop_assert!(total.idle_co2_g <= total.co2_g);
    }

    #[test]
    fn gaps_beyond_max_gap_add_nothing(s in stream()) {
        let hbs = beats(&s);
        let mut cursor = Cursor::default();
        for h in &hbs {
            let prev = cursor.last_sent_at_ms;
            let o = account(&mut cursor, h, params(), &rates());
            if let (Some(p), Outcome::Accepted(inc)) = (prev, o) {
                let delta = h.sent_at_ms - p;
                if delta <= 0 || delta > params().max_gap_ms {
                    prop_assert_eq!(inc, Increment::default());
                } else {
                    prop_assert_eq!(inc.observed_ms, delta);
                }
            }
        }
    }

    #[test]
    fn sum_of_increments_is_the_total_to_the_last_digit(s in stream()) {
        let (_, total, outcomes) = run(&beats(&s));
        let cost: Decimal = outcomes.iter().filter_map(|o| match o {
            Outcome::Accepted(i) => Some(i.cost),
            Outcome::Duplicate => None,
        }).sum();
        prop_assert_eq!(cost, total.cost);
        for o in &outcomes {
            if let Outcome::Accepted(i) = o {
                prop_assert!(i.cost.scale() <= MONEY_SCALE && i.co2_g.scale() <= MONEY_SCALE);
            }
        }
    }

    #[test]
    fn delayed_batched_delivery_equals_live_delivery(s in stream(), cut in any::<prop::sample::Index>()) {
        let hbs = beats(&s);
        // Live: every heartbeat as it is made. Outage: the first part live, the rest spooled
        // and delivered later in one go, with the already delivered ones replayed too.
        let (_, live, _) = run(&hbs);
        let k = cut.index(hbs.len());
        let mut cursor = Cursor::default();
        let mut total = Increment::default();
        for h in hbs[..k].iter().chain(hbs.iter()) {
            if let Outcome::Accepted(inc) = account(&mut cursor, h, params(), &rates()) {
                total.add(&inc);
            }
        }
        prop_assert_eq!(live, total);
    }
}
