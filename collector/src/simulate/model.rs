//! The office traffic model: what a simulated machine reports at any simulated instant.
//!
//! Pure and deterministic: the same fleet seed, machine index and time always give the same
//! sample, so runs are reproducible and the benchmark can predict its own totals. Times are
//! UTC milliseconds; a "day" is a UTC day.

use greenops_protocol::Session;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// How a machine's user treats it when leaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Habit {
    /// Shuts down when leaving, boots on arrival.
    ShutsDown,
    /// Leaves it on overnight and over weekends (the waste GreenOps exists to show).
    LeavesOn,
    /// The machine sleeps after 30 minutes without input.
    SleepsWhenIdle,
    /// Office hours only, but idle detection does not work here (`idle_seconds: null`).
    UnknownIdle,
    /// A lab or meeting-room PC that is always on and hardly ever used.
    AlwaysOnUnused,
}

/// What a powered-on machine reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub idle_seconds: Option<f64>,
    pub session: Session,
    pub cpu_usage_ratio: f64,
    pub memory_usage_ratio: f64,
}

/// One simulated machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimMachine {
    pub index: u64,
    pub habit: Habit,
    seed: u64,
    /// Whether this user locks the screen when walking away.
    locks_screen: bool,
}

/// SplitMix64: a tiny, well-mixed deterministic hash.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A deterministic value in `lo..hi` from a key.
fn between(key: u64, lo: i64, hi: i64) -> i64 {
    let span = u64::try_from((hi - lo).max(1)).unwrap_or(1);
    lo + i64::try_from(mix(key) % span).unwrap_or(0)
}

/// A person's presence at the desk on one day: `[start, end)` intervals, in day offset ms.
fn presence(seed: u64, day: i64) -> Vec<(i64, i64)> {
    // 1970-01-01 was a Thursday: (day + 3) % 7 gives Monday = 0.
    let weekday = (day + 3).rem_euclid(7);
    let key = mix(seed ^ (day as u64).wrapping_mul(0x1000_0000_01B3));
    if weekday >= 5 || mix(key ^ 1) % 100 < 8 {
        return Vec::new(); // weekend, holiday or sick day
    }
    let arrive = between(key ^ 2, 7 * HOUR + 30 * MINUTE, 9 * HOUR + 30 * MINUTE);
    let lunch = between(key ^ 3, 11 * HOUR + 45 * MINUTE, 13 * HOUR);
    let lunch_end = lunch + between(key ^ 4, 30 * MINUTE, 60 * MINUTE);
    let leave = between(key ^ 5, 16 * HOUR + 30 * MINUTE, 18 * HOUR + 30 * MINUTE);
    let coffee = between(key ^ 6, arrive + HOUR, lunch - 20 * MINUTE);
    let coffee_end = coffee + between(key ^ 7, 5 * MINUTE, 15 * MINUTE);
    let meeting = between(key ^ 8, lunch_end + 30 * MINUTE, leave - 90 * MINUTE);
    let meeting_end = meeting + between(key ^ 9, 30 * MINUTE, 60 * MINUTE);
    vec![
        (arrive, coffee),
        (coffee_end, lunch),
        (lunch_end, meeting),
        (meeting_end, leave),
    ]
}

impl SimMachine {
    /// Machine `index` of a fleet: habits in realistic proportions.
    pub fn new(fleet_seed: u64, index: u64) -> Self {
        let seed = mix(fleet_seed ^ mix(index));
        let habit = match mix(seed ^ 0xABCD) % 100 {
            0..=34 => Habit::ShutsDown,
            35..=74 => Habit::LeavesOn,
            75..=86 => Habit::SleepsWhenIdle,
            87..=93 => Habit::UnknownIdle,
            _ => Habit::AlwaysOnUnused,
        };
        Self {
            index,
            habit,
            seed,
            locks_screen: mix(seed ^ 0x10C4).is_multiple_of(2),
        }
    }

    /// The end of the user's most recent presence before `t` (searching up to two weeks back).
    fn last_presence_end(&self, t: i64) -> Option<i64> {
        let day = t.div_euclid(DAY);
        for d in (day - 14..=day).rev() {
            let base = d * DAY;
            if let Some(end) = presence(self.seed, d)
                .iter()
                .map(|&(_, e)| base + e)
                .filter(|&e| e <= t)
                .max()
            {
                return Some(end);
            }
        }
        None
    }

    fn present_at(&self, t: i64) -> bool {
        let day = t.div_euclid(DAY);
        let offset = t - day * DAY;
        presence(self.seed, day)
            .iter()
            .any(|&(s, e)| offset >= s && offset < e)
    }

    /// What the machine reports at simulated time `t_ms`, or `None` while it is off or asleep.
    pub fn sample(&self, t_ms: i64) -> Option<Sample> {
        let present = self.habit != Habit::AlwaysOnUnused && self.present_at(t_ms);
        let minute_key = self.seed ^ (t_ms.div_euclid(MINUTE) as u64);
        let idle_ms = if present {
            // At the desk: input every few seconds, sometimes a minute of reading.
            between(
                minute_key ^ 11,
                0,
                if mix(minute_key).is_multiple_of(10) {
                    90_000
                } else {
                    8_000
                },
            )
        } else {
            match self.last_presence_end(t_ms) {
                Some(end) if self.habit != Habit::AlwaysOnUnused => t_ms - end,
                _ => 30 * DAY,
            }
        };
        let day = t_ms.div_euclid(DAY);
        let offset = t_ms - day * DAY;
        let today = presence(self.seed, day);
        let powered = match self.habit {
            Habit::LeavesOn | Habit::AlwaysOnUnused => true,
            Habit::SleepsWhenIdle => idle_ms < 30 * MINUTE,
            Habit::ShutsDown | Habit::UnknownIdle => match (today.first(), today.last()) {
                (Some(&(arrive, _)), Some(&(_, leave))) => {
                    offset >= arrive - 5 * MINUTE && offset < leave + 5 * MINUTE
                }
                _ => false,
            },
        };
        if !powered {
            return None;
        }
        let session = if !present && self.locks_screen && idle_ms > 10 * MINUTE {
            Session::Locked
        } else {
            Session::Active
        };
        let busy = if present {
            between(minute_key ^ 12, 5, 60)
        } else {
            between(minute_key ^ 13, 1, 6)
        };
        Some(Sample {
            idle_seconds: (self.habit != Habit::UnknownIdle).then(|| idle_ms as f64 / 1000.0),
            session,
            cpu_usage_ratio: busy as f64 / 100.0,
            memory_usage_ratio: between(self.seed ^ 14, 25, 70) as f64 / 100.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Monday 2026-11-23 00:00 UTC.
    const MONDAY: i64 = 1_795_392_000_000;

    fn fleet(n: u64) -> Vec<SimMachine> {
        (0..n).map(|i| SimMachine::new(7, i)).collect()
    }

    #[test]
    fn the_monday_constant_is_a_monday() {
        assert_eq!((MONDAY / DAY + 3).rem_euclid(7), 0);
    }

    #[test]
    fn samples_are_deterministic() {
        for m in fleet(50) {
            for h in 0..48 {
                let t = MONDAY + h * HOUR / 2;
                assert_eq!(m.sample(t), SimMachine::new(7, m.index).sample(t));
            }
        }
    }

    #[test]
    fn the_fleet_mixes_every_habit() {
        let machines = fleet(400);
        for habit in [
            Habit::ShutsDown,
            Habit::LeavesOn,
            Habit::SleepsWhenIdle,
            Habit::UnknownIdle,
            Habit::AlwaysOnUnused,
        ] {
            assert!(machines.iter().any(|m| m.habit == habit), "{habit:?}");
        }
    }

    #[test]
    fn office_hours_look_like_an_office() {
        let machines = fleet(400);
        let at = |t: i64| {
            machines
                .iter()
                .filter_map(|m| m.sample(t))
                .collect::<Vec<_>>()
        };
        let working = at(MONDAY + 10 * HOUR + 30 * MINUTE);
        let night = at(MONDAY + 3 * HOUR);
        assert!(
            working.len() > night.len(),
            "more machines on during the day"
        );
        let active = |s: &Sample| s.idle_seconds.is_some_and(|i| i < 120.0);
        let busy_day = working.iter().filter(|s| active(s)).count();
        let busy_night = night.iter().filter(|s| active(s)).count();
        assert!(
            busy_day > working.len() / 3,
            "{busy_day} of {}",
            working.len()
        );
        assert_eq!(busy_night, 0, "nobody works at 3 am");
        // Machines left on overnight are idle for hours: the waste to be measured.
        assert!(
            night
                .iter()
                .any(|s| s.idle_seconds.is_some_and(|i| i > 3600.0))
        );
        assert!(night.iter().any(|s| s.session == Session::Locked));
        assert!(working.iter().any(|s| s.idle_seconds.is_none()));
    }

    #[test]
    fn idle_time_grows_while_away() {
        let m = fleet(200)
            .into_iter()
            .find(|m| m.habit == Habit::LeavesOn)
            .unwrap();
        let a = m.sample(MONDAY + 2 * HOUR).unwrap().idle_seconds.unwrap();
        let b = m.sample(MONDAY + 3 * HOUR).unwrap().idle_seconds.unwrap();
        assert_eq!(b - a, 3600.0);
    }
}

#[cfg(test)]
mod demo_fleet {
    use super::*;

    /// The demo (`serve --demo`: seed 1, 25 machines) must show waste at any hour of any day,
    /// so it needs a machine that is always on and never used.
    #[test]
    fn the_demo_fleet_always_has_an_unused_machine() {
        let seed = crate::simulate::DEMO_FLEET_SEED;
        let habits: Vec<Habit> = (0..25).map(|i| SimMachine::new(seed, i).habit).collect();
        assert!(habits.contains(&Habit::AlwaysOnUnused), "{habits:?}");
        assert!(habits.contains(&Habit::LeavesOn), "{habits:?}");
    }
}
