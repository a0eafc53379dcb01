//! Exponential backoff with full jitter (base 5 s, cap 300 s), honouring `Retry-After`.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_secs(5), Duration::from_secs(300))
    }
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The ceiling of the next delay: `min(cap, base × 2^attempt)`.
    pub fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(20));
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next delay: uniform in `[0, ceiling]`, but never shorter than `retry_after`.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let jittered =
            Duration::from_millis(rand::rng().random_range(0..=ceiling.as_millis() as u64));
        match retry_after {
            Some(at_least) => jittered.max(at_least.min(self.cap)),
            None => jittered,
        }
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let mut b = Backoff::default();
        let mut ceilings = Vec::new();
        for _ in 0..9 {
            ceilings.push(b.ceiling().as_secs());
            b.next_delay(None);
        }
        assert_eq!(ceilings, vec![5, 10, 20, 40, 80, 160, 300, 300, 300]);
        b.reset();
        assert_eq!(b.ceiling().as_secs(), 5);
    }

    proptest::proptest! {
        #[test]
        fn delays_stay_within_the_ceiling_and_respect_retry_after(attempts in 0u32..40, retry in proptest::option::of(0u64..1000)) {
            let mut b = Backoff::default();
            for _ in 0..attempts { b.next_delay(None); }
            let ceiling = b.ceiling();
            let d = b.next_delay(retry.map(Duration::from_secs));
            let floor = retry.map(|r| Duration::from_secs(r).min(Duration::from_secs(300))).unwrap_or_default();
            proptest::prop_assert!(d >= floor);
            proptest::prop_assert!(d <= ceiling.max(floor));
        }
    }
}
