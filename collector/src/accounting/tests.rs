//! Worked cases and property tests for the invariants of DESIGN §2 (v2).
//!
//! The property tests compare [`account`] with a second-by-second reference model that knows
//! nothing about splitting: it asks the rate book what was in force at every second of every
//! observed interval and adds those seconds up. Heartbeats, rate changes and moves happen on
//! whole seconds (time zone transitions do too), so the reference sees every boundary.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use greenops_protocol::ValidHeartbeat;
use jiff::tz::TimeZone;
use proptest::prelude::*;

use super::rates::{
    Band, HOUR_MS, Placement, ProfileVersion, SettingsVersion, SiteVersion, SpanSpec, Tariff,
    default_business_hours, in_force,
};
use super::*;

/// 2026-03-28T20:00:00Z, a Saturday evening: streams cross midnight, the Paris spring-forward
/// transition (2026-03-29T01:00Z) and, when long, Monday's business hours.
const T0: i64 = 1_774_728_000_000;
const PARIS: i64 = 1;
const TOKYO: i64 = 2;
const DESKTOP: i64 = 10;
const LAPTOP: i64 = 11;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn site(tz: &str, currency: &str, price: &str, carbon: &str) -> SiteVersion {
    SiteVersion {
        effective_from_ms: i64::MIN,
        timezone: TimeZone::get(tz).unwrap_or_else(|e| panic!("{tz}: {e}")),
        tariff: Tariff {
            currency: currency.into(),
            price_per_kwh: d(price),
            bands: Vec::new(),
        },
        carbon_g_per_kwh: d(carbon),
        business_hours: default_business_hours(),
        holidays: BTreeSet::new(),
        idle_threshold_ms: None,
    }
}

fn profile(from: i64, idle: &str, active: &str, sleep: &str) -> ProfileVersion {
    ProfileVersion {
        effective_from_ms: from,
        idle_watts: d(idle),
        active_watts: d(active),
        sleep_watts: d(sleep),
    }
}

fn placement(from: i64, site_id: i64, department: &str, profile_id: i64) -> Placement {
    Placement {
        effective_from_ms: from,
        site_id,
        department: department.into(),
        profile_id,
    }
}

/// One UTC site with a flat tariff, the desktop profile (65 / 120 / 2 W), default settings.
fn flat_book() -> RateBook {
    let mut book = RateBook::default();
    book.sites
        .insert(PARIS, vec![site("UTC", "EUR", "0.12", "420")]);
    book.profiles
        .insert(DESKTOP, vec![profile(i64::MIN, "65", "120", "2")]);
    book
}

fn at_paris() -> Vec<Placement> {
    vec![placement(i64::MIN, PARIS, "sales", DESKTOP)]
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
        idle_source: None,
    }
}

/// Totals of a run, by attribution, and the outcomes.
struct Run {
    cursor: Cursor,
    total: Increment,
    by_attribution: BTreeMap<Attribution, Increment>,
    outcomes: Vec<Outcome>,
}

fn run_with(hbs: &[ValidHeartbeat], placements: &[Placement], book: &RateBook) -> Run {
    let mut run = Run {
        cursor: Cursor::default(),
        total: Increment::default(),
        by_attribution: BTreeMap::new(),
        outcomes: Vec::new(),
    };
    for h in hbs {
        let outcome =
            account(&mut run.cursor, h, placements, book).unwrap_or_else(|e| panic!("{e}"));
        run.add(&outcome);
        run.outcomes.push(outcome);
    }
    run
}

impl Run {
    fn add(&mut self, outcome: &Outcome) {
        if let Outcome::Accepted(accepted) = outcome {
            for part in &accepted.parts {
                self.total.add(&part.increment);
                self.by_attribution
                    .entry(part.attribution.clone())
                    .or_default()
                    .add(&part.increment);
            }
        }
    }
}

fn run(hbs: &[ValidHeartbeat]) -> Run {
    run_with(hbs, &at_paris(), &flat_book())
}

#[test]
fn the_worked_scenario_of_the_readme() {
    let total = run(&[
        hb(1, 0, Some(0), Session::Active),
        hb(2, 60, Some(400), Session::Active),
        hb(3, 120, Some(30), Session::Active),
    ])
    .total;
    assert_eq!(total.observed_ms, 120_000);
    assert_eq!(total.idle_ms, 60_000);
    assert_eq!(total.unknown_ms, 0);
    assert_eq!(total.idle_energy_j, d("3900"));
    assert_eq!(total.energy_j, d("11100"));
    // Sleeping would have drawn 2 W instead of 65 W: 60 s × 63 W.
    assert_eq!(total.avoidable_energy_j, d("3780"));
    // 3900 J = 0.0010833… kWh; × 0.12 = 0.00013 exactly; × 420 g = 0.455 g.
    assert_eq!(total.idle_cost, d("0.00013"));
    assert_eq!(total.idle_co2_g, d("0.455"));
    assert_eq!(total.avoidable_cost, d("0.000126"));
    // 11100 J × 0.12 / 3.6e6 = 0.00037; × 420 / 3.6e6 = 1.295 g.
    assert_eq!(total.cost, d("0.00037"));
    assert_eq!(total.co2_g, d("1.295"));
    // Saturday evening: all of the waste is after hours.
    assert_eq!(total.after_hours_idle_ms, 60_000);
    assert_eq!(total.after_hours_idle_energy_j, d("3900"));
}

#[test]
fn first_heartbeat_is_unobserved() {
    let r = run(&[hb(7, 0, Some(9999), Session::Active)]);
    assert_eq!(r.outcomes, vec![Outcome::Accepted(Accepted::default())]);
    assert_eq!(r.total, Increment::default());
    assert_eq!(r.cursor.last_seq, 7);
    assert_eq!(r.cursor.hw_ms, Some(T0));
}

#[test]
fn idle_below_threshold_is_not_waste_and_waste_is_clamped_to_delta() {
    let total = run(&[
        hb(1, 0, Some(0), Session::Active),
        hb(2, 60, Some(299), Session::Active),
        hb(3, 120, Some(310), Session::Active),
        hb(4, 180, Some(5000), Session::Active),
    ])
    .total;
    assert_eq!(total.observed_ms, 180_000);
    assert_eq!(total.idle_ms, 10_000 + 60_000);
}

#[test]
fn gaps_beyond_max_gap_are_coverage_not_time() {
    let r = run(&[
        hb(1, 0, Some(1000), Session::Active),
        hb(2, 181, Some(1000), Session::Active),
        hb(3, 361, Some(1000), Session::Active),
    ]);
    assert_eq!(r.total.observed_ms, 180_000);
    assert_eq!(r.total.gap_ms, 181_000);
    assert_eq!(r.total.energy_j, d("11700"));
}

/// Issue #13, item 1: a clock alternating between t+i and t+i+179 s used to count 3 580 s of
/// observed time in 198 s of wall time. From the high-water mark it counts what the latest
/// clock reading covers, never more.
#[test]
fn a_clock_stepping_back_and_forth_never_re_counts_time() {
    let hbs: Vec<_> = (0..40)
        .map(|i| {
            let at = i + if i % 2 == 1 { 179 } else { 0 };
            hb(i as u64 + 1, at, Some(0), Session::Active)
        })
        .collect();
    let total = run(&hbs).total;
    let last = hbs.iter().map(|h| h.sent_at_ms).max().unwrap_or_default();
    assert!(total.observed_ms <= last - T0, "{}", total.observed_ms);
    // 0 → 180 s, then 2 s from each odd reading to the next one; the even ones are behind.
    assert_eq!(total.observed_ms, 180_000 + 19 * 2_000);
}

#[test]
fn unknown_idle_is_observed_but_never_waste() {
    let total = run(&[
        hb(1, 0, None, Session::Unknown),
        hb(2, 60, None, Session::Unknown),
    ])
    .total;
    assert_eq!(total.observed_ms, 60_000);
    assert_eq!(total.unknown_ms, 60_000);
    assert_eq!(total.idle_ms, 0);
    assert_eq!(total.idle_energy_j, Decimal::ZERO);
    assert_eq!(total.avoidable_energy_j, Decimal::ZERO);
    assert_eq!(total.energy_j, d("3900"));
    assert_eq!(total.idle_cost, Decimal::ZERO);
}

/// Issue #13, item 7: a locked screen gets the same grace period as an unlocked one.
#[test]
fn locked_and_logged_off_sessions_get_the_same_threshold() {
    for session in [Session::Locked, Session::None, Session::Active] {
        let total = run(&[
            hb(1, 0, Some(0), Session::Active),
            hb(2, 60, Some(45), session),
            hb(3, 120, Some(330), session),
        ])
        .total;
        assert_eq!(total.idle_ms, 30_000, "{session:?}");
    }
}

#[test]
fn a_site_may_override_the_threshold() {
    let mut book = flat_book();
    book.sites.get_mut(&PARIS).unwrap()[0].idle_threshold_ms = Some(60_000);
    let total = run_with(
        &[
            hb(1, 0, Some(0), Session::Active),
            hb(2, 60, Some(90), Session::Active),
        ],
        &at_paris(),
        &book,
    )
    .total;
    assert_eq!(total.idle_ms, 30_000);
}

#[test]
fn duplicates_change_nothing() {
    let r = run(&[
        hb(1, 0, Some(0), Session::Active),
        hb(2, 60, Some(400), Session::Active),
        hb(2, 60, Some(400), Session::Active),
        hb(1, 0, Some(0), Session::Active),
    ]);
    assert_eq!(r.outcomes[2], Outcome::Duplicate);
    assert_eq!(r.outcomes[3], Outcome::Duplicate);
    assert_eq!(r.cursor.last_seq, 2);
    assert_eq!(r.total.idle_ms, 60_000);
}

/// Issue #13, item 2: an interval is priced with the tariff in force while it was incurred,
/// whenever it is delivered, and split exactly where the price changed.
#[test]
fn a_price_change_inside_an_interval_splits_it_exactly() {
    let mut book = flat_book();
    let mut cheaper = site("UTC", "EUR", "0.06", "420");
    cheaper.effective_from_ms = T0 + 20_000;
    book.sites.get_mut(&PARIS).unwrap().push(cheaper);
    let r = run_with(
        &[
            hb(1, 0, Some(0), Session::Active),
            hb(2, 60, Some(0), Session::Active),
        ],
        &at_paris(),
        &book,
    );
    // 20 s × 120 W at 0.12 and 40 s × 120 W at 0.06 per kWh.
    assert_eq!(r.total.energy_j, d("7200"));
    assert_eq!(
        r.total.cost,
        per_kwh(d("2400"), d("0.12")) + per_kwh(d("4800"), d("0.06"))
    );
}

#[test]
fn time_of_use_bands_and_imported_intensity_split_an_interval() {
    let mut book = flat_book();
    let paris = &mut book.sites.get_mut(&PARIS).unwrap()[0];
    paris.timezone = TimeZone::get("Europe/Paris").unwrap_or(TimeZone::UTC);
    // Saturday 21:00–22:00 local is 20:00–21:00 UTC (T0 is 20:00 UTC).
    paris.tariff.bands = vec![Band {
        span: SpanSpec {
            days: vec!["sat".into()],
            start: "21:00".into(),
            end: "22:00".into(),
        }
        .parse()
        .unwrap_or_else(|e| panic!("{e}")),
        price_per_kwh: d("0.30"),
    }];
    // The hour from 21:00 UTC has an imported intensity of 100 g/kWh.
    book.intensity
        .insert(PARIS, BTreeMap::from([(T0 + HOUR_MS, d("100"))]));
    let r = run_with(
        &[
            hb(1, 3540, Some(0), Session::Active),
            hb(2, 3660, Some(0), Session::Active),
        ],
        &at_paris(),
        &book,
    );
    // 60 s in the band at 420 g, 60 s after it at 100 g: two parts, in two hours.
    let Outcome::Accepted(accepted) = &r.outcomes[1] else {
        panic!("{:?}", r.outcomes[1])
    };
    assert_eq!(accepted.parts.len(), 2);
    assert_eq!(accepted.parts[0].hour_ms, T0);
    assert_eq!(accepted.parts[1].hour_ms, T0 + HOUR_MS);
    assert_eq!(r.total.energy_j, d("14400"));
    assert_eq!(r.total.cost, d("0.0006") + d("0.00024"));
    assert_eq!(r.total.co2_g, d("0.84") + d("0.2"));
}

/// Issue #13, item 3: a move splits the interval it happens in; the past stays where it was.
#[test]
fn a_move_keeps_the_past_where_it_was_incurred() {
    let mut book = flat_book();
    book.sites
        .insert(TOKYO, vec![site("Asia/Tokyo", "JPY", "31", "450")]);
    let placements = vec![
        placement(i64::MIN, TOKYO, "sales", DESKTOP),
        placement(T0 + 30_000, PARIS, "it", DESKTOP),
    ];
    let r = run_with(
        &[
            hb(1, 0, Some(0), Session::Active),
            hb(2, 60, Some(0), Session::Active),
        ],
        &placements,
        &book,
    );
    let currencies: Vec<_> = r
        .by_attribution
        .keys()
        .map(|a| (a.site_id, a.department.as_str(), a.currency.as_str()))
        .collect();
    assert_eq!(
        currencies,
        vec![(PARIS, "it", "EUR"), (TOKYO, "sales", "JPY")]
    );
    for inc in r.by_attribution.values() {
        assert_eq!(inc.observed_ms, 30_000);
    }
}

#[test]
fn a_threshold_change_applies_from_when_it_was_made() {
    let mut book = flat_book();
    book.settings = vec![
        SettingsVersion {
            effective_from_ms: i64::MIN,
            idle_threshold_ms: 300_000,
            max_gap_ms: 180_000,
        },
        SettingsVersion {
            effective_from_ms: T0 + 90_000,
            idle_threshold_ms: 60_000,
            max_gap_ms: 180_000,
        },
    ];
    let r = run_with(
        &[
            hb(1, 0, Some(0), Session::Active),
            hb(2, 60, Some(100), Session::Active),
            hb(3, 120, Some(100), Session::Active),
        ],
        &at_paris(),
        &book,
    );
    // The first interval ends before the change (100 s < 300 s); the second after (40 s).
    assert_eq!(r.total.idle_ms, 40_000);
}

#[test]
fn sleep_watts_above_idle_watts_avoid_nothing() {
    let mut book = flat_book();
    book.profiles
        .insert(DESKTOP, vec![profile(i64::MIN, "5", "10", "7")]);
    let total = run_with(
        &[
            hb(1, 0, Some(1000), Session::Active),
            hb(2, 60, Some(1000), Session::Active),
        ],
        &at_paris(),
        &book,
    )
    .total;
    assert_eq!(total.idle_energy_j, d("300"));
    assert_eq!(total.avoidable_energy_j, Decimal::ZERO);
}

#[test]
fn fractional_watts_and_prices_stay_exact() {
    let mut book = flat_book();
    book.profiles
        .insert(DESKTOP, vec![profile(i64::MIN, "12.345", "47.5", "0.5")]);
    book.sites
        .insert(PARIS, vec![site("UTC", "EUR", "0.3171", "233.7")]);
    let r = run_with(
        &[
            hb(1, 0, Some(0), Session::Active),
            hb(2, 61, Some(400), Session::Active),
        ],
        &at_paris(),
        &book,
    );
    assert_eq!(r.total.idle_energy_j, d("753.045"));
    assert!(r.total.cost.scale() <= MONEY_SCALE);
}

/// The worked example of the README (docs/ACCOUNTING.md): a Paris site with a peak band that
/// ends at 18:30 local time, one imported hour of grid intensity, an interval that crosses
/// the band's end, a gap, and an interval that crosses into an hour without imported values.
#[test]
fn the_documented_worked_example() {
    // 2026-12-01 is a Tuesday; Paris is UTC+1 in winter.
    let at = |text: &str| {
        text.parse::<jiff::Timestamp>()
            .map(|t| t.as_millisecond())
            .unwrap_or_else(|e| panic!("{text}: {e}"))
    };
    let mut paris = site("Europe/Paris", "EUR", "0.18", "60");
    paris.tariff.bands = vec![Band {
        span: SpanSpec {
            days: vec![
                "mon".into(),
                "tue".into(),
                "wed".into(),
                "thu".into(),
                "fri".into(),
            ],
            start: "08:00".into(),
            end: "18:30".into(),
        }
        .parse()
        .unwrap_or_else(|e| panic!("{e}")),
        price_per_kwh: d("0.30"),
    }];
    let mut book = RateBook::default();
    book.sites.insert(PARIS, vec![paris]);
    book.profiles
        .insert(DESKTOP, vec![profile(i64::MIN, "65", "120", "2")]);
    book.intensity.insert(
        PARIS,
        BTreeMap::from([(at("2026-12-01T17:00:00Z"), d("36"))]),
    );
    let beat = |seq, sent: &str, idle_s: i64| ValidHeartbeat {
        seq,
        sent_at_ms: at(sent),
        idle_ms: Some(idle_s * 1000),
        session: Session::Active,
        cpu_usage_ratio: None,
        memory_usage_ratio: None,
        uptime_seconds: None,
        idle_source: None,
    };
    let r = run_with(
        &[
            beat(1, "2026-12-01T17:29:00Z", 10),
            beat(2, "2026-12-01T17:31:00Z", 420),
            beat(3, "2026-12-01T17:59:00Z", 0),
            beat(4, "2026-12-01T18:01:00Z", 30),
        ],
        &at_paris(),
        &book,
    );
    let t = &r.total;
    assert_eq!(
        (t.observed_ms, t.idle_ms, t.gap_ms),
        (240_000, 120_000, 1_680_000)
    );
    assert_eq!(t.after_hours_idle_ms, 120_000);
    assert_eq!(
        (t.energy_j, t.idle_energy_j, t.avoidable_energy_j),
        (d("22200"), d("7800"), d("7560"))
    );
    assert_eq!(
        (t.cost, t.idle_cost, t.avoidable_cost),
        (d("0.00124"), d("0.00052"), d("0.000504"))
    );
    assert_eq!(
        (t.co2_g, t.idle_co2_g, t.avoidable_co2_g),
        (d("0.27"), d("0.078"), d("0.0756"))
    );
    // Stored as two hourly rows: 17:00 (both intervals' first parts) and 18:00.
    let hours: BTreeSet<i64> = r
        .outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Accepted(a) => Some(a.parts.iter().map(|p| p.hour_ms).collect::<Vec<_>>()),
            Outcome::Duplicate => None,
        })
        .flatten()
        .collect();
    assert_eq!(
        hours,
        BTreeSet::from([at("2026-12-01T17:00:00Z"), at("2026-12-01T18:00:00Z")])
    );
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

// ---------------------------------------------------------------------------------------------
// Property tests.

fn session_strategy() -> impl Strategy<Value = Session> {
    prop_oneof![
        Just(Session::Active),
        Just(Session::Locked),
        Just(Session::None),
        Just(Session::Unknown),
    ]
}

/// A heartbeat and the real (collector) time it is delivered at when live.
#[derive(Debug, Clone, Copy)]
struct Sent {
    real_ms: i64,
    hb: ValidHeartbeat,
}

/// A plausible agent stream over real time, which only moves forward: strictly increasing seq
/// (with holes), intervals with occasional long gaps, unknown idle, and an agent clock that
/// steps backwards and forwards but is never ahead of real time (a clock ahead of the collector
/// is what the clock-skew rule is for). Whole seconds throughout.
fn stream() -> impl Strategy<Value = Vec<Sent>> {
    proptest::collection::vec(
        (
            1u64..4,
            prop_oneof![8 => 1i64..120, 1 => 120i64..400],
            prop_oneof![8 => Just(0i64), 1 => -300i64..300],
            proptest::option::weighted(0.9, 0i64..2_000),
            session_strategy(),
        ),
        1..60,
    )
    .prop_map(|steps| {
        let (mut seq, mut real, mut offset) = (0, T0, 0i64);
        steps
            .into_iter()
            .map(|(dseq, dt, step, idle, session)| {
                seq += dseq;
                real += dt * 1000;
                offset = (offset + step * 1000).min(0);
                Sent {
                    real_ms: real,
                    hb: ValidHeartbeat {
                        seq,
                        sent_at_ms: real + offset,
                        idle_ms: idle.map(|s| s * 1000),
                        session,
                        cpu_usage_ratio: None,
                        memory_usage_ratio: None,
                        uptime_seconds: None,
                        idle_source: None,
                    },
                }
            })
            .collect()
    })
}

/// A change made at `made_ms` (real time), effective from `made_ms + delay_ms`.
#[derive(Debug, Clone)]
enum Change {
    Price(&'static str),
    Watts(&'static str, &'static str, &'static str),
    Move(i64, &'static str, i64),
    Threshold(i64, i64),
    Intensity(&'static str),
}

#[derive(Debug, Clone)]
struct Timed {
    made_ms: i64,
    delay_ms: i64,
    change: Change,
}

fn changes() -> impl Strategy<Value = Vec<Timed>> {
    let change = prop_oneof![
        prop_oneof![Just("0.31"), Just("0.07"), Just("0.1234")].prop_map(Change::Price),
        prop_oneof![
            Just(("65", "120", "2")),
            Just(("12.5", "40", "0.7")),
            Just(("30", "30", "30"))
        ]
        .prop_map(|(i, a, s)| Change::Watts(i, a, s)),
        (
            prop_oneof![Just(PARIS), Just(TOKYO)],
            prop_oneof![Just("sales"), Just("it")],
            prop_oneof![Just(DESKTOP), Just(LAPTOP)]
        )
            .prop_map(|(s, dpt, p)| Change::Move(s, dpt, p)),
        (30i64..600, 60i64..400).prop_map(|(t, g)| Change::Threshold(t * 1000, g * 1000)),
        prop_oneof![Just("12.5"), Just("700"), Just("0")].prop_map(Change::Intensity),
    ];
    proptest::collection::vec(
        (
            0i64..8 * 3600,
            prop_oneof![3 => Just(0i64), 1 => 1i64..7200],
            change,
        )
            .prop_map(|(at, delay, change)| Timed {
                made_ms: T0 + at * 1000,
                delay_ms: delay * 1000,
                change,
            }),
        0..8,
    )
}

/// The rate book and placements known at real time `now_ms`: the base figures and every change
/// made by then.
fn known_at(changes: &[Timed], now_ms: i64) -> (RateBook, Vec<Placement>) {
    let mut book = RateBook::default();
    let mut paris = site("Europe/Paris", "EUR", "0.20", "60");
    paris.tariff.bands = vec![Band {
        span: SpanSpec {
            days: vec![
                "mon".into(),
                "tue".into(),
                "wed".into(),
                "thu".into(),
                "fri".into(),
            ],
            start: "07:00".into(),
            end: "19:00".into(),
        }
        .parse()
        .unwrap_or_else(|e| panic!("{e}")),
        price_per_kwh: d("0.29"),
    }];
    book.sites.insert(PARIS, vec![paris]);
    book.sites
        .insert(TOKYO, vec![site("Asia/Tokyo", "JPY", "31", "450")]);
    book.profiles
        .insert(DESKTOP, vec![profile(i64::MIN, "65", "120", "2")]);
    book.profiles
        .insert(LAPTOP, vec![profile(i64::MIN, "8.5", "25", "0.5")]);
    // The store always holds a first version of the settings, from the beginning of time (the
    // first version of anything also applies before it).
    book.settings.push(SettingsVersion {
        effective_from_ms: i64::MIN,
        idle_threshold_ms: 300_000,
        max_gap_ms: 180_000,
    });
    let mut placements = vec![placement(i64::MIN, PARIS, "sales", DESKTOP)];
    let mut made: Vec<&Timed> = changes.iter().filter(|c| c.made_ms <= now_ms).collect();
    made.sort_by_key(|c| c.made_ms);
    for c in made {
        let from = c.made_ms + c.delay_ms;
        // What the store does: a new version applies from its moment on, and later versions
        // scheduled before it was made stay (the list is kept sorted by effective_from).
        match &c.change {
            Change::Price(price) => {
                let versions = book.sites.entry(PARIS).or_default();
                let mut v = versions[0].clone();
                v.effective_from_ms = from;
                v.tariff.price_per_kwh = d(price);
                versions.push(v);
                versions.sort_by_key(|v| v.effective_from_ms);
            }
            Change::Watts(i, a, s) => {
                let versions = book.profiles.entry(DESKTOP).or_default();
                versions.push(profile(from, i, a, s));
                versions.sort_by_key(|v| v.effective_from_ms);
            }
            Change::Move(site_id, department, profile_id) => {
                placements.push(placement(from, *site_id, department, *profile_id));
                placements.sort_by_key(|p| p.effective_from_ms);
            }
            Change::Threshold(threshold, gap) => {
                book.settings.push(SettingsVersion {
                    effective_from_ms: from,
                    idle_threshold_ms: *threshold,
                    max_gap_ms: *gap,
                });
                book.settings.sort_by_key(|v| v.effective_from_ms);
            }
            Change::Intensity(value) => {
                // Imports are refused for hours that have started: the first whole hour after.
                let hour = (from.div_euclid(HOUR_MS) + 1) * HOUR_MS;
                book.intensity
                    .entry(TOKYO)
                    .or_default()
                    .insert(hour, d(value));
            }
        }
    }
    (book, placements)
}

/// The reference model: every observed second on its own, with what was in force then.
/// Energy and time are exact; money is not rounded here (the model rounds once per stored
/// stretch).
fn reference(hbs: &[ValidHeartbeat], placements: &[Placement], book: &RateBook) -> Increment {
    let mut total = Increment::default();
    let mut last_seq = 0;
    let mut hw: Option<i64> = None;
    for h in hbs {
        if h.seq <= last_seq {
            continue;
        }
        last_seq = h.seq;
        let end = h.sent_at_ms;
        let Some(start) = hw else {
            hw = Some(end);
            continue;
        };
        hw = Some(start.max(end));
        let settings = book.settings_at(end);
        let place = in_force(placements, end).unwrap_or_else(|| panic!("placement"));
        let threshold = book
            .site_at(place.site_id, end)
            .and_then(|s| s.idle_threshold_ms)
            .unwrap_or(settings.idle_threshold_ms);
        let delta = end - start;
        if delta <= 0 {
            continue;
        }
        if delta > settings.max_gap_ms {
            total.gap_ms += delta;
            continue;
        }
        let waste = h.idle_ms.map(|i| (i - threshold).clamp(0, delta));
        let mut second = start;
        while second < end {
            let p = in_force(placements, second).unwrap_or_else(|| panic!("placement"));
            let site = book
                .site_at(p.site_id, second)
                .unwrap_or_else(|| panic!("site"));
            let watts = book
                .profile_at(p.profile_id, second)
                .unwrap_or_else(|| panic!("profile"));
            let price = site.price_at(second) / Decimal::from(3_600_000);
            let carbon = book.carbon_at(p.site_id, site, second) / Decimal::from(3_600_000);
            let energy_before = total.energy_j;
            let avoidable_before = total.avoidable_energy_j;
            total.observed_ms += 1000;
            match waste {
                None => {
                    total.unknown_ms += 1000;
                    total.energy_j += watts.idle_watts;
                }
                Some(w) if second >= end - w => {
                    total.idle_ms += 1000;
                    total.energy_j += watts.idle_watts;
                    total.idle_energy_j += watts.idle_watts;
                    total.avoidable_energy_j +=
                        (watts.idle_watts - watts.sleep_watts).max(Decimal::ZERO);
                    if site.after_hours_at(second) {
                        total.after_hours_idle_ms += 1000;
                        total.after_hours_idle_energy_j += watts.idle_watts;
                    }
                }
                Some(_) => total.energy_j += watts.active_watts,
            }
            total.cost += (total.energy_j - energy_before) * price;
            total.co2_g += (total.energy_j - energy_before) * carbon;
            total.avoidable_cost += (total.avoidable_energy_j - avoidable_before) * price;
            second += 1000;
        }
    }
    total
}

/// The exact figures (time and energy), normalised for comparison.
fn exact_part(inc: &Increment) -> Increment {
    Increment {
        co2_g: Decimal::ZERO,
        idle_co2_g: Decimal::ZERO,
        avoidable_co2_g: Decimal::ZERO,
        energy_j: inc.energy_j.normalize(),
        idle_energy_j: inc.idle_energy_j.normalize(),
        avoidable_energy_j: inc.avoidable_energy_j.normalize(),
        after_hours_idle_energy_j: inc.after_hours_idle_energy_j.normalize(),
        ..inc.without_money()
    }
}

fn beats(s: &[Sent]) -> Vec<ValidHeartbeat> {
    s.iter().map(|s| s.hb).collect()
}

/// Delivers `order` (indices into `s`) with the book known at each delivery's real time.
fn deliver(s: &[Sent], order: &[(usize, i64)], changes: &[Timed]) -> Run {
    let mut run = Run {
        cursor: Cursor::default(),
        total: Increment::default(),
        by_attribution: BTreeMap::new(),
        outcomes: Vec::new(),
    };
    for &(i, at_ms) in order {
        let (book, placements) = known_at(changes, at_ms);
        let outcome = account(&mut run.cursor, &s[i].hb, &placements, &book)
            .unwrap_or_else(|e| panic!("{e}"));
        run.add(&outcome);
        run.outcomes.push(outcome);
    }
    run
}

const FOREVER: i64 = i64::MAX;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn splitting_matches_the_second_by_second_reference(s in stream(), ch in changes()) {
        let (book, placements) = known_at(&ch, FOREVER);
        let hbs = beats(&s);
        let got = run_with(&hbs, &placements, &book);
        let want = reference(&hbs, &placements, &book);
        prop_assert_eq!(exact_part(&got.total), exact_part(&want));
        // Money: rounded once per stored stretch (half a unit of the 12th place at most), so
        // a wrong price or intensity shows far above the tolerance.
        let tolerance = Decimal::new(1, 9);
        prop_assert!((got.total.cost - want.cost).abs() <= tolerance, "{} vs {}", got.total.cost, want.cost);
        prop_assert!((got.total.co2_g - want.co2_g).abs() <= tolerance);
        prop_assert!((got.total.avoidable_cost - want.avoidable_cost).abs() <= tolerance);
        for o in &got.outcomes {
            if let Outcome::Accepted(a) = o {
                for p in &a.parts {
                    for v in [p.increment.cost, p.increment.idle_cost, p.increment.co2_g] {
                        prop_assert!(v.scale() <= MONEY_SCALE);
                    }
                }
            }
        }
    }

    #[test]
    fn splitting_never_changes_time_totals(s in stream(), ch in changes()) {
        // With every change but the ones that decide what an interval is (threshold, gap), the
        // time figures are those of a book without any change at all.
        let prices_only: Vec<Timed> = ch
            .into_iter()
            .filter(|c| !matches!(c.change, Change::Threshold(..)))
            .collect();
        let (book, placements) = known_at(&prices_only, FOREVER);
        let (plain, _) = known_at(&[], FOREVER);
        let hbs = beats(&s);
        let split = run_with(&hbs, &placements, &book).total;
        let whole = run_with(&hbs, &[placement(i64::MIN, PARIS, "sales", DESKTOP)], &plain).total;
        prop_assert_eq!(
            (split.observed_ms, split.idle_ms, split.unknown_ms, split.gap_ms),
            (whole.observed_ms, whole.idle_ms, whole.unknown_ms, whole.gap_ms)
        );
    }

    #[test]
    fn a_cut_that_changes_nothing_changes_no_digit(s in stream()) {
        // A new version equal to the old one splits nothing: same parts, same rounding.
        let (book, placements) = known_at(&[], FOREVER);
        let mut again = book.clone();
        let mut same = again.sites[&PARIS][0].clone();
        same.effective_from_ms = T0 + 1_234_000;
        if let Some(versions) = again.sites.get_mut(&PARIS) {
            versions.push(same);
        }
        let hbs = beats(&s);
        prop_assert_eq!(
            run_with(&hbs, &placements, &book).by_attribution,
            run_with(&hbs, &placements, &again).by_attribution
        );
    }

    #[test]
    fn replaying_any_subset_never_changes_totals(
        s in stream(),
        ch in changes(),
        replay in proptest::collection::vec(any::<prop::sample::Index>(), 0..30),
    ) {
        let (book, placements) = known_at(&ch, FOREVER);
        let hbs = beats(&s);
        let mut r = run_with(&hbs, &placements, &book);
        for i in replay {
            let h = hbs[i.index(hbs.len())];
            let o = account(&mut r.cursor, &h, &placements, &book);
            prop_assert_eq!(o, Ok(Outcome::Duplicate));
        }
        prop_assert_eq!(r.total, run_with(&hbs, &placements, &book).total);
    }

    #[test]
    fn observed_time_never_exceeds_wall_time(s in stream(), ch in changes()) {
        let (book, placements) = known_at(&ch, FOREVER);
        let total = run_with(&beats(&s), &placements, &book).total;
        // The agent clock is never ahead of real time here, so the span of its readings is at
        // most the wall time from the first heartbeat (plus how far the first one lagged).
        let first = s[0].hb.sent_at_ms;
        let wall = s.last().map_or(0, |l| l.real_ms) - first;
        prop_assert!(total.observed_ms <= wall);
        prop_assert!(total.idle_ms + total.unknown_ms <= total.observed_ms);
        prop_assert!(total.after_hours_idle_ms <= total.idle_ms);
        prop_assert!(total.idle_energy_j <= total.energy_j);
        prop_assert!(total.avoidable_energy_j <= total.idle_energy_j);
        prop_assert!(total.after_hours_idle_energy_j <= total.idle_energy_j);
        prop_assert!(total.idle_co2_g <= total.co2_g);
        prop_assert!(total.avoidable_co2_g <= total.idle_co2_g);
    }

    #[test]
    fn spooled_delivery_equals_live_delivery_across_changes(
        s in stream(),
        ch in changes(),
        cut in any::<prop::sample::Index>(),
        outage_s in 0i64..20_000,
    ) {
        // Live: every heartbeat when it is made, priced with what was known then. Outage: from
        // `cut` on, the agent spools; it delivers everything (replaying some already delivered
        // ones) when the outage ends, after changes the live run had not seen yet.
        let live_order: Vec<_> = s.iter().enumerate().map(|(i, x)| (i, x.real_ms)).collect();
        let live = deliver(&s, &live_order, &ch);
        let k = cut.index(s.len());
        let back = s.last().map_or(T0, |x| x.real_ms) + outage_s * 1000;
        let mut order: Vec<_> = live_order[..k].to_vec();
        order.extend((k.saturating_sub(3)..s.len()).map(|i| (i, back)));
        let spooled = deliver(&s, &order, &ch);
        prop_assert_eq!(&live.by_attribution, &spooled.by_attribution);
        prop_assert_eq!(live.total, spooled.total);
    }

    #[test]
    fn no_time_is_counted_for_gaps(s in stream()) {
        let (book, placements) = known_at(&[], FOREVER);
        let mut cursor = Cursor::default();
        for h in beats(&s) {
            let hw = cursor.hw_ms;
            let fresh = h.seq > cursor.last_seq;
            let o = account(&mut cursor, &h, &placements, &book);
            let Ok(Outcome::Accepted(a)) = o else { continue };
            prop_assert!(fresh);
            let mut inc = Increment::default();
            for p in &a.parts {
                inc.add(&p.increment);
            }
            match hw.map(|hw| h.sent_at_ms - hw) {
                Some(delta) if delta > 180_000 => {
                    prop_assert_eq!(inc.observed_ms, 0);
                    prop_assert_eq!(inc.energy_j, Decimal::ZERO);
                    prop_assert_eq!(inc.gap_ms, delta);
                }
                Some(delta) if delta > 0 => prop_assert_eq!(inc.observed_ms, delta),
                _ => prop_assert_eq!(inc, Increment::default()),
            }
        }
    }

    #[test]
    fn what_if_at_the_threshold_is_the_stored_avoidable_waste(s in stream(), ch in changes()) {
        // One limit for all time: no threshold changes. Then "sleep after the threshold"
        // saves exactly the stored avoidable figures, to the last digit, and sleeps exactly
        // the waste time; after hours only, exactly the after-hours waste.
        let prices_only: Vec<Timed> = ch
            .into_iter()
            .filter(|c| !matches!(c.change, Change::Threshold(..)))
            .collect();
        let (book, placements) = known_at(&prices_only, FOREVER);
        let hbs = beats(&s);
        let r = run_with(&hbs, &placements, &book);
        let intervals = recorded(&hbs, &r.outcomes);
        let threshold = book.settings_at(T0).idle_threshold_ms;
        let always = what_if(&intervals, &placements, &book, threshold, false);
        let t = &r.total;
        prop_assert_eq!(
            (always.0, always.1, always.2, always.3),
            (t.idle_ms, t.avoidable_energy_j, t.avoidable_cost, t.avoidable_co2_g)
        );
        let after = what_if(&intervals, &placements, &book, threshold, true);
        prop_assert_eq!(after.0, t.after_hours_idle_ms);
        prop_assert!(after.1 <= always.1);
        // A later limit never saves more.
        let later = what_if(&intervals, &placements, &book, threshold + 90_000, false);
        prop_assert!(later.0 <= always.0 && later.1 <= always.1);
    }
}

/// The raw intervals the store records for a run: observed ones with idle data.
fn recorded(hbs: &[ValidHeartbeat], outcomes: &[Outcome]) -> Vec<savings::Interval> {
    let mut out: Vec<savings::Interval> = hbs
        .iter()
        .zip(outcomes)
        .filter_map(|(h, o)| match (o, h.idle_ms) {
            (Outcome::Accepted(a), Some(idle_ms)) if a.observed_ms > 0 => Some(savings::Interval {
                end_ms: h.sent_at_ms,
                observed_ms: a.observed_ms,
                idle_ms,
            }),
            _ => None,
        })
        .collect();
    out.sort_by_key(|i| i.end_ms);
    out
}

/// Slept ms, energy, cost and CO₂ of "sleep after `limit_ms`" over all time, every scope.
fn what_if(
    intervals: &[savings::Interval],
    placements: &[Placement],
    book: &RateBook,
    limit_ms: i64,
    after_hours_only: bool,
) -> (i64, Decimal, Decimal, Decimal, i64) {
    let policy = savings::Policy {
        sleep_after_ms: limit_ms,
        after_hours_only,
        from_ms: i64::MIN,
        to_ms: i64::MAX,
        site: None,
        department: None,
    };
    let mut result = savings::Savings::default();
    policy
        .machine(intervals, placements, book, &mut result)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out = (
        0,
        Decimal::ZERO,
        Decimal::ZERO,
        Decimal::ZERO,
        result.sleeps,
    );
    for g in result.groups.values() {
        out.0 += g.saved.slept_ms;
        out.1 += g.saved.energy_j;
        out.2 += g.saved.cost;
        out.3 += g.saved.co2_g;
    }
    (
        out.0,
        out.1.normalize(),
        out.2.normalize(),
        out.3.normalize(),
        out.4,
    )
}

#[test]
fn a_policy_counts_one_sleep_per_idle_stretch_and_respects_its_window_and_scope() {
    // Idle 0 → 9 min, input, idle 0 → 4 min, a gap, idle 20 → 23 min: with "sleep after
    // 5 min", two stretches pass the limit (minutes 5–9 and the whole last stretch).
    let mut hbs = Vec::new();
    let mut seq = 0;
    let mut push = |at_min: i64, idle_min: i64| {
        seq += 1;
        hbs.push(hb(seq, at_min * 60, Some(idle_min * 60), Session::Active));
    };
    for m in 0..=9 {
        push(m, m);
    }
    for m in 10..=14 {
        push(m, m - 10);
    }
    for m in 30..=33 {
        push(m, m - 10);
    }
    let book = flat_book();
    let placements = at_paris();
    let r = run_with(&hbs, &placements, &book);
    let intervals = recorded(&hbs, &r.outcomes);
    let (slept, energy, cost, _, sleeps) = what_if(&intervals, &placements, &book, 300_000, false);
    // Minutes 5..9 (4 min) and 31..33 (3 observed minutes; minute 30 follows a gap).
    assert_eq!(slept, 7 * 60_000);
    assert_eq!(sleeps, 2);
    assert_eq!(energy, d("26460")); // 420 s × (65 − 2) W
    assert_eq!(cost, d("0.000882")); // 0.00735 kWh × 0.12
    // The window cuts the sleep; a scope that matches nothing saves nothing.
    let mut policy = savings::Policy {
        sleep_after_ms: 300_000,
        after_hours_only: false,
        from_ms: T0 + 8 * 60_000,
        to_ms: T0 + 32 * 60_000,
        site: None,
        department: None,
    };
    let mut windowed = savings::Savings::default();
    policy
        .machine(&intervals, &placements, &book, &mut windowed)
        .unwrap();
    let slept: i64 = windowed.groups.values().map(|g| g.saved.slept_ms).sum();
    assert_eq!(slept, 60_000 + 2 * 60_000); // minute 8–9, and 30–32
    policy.department = Some("it".into());
    let mut none = savings::Savings::default();
    policy
        .machine(&intervals, &placements, &book, &mut none)
        .unwrap();
    assert_eq!((none.machines, none.sleeps, none.groups.len()), (0, 0, 0));
}

/// One machine's heartbeats: every `dt` seconds (a gap now and then), idle growing with time
/// until input resets it (sometimes to a few seconds, as input just before a heartbeat does),
/// sometimes unknown; starting `shift_s` after `T0`.
fn idle_walk() -> impl Strategy<Value = Vec<(i64, Option<i64>)>> {
    proptest::collection::vec(
        (
            prop_oneof![6 => Just(60i64), 3 => 50i64..70, 1 => 1i64..180, 1 => 181i64..400],
            prop_oneof![12 => Just(None), 2 => (0i64..120).prop_map(Some)],
            proptest::bool::weighted(0.04),
        ),
        1..200,
    )
    .prop_map(|steps| {
        let (mut at, mut idle) = (0i64, 0i64);
        steps
            .into_iter()
            .map(|(dt, input, unknown)| {
                at += dt;
                idle = match input {
                    Some(left) => left.min(dt),
                    None => idle + dt,
                };
                (at, (!unknown).then_some(idle))
            })
            .collect()
    })
}

fn walk_beats(walk: &[(i64, Option<i64>)], shift_s: i64) -> Vec<ValidHeartbeat> {
    walk.iter()
        .enumerate()
        .map(|(i, (at, idle))| hb(i as u64 + 1, shift_s + at, *idle, Session::Active))
        .collect()
}

/// What the store's rollup does with one machine's recorded intervals: only those idle over a
/// minute are read, each with the previous one read; fed in two batches merged afterwards.
fn tally_of(
    machine: i64,
    intervals: &[savings::Interval],
    split: usize,
    placements: &[Placement],
    book: &RateBook,
    into: &mut savings::Tally,
) {
    let mut before: Option<savings::Before> = None;
    let mut parts = (savings::Tally::default(), savings::Tally::default());
    for (i, iv) in intervals
        .iter()
        .filter(|iv| iv.idle_ms > 60_000)
        .enumerate()
    {
        let part = if i < split {
            &mut parts.0
        } else {
            &mut parts.1
        };
        part.add(machine, iv, before, placements, book)
            .unwrap_or_else(|e| panic!("{e}"));
        before = Some(savings::Before {
            end_ms: iv.end_ms,
            idle_ms: iv.idle_ms,
        });
    }
    into.merge(parts.0);
    into.merge(parts.1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_rollup_answers_every_policy_exactly_as_the_reference(
        walks in proptest::collection::vec(idle_walk(), 1..3),
        ch in changes(),
        // Saturday evening (moves and price changes happen during the walk), or before one
        // of Monday's business-hours edges (Tokyo opens 23:00Z Sunday, closes 09:00Z; Paris
        // 06:00Z and 16:00Z), or across Sunday's UTC midnight, or any time that week.
        shift_s in prop_oneof![
            Just(0i64),
            (2 * 3600i64..4 * 3600),
            (26 * 3600i64..27 * 3600),
            (33 * 3600i64..34 * 3600),
            (35 * 3600i64..36 * 3600),
            (42 * 3600i64..43 * 3600),
            0i64..170 * 3600,
        ],
        limits in proptest::collection::vec(prop_oneof![1i64..12, 1i64..40, Just(10_080i64)], 1..4),
        after_hours_only: bool,
        scope in 0usize..6,
        // Hours after the first one, or a day or two around it (whole UTC days inside are read
        // from the daily rows, the edges from the hourly ones).
        window in prop_oneof![Just((0i64, 6i64)), (0i64..4, 1i64..6), (-30i64..2, 20i64..60)],
        split in 0usize..40,
    ) {
        let (book, placements) = known_at(&ch, FOREVER);
        let mut tally = savings::Tally::default();
        let mut recorded_by_machine = Vec::new();
        for (m, walk) in walks.iter().enumerate() {
            let hbs = walk_beats(walk, shift_s + m as i64 * 17);
            let r = run_with(&hbs, &placements, &book);
            let intervals = recorded(&hbs, &r.outcomes);
            tally_of(m as i64 + 1, &intervals, split, &placements, &book, &mut tally);
            recorded_by_machine.push(intervals);
        }
        let first = savings::hour_of(T0 + shift_s * 1000);
        let (site, department) = [
            (None, None),
            (Some(PARIS), None),
            (Some(TOKYO), None),
            (None, Some("sales")),
            (None, Some("it")),
            (Some(PARIS), Some("it")),
        ][scope];
        for n in limits {
            let from_ms = first + window.0 * 3_600_000;
            let policy = savings::Policy {
                sleep_after_ms: n * 60_000,
                after_hours_only,
                from_ms,
                to_ms: from_ms + window.1 * 3_600_000,
                site,
                department: department.map(str::to_string),
            };
            let mut expected = savings::Savings::default();
            for intervals in &recorded_by_machine {
                policy
                    .machine(intervals, &placements, &book, &mut expected)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            let (shares, reach) = tally.rows(policy.from_ms, policy.to_ms, n);
            let got = policy.evaluate(&shares, &reach);
            prop_assert_eq!(got, expected, "N = {} min", n);
        }
    }
}

#[test]
fn a_move_during_a_sleep_begins_one_in_the_new_scope_only() {
    // Idle from minute 0 to 30 at Paris in "sales"; moved to "it" (same site) at 20:30.
    // Sleep after 5 min: one sleep (minute 5). Only "it": one sleep, beginning at the move;
    // only "sales": one, at minute 5. Only Paris: one.
    let book = known_at(&[], FOREVER).0;
    let placements = vec![
        placement(i64::MIN, PARIS, "sales", DESKTOP),
        placement(T0 + 20 * 60_000 + 30_000, PARIS, "it", DESKTOP),
    ];
    let hbs: Vec<_> = (0..=30)
        .map(|m| hb(m as u64 + 1, m * 60, Some(m * 60), Session::Active))
        .collect();
    let r = run_with(&hbs, &placements, &book);
    let intervals = recorded(&hbs, &r.outcomes);
    let mut tally = savings::Tally::default();
    tally_of(1, &intervals, 7, &placements, &book, &mut tally);
    for (site, department, sleeps, slept_s) in [
        (None, None, 1, 25 * 60),
        (None, Some("it"), 1, 9 * 60 + 30),
        (None, Some("sales"), 1, 15 * 60 + 30),
        (Some(PARIS), None, 1, 25 * 60),
        (Some(TOKYO), None, 0, 0),
        (Some(PARIS), Some("it"), 1, 9 * 60 + 30),
    ] {
        let policy = savings::Policy {
            sleep_after_ms: 300_000,
            after_hours_only: false,
            from_ms: i64::MIN,
            to_ms: i64::MAX,
            site,
            department: department.map(str::to_string),
        };
        let mut reference = savings::Savings::default();
        policy
            .machine(&intervals, &placements, &book, &mut reference)
            .unwrap();
        let (shares, reach) = tally.rows(i64::MIN, i64::MAX, 5);
        let rolled = policy.evaluate(&shares, &reach);
        assert_eq!(rolled, reference, "{site:?} {department:?}");
        let slept: i64 = rolled.groups.values().map(|g| g.saved.slept_ms).sum();
        assert_eq!(
            (rolled.sleeps, slept),
            (sleeps, slept_s * 1000),
            "{site:?} {department:?}"
        );
    }
}

#[test]
fn a_window_reads_whole_days_from_the_daily_rows_and_its_edges_from_the_hourly_ones() {
    const H: i64 = 3_600_000;
    const D: i64 = 24 * H;
    let day = 20_000 * D;
    // Within one day, or two days' edges with no whole day between: hours only.
    let hours_only = |a, b| savings::Spans {
        hours: vec![(a, b)],
        days: None,
    };
    assert_eq!(
        savings::spans(day + H, day + 5 * H),
        hours_only(day + H, day + 5 * H)
    );
    assert_eq!(
        savings::spans(day + H, day + D + H),
        hours_only(day + H, day + D + H)
    );
    // Midnight to midnight: days only.
    assert_eq!(
        savings::spans(day, day + 3 * D),
        savings::Spans {
            hours: vec![],
            days: Some((day, day + 3 * D)),
        }
    );
    // A week from 13:00: the afternoon, six whole days, the morning.
    assert_eq!(
        savings::spans(day + 13 * H, day + 7 * D + 13 * H),
        savings::Spans {
            hours: vec![(day + 13 * H, day + D), (day + 7 * D, day + 7 * D + 13 * H)],
            days: Some((day + D, day + 7 * D)),
        }
    );
    // Before 1970 too, and the whole of time.
    assert_eq!(
        savings::spans(-D - H, D),
        savings::Spans {
            hours: vec![(-D - H, -D)],
            days: Some((-D, D)),
        }
    );
    assert_eq!(savings::spans(i64::MIN, i64::MAX).hours.len(), 2);
}
