//! Everything an interval is priced with, effective-dated (DESIGN §2): versions of each site
//! (time zone, tariff with optional time-of-use bands, static grid intensity, business hours,
//! holidays, idle-threshold override), versions of each power profile (idle, active, sleep
//! watts), the imported hourly grid intensity of each site, the global accounting settings
//! (threshold, maximum gap), and each machine's placements (site, department, profile).
//!
//! A version applies from its `effective_from_ms` (inclusive) until the next version; the
//! first version of anything also applies to all time before it. Nothing here is ever edited
//! once in force, which is what makes delivery order irrelevant to the figures.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use rust_decimal::Decimal;

/// Milliseconds in an hour, the resolution of imported grid intensity and stored usage.
pub const HOUR_MS: i64 = 3_600_000;
const MINUTES_PER_DAY: u16 = 1440;

/// A set of weekdays, Monday = bit 0 … Sunday = bit 6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Weekdays(pub u8);

impl Weekdays {
    pub const ALL: Weekdays = Weekdays(0b111_1111);
    pub const MONDAY_TO_FRIDAY: Weekdays = Weekdays(0b001_1111);

    /// Whether `day` (0 = Monday … 6 = Sunday) is in the set.
    pub fn contains(self, day: u8) -> bool {
        day < 7 && self.0 & (1 << day) != 0
    }

    /// `mon`, `tue`, … — the names the API uses.
    pub const NAMES: [&'static str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
}

/// A span of local time on the days of a week: `start_min` (inclusive) to `end_min`
/// (exclusive), minutes after local midnight, `0 ≤ start < end ≤ 1440`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DailySpan {
    pub days: Weekdays,
    pub start_min: u16,
    pub end_min: u16,
}

impl DailySpan {
    /// Whether local weekday `day` and minute-of-day `minute` (fractional part ignored) fall in it.
    fn covers(&self, day: u8, minute_ms: i64) -> bool {
        self.days.contains(day)
            && minute_ms >= i64::from(self.start_min) * 60_000
            && minute_ms < i64::from(self.end_min) * 60_000
    }
}

/// A time-of-use band: within `span` electricity costs `price_per_kwh`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Band {
    pub span: DailySpan,
    pub price_per_kwh: Decimal,
}

/// A site's tariff: a currency, a flat price, and bands that override it where they apply
/// (the first matching band wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tariff {
    pub currency: String,
    pub price_per_kwh: Decimal,
    pub bands: Vec<Band>,
}

/// One version of a site's accounting figures.
#[derive(Debug, Clone)]
pub struct SiteVersion {
    pub effective_from_ms: i64,
    pub timezone: TimeZone,
    pub tariff: Tariff,
    /// Grams CO₂e per kWh where no hourly value was imported.
    pub carbon_g_per_kwh: Decimal,
    /// Business hours in local time; everything else is after hours.
    pub business_hours: Vec<DailySpan>,
    /// Local dates that are after hours all day.
    pub holidays: BTreeSet<Date>,
    /// Overrides the global idle threshold for machines at this site.
    pub idle_threshold_ms: Option<i64>,
}

impl SiteVersion {
    /// The local weekday (0 = Monday) and time of day (ms) of an instant.
    fn local(&self, at_ms: i64) -> (Date, u8, i64) {
        let dt = Timestamp::from_millisecond(at_ms)
            .map(|t| self.timezone.to_datetime(t))
            .unwrap_or_default();
        let day = u8::try_from(dt.weekday().to_monday_zero_offset()).unwrap_or(0);
        let t = dt.time();
        let ms = i64::from(t.hour()) * 3_600_000
            + i64::from(t.minute()) * 60_000
            + i64::from(t.second()) * 1000
            + i64::from(t.millisecond());
        (dt.date(), day, ms)
    }

    /// The price per kWh and currency in force at an instant.
    pub fn price_at(&self, at_ms: i64) -> Decimal {
        if self.tariff.bands.is_empty() {
            return self.tariff.price_per_kwh;
        }
        let (_, day, ms) = self.local(at_ms);
        self.tariff
            .bands
            .iter()
            .find(|b| b.span.covers(day, ms))
            .map_or(self.tariff.price_per_kwh, |b| b.price_per_kwh)
    }

    /// Whether an instant is outside the site's business hours (or on a holiday).
    pub fn after_hours_at(&self, at_ms: i64) -> bool {
        let (date, day, ms) = self.local(at_ms);
        self.holidays.contains(&date) || !self.business_hours.iter().any(|s| s.covers(day, ms))
    }

    /// Every instant in `(from, to)` where this version's local-time rules (bands, business
    /// hours, holidays) may change their answer: the local times of their edges on each day,
    /// midnights, and the time zone's own transitions (DST).
    pub fn local_edges(&self, from_ms: i64, to_ms: i64, out: &mut Vec<i64>) {
        if self.tariff.bands.is_empty()
            && self.business_hours.is_empty()
            && self.holidays.is_empty()
        {
            return;
        }
        let mut minutes: BTreeSet<u16> = BTreeSet::from([0]);
        for span in self
            .tariff
            .bands
            .iter()
            .map(|b| &b.span)
            .chain(&self.business_hours)
        {
            minutes.insert(span.start_min);
            minutes.insert(span.end_min % MINUTES_PER_DAY);
        }
        let (Ok(from), Ok(to)) = (
            Timestamp::from_millisecond(from_ms),
            Timestamp::from_millisecond(to_ms),
        ) else {
            return;
        };
        let first = self.timezone.to_datetime(from).date();
        let last = self.timezone.to_datetime(to).date();
        let mut day = first.yesterday().unwrap_or(first);
        let stop = last.tomorrow().unwrap_or(last);
        while day <= stop {
            for &m in &minutes {
                let Ok(time) = Time::new(i8::try_from(m / 60).unwrap_or(0), (m % 60) as i8, 0, 0)
                else {
                    continue;
                };
                let local: DateTime = time.to_datetime(day);
                let ambiguous = self.timezone.to_ambiguous_timestamp(local);
                for instant in [ambiguous.earlier(), ambiguous.later()]
                    .into_iter()
                    .flatten()
                {
                    let ms = instant.as_millisecond();
                    if ms > from_ms && ms < to_ms {
                        out.push(ms);
                    }
                }
            }
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => break,
            }
        }
        for transition in self.timezone.following(from) {
            let ms = transition.timestamp().as_millisecond();
            if ms >= to_ms {
                break;
            }
            if ms > from_ms {
                out.push(ms);
            }
        }
    }
}

/// One version of a power profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileVersion {
    pub effective_from_ms: i64,
    pub idle_watts: Decimal,
    pub active_watts: Decimal,
    pub sleep_watts: Decimal,
}

/// Where a machine is accounted from a moment on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Placement {
    pub effective_from_ms: i64,
    pub site_id: i64,
    pub department: String,
    pub profile_id: i64,
}

/// One version of the global accounting settings that decide what an interval is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingsVersion {
    pub effective_from_ms: i64,
    pub idle_threshold_ms: i64,
    pub max_gap_ms: i64,
}

/// Anything with an `effective_from_ms`.
pub trait Versioned {
    fn effective_from_ms(&self) -> i64;
}

macro_rules! versioned {
    ($($t:ty),*) => {$(
        impl Versioned for $t {
            fn effective_from_ms(&self) -> i64 {
                self.effective_from_ms
            }
        }
    )*};
}
versioned!(SiteVersion, ProfileVersion, Placement, SettingsVersion);

/// The version in force at `at_ms` of a list sorted by `effective_from_ms` (the first one
/// before the first change).
pub fn in_force<T: Versioned>(versions: &[T], at_ms: i64) -> Option<&T> {
    let after = versions.partition_point(|v| v.effective_from_ms() <= at_ms);
    versions.get(after.saturating_sub(1))
}

/// The instants in `(from, to)` where the list changes version.
pub fn changes<T: Versioned>(versions: &[T], from_ms: i64, to_ms: i64, out: &mut Vec<i64>) {
    out.extend(
        versions
            .iter()
            .map(Versioned::effective_from_ms)
            .filter(|&t| t > from_ms && t < to_ms),
    );
}

/// Every effective-dated figure of an installation (see the module docs), as of one
/// `version` of the store's rate data.
#[derive(Debug, Clone, Default)]
pub struct RateBook {
    /// Bumped by the store at every change of what is in here.
    pub version: i64,
    pub sites: HashMap<i64, Vec<SiteVersion>>,
    pub profiles: HashMap<i64, Vec<ProfileVersion>>,
    /// Imported grid intensity per site, by UTC hour start.
    pub intensity: HashMap<i64, BTreeMap<i64, Decimal>>,
    pub settings: Vec<SettingsVersion>,
}

impl RateBook {
    /// The settings in force at an instant (built-in defaults when none were ever stored).
    pub fn settings_at(&self, at_ms: i64) -> SettingsVersion {
        in_force(&self.settings, at_ms)
            .copied()
            .unwrap_or(SettingsVersion {
                effective_from_ms: i64::MIN,
                idle_threshold_ms: 300_000,
                max_gap_ms: 180_000,
            })
    }

    pub fn site_at(&self, site_id: i64, at_ms: i64) -> Option<&SiteVersion> {
        in_force(self.sites.get(&site_id)?, at_ms)
    }

    pub fn profile_at(&self, profile_id: i64, at_ms: i64) -> Option<&ProfileVersion> {
        in_force(self.profiles.get(&profile_id)?, at_ms)
    }

    /// Grams CO₂e per kWh at a site at an instant: the imported value of that UTC hour, else
    /// the site version's static figure.
    pub fn carbon_at(&self, site_id: i64, site: &SiteVersion, at_ms: i64) -> Decimal {
        let hour = at_ms.div_euclid(HOUR_MS) * HOUR_MS;
        self.intensity
            .get(&site_id)
            .and_then(|hours| hours.get(&hour))
            .copied()
            .unwrap_or(site.carbon_g_per_kwh)
    }

    /// The UTC hour starts in `(from, to)` at which a site's imported intensity may change.
    pub fn intensity_edges(&self, site_id: i64, from_ms: i64, to_ms: i64, out: &mut Vec<i64>) {
        let Some(hours) = self.intensity.get(&site_id) else {
            return;
        };
        // An imported hour changes the figure at its start and at its end.
        let lo = from_ms.div_euclid(HOUR_MS) * HOUR_MS - HOUR_MS;
        for (&start, _) in hours.range(lo..to_ms) {
            for edge in [start, start + HOUR_MS] {
                if edge > from_ms && edge < to_ms {
                    out.push(edge);
                }
            }
        }
    }
}

/// Parses `HH:MM` (00:00–24:00) into minutes after midnight.
pub fn parse_clock(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

/// Minutes after midnight as `HH:MM`.
pub fn format_clock(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// A span of local time as the API and the database write it:
/// `{"days": ["mon", …], "start": "08:00", "end": "18:00"}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanSpec {
    pub days: Vec<String>,
    pub start: String,
    pub end: String,
}

/// A time-of-use band as the API and the database write it: a [`SpanSpec`] and its price.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BandSpec {
    pub days: Vec<String>,
    pub start: String,
    pub end: String,
    /// A plain decimal string.
    pub price_per_kwh: String,
}

impl SpanSpec {
    /// The span, or why it is not one.
    pub fn parse(&self) -> Result<DailySpan, String> {
        if self.days.is_empty() {
            return Err("days must name at least one day (mon … sun)".into());
        }
        let mut days = 0u8;
        for d in &self.days {
            let i = Weekdays::NAMES.iter().position(|n| n == d).ok_or_else(|| {
                format!("days: '{d}' is not one of mon, tue, wed, thu, fri, sat, sun")
            })?;
            days |= 1 << i;
        }
        let start = parse_clock(&self.start)
            .filter(|&m| m < MINUTES_PER_DAY)
            .ok_or("start must be a time of day HH:MM from 00:00 to 23:59")?;
        let end = parse_clock(&self.end).ok_or("end must be a time of day HH:MM up to 24:00")?;
        if end <= start {
            return Err(
                "end must be after start on the same day (split a span over midnight in two)"
                    .into(),
            );
        }
        Ok(DailySpan {
            days: Weekdays(days),
            start_min: start,
            end_min: end,
        })
    }

    /// The spec of a span (days in week order).
    pub fn of(span: &DailySpan) -> Self {
        Self {
            days: (0..7)
                .filter(|&d| span.days.contains(d))
                .map(|d| Weekdays::NAMES[usize::from(d)].to_string())
                .collect(),
            start: format_clock(span.start_min),
            end: format_clock(span.end_min),
        }
    }
}

/// Business hours when a site sets none: Monday to Friday, 08:00–18:00 local time.
pub fn default_business_hours() -> Vec<DailySpan> {
    vec![DailySpan {
        days: Weekdays::MONDAY_TO_FRIDAY,
        start_min: 8 * 60,
        end_min: 18 * 60,
    }]
}

/// Parses stored business hours (a JSON list of [`SpanSpec`]).
pub fn parse_spans(json: &str) -> Result<Vec<DailySpan>, String> {
    let specs: Vec<SpanSpec> = serde_json::from_str(json).map_err(|e| e.to_string())?;
    specs.iter().map(SpanSpec::parse).collect()
}

/// Parses stored bands (a JSON list of [`BandSpec`]).
pub fn parse_bands(json: &str) -> Result<Vec<Band>, String> {
    let specs: Vec<BandSpec> = serde_json::from_str(json).map_err(|e| e.to_string())?;
    specs
        .iter()
        .map(|b| {
            let span = SpanSpec {
                days: b.days.clone(),
                start: b.start.clone(),
                end: b.end.clone(),
            }
            .parse()?;
            let price = b
                .price_per_kwh
                .parse::<Decimal>()
                .map_err(|_| format!("price_per_kwh '{}' is not a decimal", b.price_per_kwh))?;
            Ok(Band {
                span,
                price_per_kwh: price,
            })
        })
        .collect()
}

/// Parses stored holidays (a JSON list of `YYYY-MM-DD`).
pub fn parse_holidays(json: &str) -> Result<BTreeSet<Date>, String> {
    let days: Vec<String> = serde_json::from_str(json).map_err(|e| e.to_string())?;
    days.iter()
        .map(|d| {
            d.parse::<Date>()
                .map_err(|_| format!("'{d}' is not a date YYYY-MM-DD"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(tz: &str, bands: Vec<Band>) -> SiteVersion {
        SiteVersion {
            effective_from_ms: i64::MIN,
            timezone: TimeZone::get(tz).unwrap_or(TimeZone::UTC),
            tariff: Tariff {
                currency: "EUR".into(),
                price_per_kwh: Decimal::new(20, 2),
                bands,
            },
            carbon_g_per_kwh: Decimal::from(300),
            business_hours: default_business_hours(),
            holidays: BTreeSet::new(),
            idle_threshold_ms: None,
        }
    }

    fn ms(text: &str) -> i64 {
        text.parse::<Timestamp>()
            .map(|t| t.as_millisecond())
            .unwrap_or_default()
    }

    #[test]
    fn spans_parse_and_refuse_nonsense() {
        let span = SpanSpec {
            days: vec!["mon".into(), "fri".into()],
            start: "08:30".into(),
            end: "24:00".into(),
        };
        let parsed = span.parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (parsed.start_min, parsed.end_min, parsed.days.0),
            (510, 1440, 0b1_0001)
        );
        assert_eq!(SpanSpec::of(&parsed), span);
        for (days, start, end) in [
            (vec![], "08:00", "09:00"),
            (vec!["moon"], "08:00", "09:00"),
            (vec!["mon"], "8:00", "09:00"),
            (vec!["mon"], "09:00", "09:00"),
            (vec!["mon"], "22:00", "06:00"),
            (vec!["mon"], "24:00", "24:00"),
            (vec!["mon"], "10:60", "11:00"),
        ] {
            let spec = SpanSpec {
                days: days.into_iter().map(String::from).collect(),
                start: start.into(),
                end: end.into(),
            };
            assert!(spec.parse().is_err(), "{spec:?}");
        }
    }

    #[test]
    fn bands_and_business_hours_follow_local_time_across_dst() {
        // Peak 07:00–19:00 on weekdays in Paris; 2026-03-29 is the spring-forward Sunday,
        // 2026-03-30 a Monday (UTC+2 from then on).
        let peak = Band {
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
            price_per_kwh: Decimal::new(30, 2),
        };
        let v = version("Europe/Paris", vec![peak]);
        assert_eq!(v.price_at(ms("2026-03-30T04:59:59Z")), Decimal::new(20, 2));
        assert_eq!(v.price_at(ms("2026-03-30T05:00:00Z")), Decimal::new(30, 2));
        assert_eq!(v.price_at(ms("2026-03-30T16:59:59Z")), Decimal::new(30, 2));
        assert_eq!(v.price_at(ms("2026-03-30T17:00:00Z")), Decimal::new(20, 2));
        // Before the change Paris is UTC+1: peak starts at 06:00 UTC.
        assert_eq!(v.price_at(ms("2026-03-27T05:30:00Z")), Decimal::new(20, 2));
        assert_eq!(v.price_at(ms("2026-03-27T06:00:00Z")), Decimal::new(30, 2));
        assert!(v.after_hours_at(ms("2026-03-29T10:00:00Z")), "Sunday");
        assert!(
            !v.after_hours_at(ms("2026-03-30T06:00:00Z")),
            "Monday 08:00 local"
        );
        assert!(v.after_hours_at(ms("2026-03-30T05:59:59Z")));
        let mut edges = Vec::new();
        v.local_edges(
            ms("2026-03-29T00:00:00Z"),
            ms("2026-03-31T00:00:00Z"),
            &mut edges,
        );
        for edge in [
            "2026-03-29T01:00:00Z",
            "2026-03-30T05:00:00Z",
            "2026-03-30T06:00:00Z",
            "2026-03-30T16:00:00Z",
            "2026-03-30T17:00:00Z",
        ] {
            assert!(edges.contains(&ms(edge)), "{edge} missing from {edges:?}");
        }
    }

    #[test]
    fn holidays_are_after_hours_all_day() {
        let mut v = version("Asia/Tokyo", Vec::new());
        v.holidays = parse_holidays(r#"["2026-12-25"]"#).unwrap_or_default();
        // 2026-12-25 10:00 in Tokyo is 01:00 UTC, a Friday.
        assert!(v.after_hours_at(ms("2026-12-25T01:00:00Z")));
        assert!(!v.after_hours_at(ms("2026-12-24T01:00:00Z")));
        assert!(parse_holidays(r#"["2026-02-30"]"#).is_err());
    }

    #[test]
    fn the_version_in_force_is_the_last_that_started() {
        let versions = [
            ProfileVersion {
                effective_from_ms: i64::MIN,
                idle_watts: Decimal::ONE,
                active_watts: Decimal::ONE,
                sleep_watts: Decimal::ZERO,
            },
            ProfileVersion {
                effective_from_ms: 1000,
                idle_watts: Decimal::TWO,
                active_watts: Decimal::ONE,
                sleep_watts: Decimal::ZERO,
            },
        ];
        assert_eq!(
            in_force(&versions, 999).map(|v| v.idle_watts),
            Some(Decimal::ONE)
        );
        assert_eq!(
            in_force(&versions, 1000).map(|v| v.idle_watts),
            Some(Decimal::TWO)
        );
        let mut out = Vec::new();
        changes(&versions, 0, 2000, &mut out);
        assert_eq!(out, vec![1000]);
    }
}
