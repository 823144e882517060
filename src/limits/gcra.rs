//! The generic cell rate algorithm (GCRA, ITU-T I.371 §4.4.2 "virtual
//! scheduling"), sans-IO: a rate of `rate` units a minute, with a burst of
//! up to `rate` units, kept as one number, the *theoretical arrival time*
//! (TAT). No window edges: a client that spent its burst gets one unit back
//! every `60 s / rate`, never two bursts in a row across a minute boundary.
//!
//! Times are microseconds on any clock that only moves forward (Unix time
//! here, Redis `TIME` in the shared script, which does the same arithmetic:
//! `src/shared/admit.lua`).

/// The window a rate is counted over, in microseconds (a minute).
pub const WINDOW_US: u64 = 60_000_000;

/// The outcome of one GCRA check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted: the new TAT to store, the units still free now, and when
    /// the whole burst is free again (µs from now).
    Admit {
        tat: u64,
        remaining: u64,
        reset_us: u64,
    },
    /// Refused: the cost fits again after `retry_us` (µs from now).
    Refuse { retry_us: u64 },
}

/// The time `units` take to come back at `rate` units a minute, in µs,
/// computed exactly (no per-unit rounding, so a rate of 10^9 a minute is
/// that, not the 6·10^7 a whole-µs interval would cap it at).
pub fn span_us(rate: u64, units: u64) -> u64 {
    let span = u128::from(units) * u128::from(WINDOW_US) / u128::from(rate.max(1));
    u64::try_from(span).unwrap_or(u64::MAX)
}

/// Check `cost` units against `rate` units a minute with the stored `tat`,
/// at `now`. `cost` above `rate` is taken as `rate` (a request larger than
/// the whole minute's allowance waits for a full bucket, rather than
/// waiting forever).
pub fn check(tat: u64, now: u64, rate: u64, cost: u64) -> Verdict {
    let cost = cost.clamp(1, rate.max(1));
    let new_tat = tat.max(now).saturating_add(span_us(rate, cost));
    let allow_at = new_tat.saturating_sub(WINDOW_US);
    if allow_at > now {
        return Verdict::Refuse {
            retry_us: allow_at - now,
        };
    }
    Verdict::Admit {
        tat: new_tat,
        remaining: remaining(new_tat, now, rate),
        reset_us: new_tat - now,
    }
}

/// Units free at `now` with the stored `tat`.
pub fn remaining(tat: u64, now: u64, rate: u64) -> u64 {
    let free_us = now.saturating_add(WINDOW_US).saturating_sub(tat.max(now));
    let units = u128::from(free_us) * u128::from(rate) / u128::from(WINDOW_US);
    u64::try_from(units).unwrap_or(u64::MAX).min(rate)
}

/// The TAT after `delta` units are given back (negative) or charged
/// (positive) once a request's real cost is known.
pub fn settle(tat: u64, rate: u64, delta: i64) -> u64 {
    let units = span_us(rate, delta.unsigned_abs());
    match delta < 0 {
        true => tat.saturating_sub(units),
        false => tat.saturating_add(units),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    /// Runs `n` checks of one unit at `now`, storing each admitted TAT.
    fn burst(tat: &mut u64, now: u64, rate: u64, n: u64) -> u64 {
        let mut admitted = 0;
        for _ in 0..n {
            if let Verdict::Admit { tat: t, .. } = check(*tat, now, rate, 1) {
                *tat = t;
                admitted += 1;
            }
        }
        admitted
    }

    #[test]
    fn a_burst_of_the_rate_then_one_per_interval() {
        let mut tat = 0;
        let now = 1_000 * S;
        assert_eq!(burst(&mut tat, now, 60, 100), 60);
        match check(tat, now, 60, 1) {
            Verdict::Refuse { retry_us } => assert_eq!(retry_us, S),
            v => panic!("{v:?}"),
        }
        // One second later, exactly one more.
        assert_eq!(burst(&mut tat, now + S, 60, 5), 1);
        assert_eq!(remaining(tat, now + S, 60), 0);
        // A minute later, the whole burst again, not two.
        assert_eq!(burst(&mut tat, now + 61 * S, 60, 200), 60);
    }

    #[test]
    fn no_double_burst_across_a_minute_edge() {
        let mut tat = 0;
        let start = 1_000 * S;
        // Half the burst late in one "minute", the rest just after its edge:
        // never more than the rate plus what came back in between.
        let first = burst(&mut tat, start + 59 * S, 60, 60);
        let second = burst(&mut tat, start + 61 * S, 60, 60);
        assert_eq!(first, 60);
        assert_eq!(second, 2);
    }

    #[test]
    fn costs_and_settlement() {
        let now = 5_000 * S;
        let Verdict::Admit {
            tat, remaining: r, ..
        } = check(0, now, 1000, 600)
        else {
            panic!()
        };
        assert_eq!(r, 400);
        assert!(matches!(check(tat, now, 1000, 500), Verdict::Refuse { .. }));
        // The answer used 100 of the 600 reserved: 500 come back.
        let tat = settle(tat, 1000, -500);
        assert_eq!(remaining(tat, now, 1000), 900);
        assert!(matches!(check(tat, now, 1000, 500), Verdict::Admit { .. }));
        // A cost above the rate waits for a full bucket, then passes.
        let Verdict::Admit { tat, .. } = check(0, now, 1000, 5000) else {
            panic!()
        };
        assert_eq!(remaining(tat, now, 1000), 0);
    }

    #[test]
    fn rates_beyond_a_unit_per_microsecond_hold_exactly() {
        // 10^9 a minute: 4096-unit costs, 100 000 of them in one second,
        // fit (4.1·10^8 of the 10^9 burst); a µs-per-unit clock would have
        // capped the rate at 6·10^7 a minute and refused most.
        let (rate, now) = (1_000_000_000, 9_000 * S);
        let mut tat = 0;
        for i in 0..100_000u64 {
            match check(tat, now + i * 10, rate, 4096) {
                Verdict::Admit { tat: t, .. } => tat = t,
                v => panic!("refused at {i}: {v:?}"),
            }
        }
    }
}
