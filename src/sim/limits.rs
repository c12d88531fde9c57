//! The exchange's request-weight budget, as Binance enforces it: per IP, per UTC
//! clock minute (not a sliding window; the simulator can shorten the window, and
//! says so in `exchangeInfo`). Past the budget: 429 with `Retry-After`; a client
//! that keeps sending before that time is up earns a 418 and a ban.

use std::collections::HashMap;
use std::net::IpAddr;

/// Requests sent during one `Retry-After` wait before the IP is banned (Binance
/// does not publish its figure). Those already in flight when the 429 went out,
/// from every thread and process on the IP, are forgiven; a client that keeps
/// going without waiting sends far more than this within one wait.
const VIOLATIONS_BEFORE_BAN: u32 = 50;
/// How long a ban lasts (Binance: 2 minutes for a first offence).
const BAN_MS: i64 = 120_000;

/// What the budget says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Served; the weight is counted.
    Served,
    /// 429: over budget (or a throttle the simulator injects); retry after so
    /// many seconds.
    TooMany { retry_after_s: u64 },
    /// 429: over the funding budget (fundingRate, fundingInfo); retry after
    /// so many seconds. The weight budget is not touched.
    FundingTooMany { retry_after_s: u64 },
    /// 418: banned for so many more seconds.
    Banned { retry_after_s: u64 },
}

#[derive(Debug, Default)]
struct Ip {
    minute: i64,
    used: u32,
    /// Until when a 429 told this IP to wait (ms).
    wait_until: i64,
    violations: u32,
    banned_until: i64,
    funding_window: i64,
    funding_used: u32,
}

/// Per-IP weight accounting.
#[derive(Debug)]
pub struct Limits {
    limit: u32,
    window_ms: i64,
    funding_limit: u32,
    funding_window_ms: i64,
    ips: HashMap<IpAddr, Ip>,
    /// Weight served per window (all IPs), the last [`HISTORY`] windows.
    history: std::collections::BTreeMap<i64, u32>,
}

/// Windows of served weight kept for `/sim/stats`.
const HISTORY: usize = 1000;

/// Whole seconds from `now_ms` until `until`, at least 1 (a `Retry-After`).
fn seconds_until(until: i64, now_ms: i64) -> u64 {
    ((until - now_ms).max(0) as u64).div_ceil(1000).max(1)
}

impl Ip {
    /// A request while banned, or while told to wait: refused, and one
    /// request too many during a wait earns a ban.
    fn refused_while_told_to_wait(&mut self, now_ms: i64) -> Option<Admission> {
        if now_ms < self.banned_until {
            return Some(Admission::Banned {
                retry_after_s: seconds_until(self.banned_until, now_ms),
            });
        }
        if now_ms >= self.wait_until {
            return None;
        }
        self.violations += 1;
        if self.violations >= VIOLATIONS_BEFORE_BAN {
            self.banned_until = now_ms + BAN_MS;
            self.violations = 0;
            return Some(Admission::Banned {
                retry_after_s: seconds_until(self.banned_until, now_ms),
            });
        }
        Some(Admission::TooMany {
            retry_after_s: seconds_until(self.wait_until, now_ms),
        })
    }

    /// Takes one request of the funding budget, or refuses it until the
    /// budget's window turns.
    fn spend_funding(&mut self, now_ms: i64, window: i64, limit: u32) -> Option<Admission> {
        let current = now_ms.div_euclid(window);
        if self.funding_window != current {
            self.funding_window = current;
            self.funding_used = 0;
        }
        if self.funding_used >= limit {
            return Some(Admission::FundingTooMany {
                retry_after_s: seconds_until((current + 1) * window, now_ms),
            });
        }
        self.funding_used += 1;
        None
    }
}

impl Limits {
    /// A budget of `limit` weight per IP per clock-aligned window of
    /// `window_ms` (Binance: 60 000), and of `funding_limit` funding requests
    /// per `funding_window_ms` (Binance: 500 per 300 000).
    pub fn new(limit: u32, window_ms: i64, funding_limit: u32, funding_window_ms: i64) -> Limits {
        Limits {
            limit,
            window_ms: window_ms.max(1000),
            funding_limit,
            funding_window_ms: funding_window_ms.max(1000),
            ips: HashMap::new(),
            history: std::collections::BTreeMap::new(),
        }
    }

    /// Weight served in each of the latest windows, oldest first (a benchmark
    /// reads how close a client runs to the limit).
    pub fn weight_per_window(&self) -> Vec<u32> {
        self.history.values().copied().collect()
    }

    /// The budget per window.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The window as Binance names it: `(interval, intervalNum)` for
    /// `exchangeInfo`, and the suffix of the used-weight header (`1m`, `10s`).
    pub fn interval(&self) -> (&'static str, i64, String) {
        let seconds = self.window_ms / 1000;
        if seconds % 60 == 0 {
            ("MINUTE", seconds / 60, format!("{}m", seconds / 60))
        } else {
            ("SECOND", seconds, format!("{seconds}s"))
        }
    }

    /// Decides one request of `weight` from `ip` at exchange time `now_ms`;
    /// `throttle` forces a 429 (fault injection); `funding` says it also
    /// counts against the funding budget. Returns the decision and the weight
    /// used in the current minute (the `X-MBX-USED-WEIGHT-1M` header).
    pub fn admit(
        &mut self,
        ip: IpAddr,
        weight: u32,
        now_ms: i64,
        throttle: bool,
        funding: bool,
    ) -> (Admission, u32) {
        let (limit, window) = (self.limit, self.window_ms);
        let (funding_limit, funding_window) = (self.funding_limit, self.funding_window_ms);
        let state = self.ips.entry(ip).or_default();
        let minute = now_ms.div_euclid(window);
        if state.minute != minute {
            state.minute = minute;
            state.used = 0;
        }
        let seconds = |until: i64| seconds_until(until, now_ms);
        if let Some(refusal) = state.refused_while_told_to_wait(now_ms) {
            return (refusal, state.used);
        }
        // A new wait: the count of requests sent during it starts again.
        if throttle {
            state.wait_until = now_ms + 1000;
            state.violations = 0;
            return (Admission::TooMany { retry_after_s: 1 }, state.used);
        }
        if state.used + weight > limit {
            state.wait_until = (minute + 1) * window;
            state.violations = 0;
            return (
                Admission::TooMany {
                    retry_after_s: seconds(state.wait_until),
                },
                state.used,
            );
        }
        if funding {
            if let Some(refusal) = state.spend_funding(now_ms, funding_window, funding_limit) {
                return (refusal, state.used);
            }
        }
        state.used += weight;
        let used = state.used;
        *self.history.entry(minute).or_default() += weight;
        if self.history.len() > HISTORY {
            self.history.pop_first();
        }
        (Admission::Served, used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_per_clock_minute_then_429_then_418_for_the_impatient() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let mut l = Limits::new(50, 60_000, 500, 300_000);
        let t = 600_000 + 59_000;
        assert_eq!(l.admit(ip, 20, t, false, false), (Admission::Served, 20));
        assert_eq!(l.admit(ip, 20, t, false, false), (Admission::Served, 40));
        assert_eq!(
            l.admit(ip, 20, t, false, false),
            (Admission::TooMany { retry_after_s: 1 }, 40)
        );
        // Asking again before the minute turns: violations, then a ban.
        for i in 1..VIOLATIONS_BEFORE_BAN {
            assert!(matches!(
                l.admit(ip, 1, t + i64::from(i), false, false).0,
                Admission::TooMany { .. }
            ));
        }
        assert_eq!(
            l.admit(ip, 1, t + 30, false, false).0,
            Admission::Banned { retry_after_s: 120 }
        );
        assert!(matches!(
            l.admit(ip, 1, t + 60_000, false, false).0,
            Admission::Banned { .. }
        ));
        assert_eq!(
            l.admit(ip, 1, t + 121_000, false, false),
            (Admission::Served, 1)
        );
        // A patient client is never banned: the new minute has a fresh budget.
        let mut l = Limits::new(50, 60_000, 500, 300_000);
        assert_eq!(l.admit(ip, 50, t, false, false).0, Admission::Served);
        assert!(matches!(
            l.admit(ip, 1, t, false, false).0,
            Admission::TooMany { .. }
        ));
        assert_eq!(
            l.admit(ip, 50, t + 1000, false, false),
            (Admission::Served, 50)
        );
    }

    #[test]
    fn the_funding_budget_counts_requests_apart_from_the_weight() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let mut l = Limits::new(100, 60_000, 2, 300_000);
        let t = 300_000 * 7 + 1000;
        assert_eq!(l.admit(ip, 0, t, false, true), (Admission::Served, 0));
        assert_eq!(l.admit(ip, 0, t, false, true), (Admission::Served, 0));
        assert_eq!(
            l.admit(ip, 0, t, false, true).0,
            Admission::FundingTooMany { retry_after_s: 299 }
        );
        // Other endpoints go on; the next funding window is fresh.
        assert_eq!(l.admit(ip, 5, t, false, false), (Admission::Served, 5));
        assert_eq!(
            l.admit(ip, 0, t + 299_000, false, true).0,
            Admission::Served
        );
    }
}
