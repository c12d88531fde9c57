//! One request governor for every REST caller of a process.
//!
//! Binance counts request weight per IP per clock minute of *its own* clock (the
//! window comes from `exchangeInfo`'s `rateLimits`; the simulator can shorten
//! it) and answers 429 past the budget, then 418 (a ban) to a client that keeps
//! going. fundingRate and fundingInfo have a budget of their own on top (500
//! requests per 5 minutes per IP). The governor keeps its own count of both so
//! that it never has to learn a limit from a 429: each request reserves its
//! cost before it is sent and waits for the next window when a budget is
//! spent; the `X-MBX-USED-WEIGHT-1M` header of every answer corrects the weight
//! count upwards (other processes on the same IP spend the same budget); a
//! `Retry-After` pauses every caller. Windows are aligned to the exchange's
//! clock (its `serverTime`, then the `Date` of its answers), not the local one,
//! and requests do not start in the last moments of a window, where one could
//! land in the next window uncounted.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// No request starts this close to the end of a window (at most a 20th of it).
const GUARD_MS: i64 = 300;

/// Binance's funding budget: requests per window, and the window.
const FUNDING_LIMIT: u32 = 500;
const FUNDING_WINDOW: Duration = Duration::from_secs(300);

/// What one request costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cost {
    /// Request weight.
    pub weight: u32,
    /// Requests of the funding budget (fundingRate, fundingInfo): 0 or 1.
    pub funding: u32,
}

impl Cost {
    /// A request of `weight` only.
    pub const fn weight(weight: u32) -> Cost {
        Cost { weight, funding: 0 }
    }
}

/// One budget per clock-aligned window.
#[derive(Debug)]
struct Budget {
    limit: u32,
    window_ms: i64,
    window: i64,
    used: u32,
}

impl Budget {
    fn new(limit: u32, window: Duration) -> Budget {
        Budget {
            limit,
            window_ms: (window.as_millis() as i64).max(1),
            window: i64::MIN,
            used: 0,
        }
    }

    /// Moves to the window holding `now`.
    fn roll(&mut self, now: i64) {
        let window = now.div_euclid(self.window_ms);
        if window != self.window {
            self.window = window;
            self.used = 0;
        }
    }

    /// `None` if `amount` may start at `now`; else when to look again.
    fn wait_for(&self, now: i64, amount: u32) -> Option<i64> {
        if amount == 0 {
            return None;
        }
        let end = (self.window + 1) * self.window_ms;
        let fits = self.used + amount <= self.limit || (self.used == 0 && amount > self.limit);
        if now >= end - GUARD_MS.min(self.window_ms / 20) || !fits {
            Some(end)
        } else {
            None
        }
    }
}

#[derive(Debug)]
struct State {
    weight: Budget,
    funding: Budget,
    /// The exchange's clock minus the local one, once known.
    offset_ms: i64,
    clock_known: bool,
    paused_until_ms: i64,
    /// Cost reserved over the whole run, and pauses obeyed (for the summary).
    total_weight: u64,
    total_funding: u64,
    pauses: u64,
}

/// The shared budgets. All methods take `&self`: share it in an `Arc`.
#[derive(Debug)]
pub struct Governor {
    state: Mutex<State>,
    changed: Condvar,
}

/// What the governor did over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GovernorStats {
    /// Weight of the requests it let through.
    pub weight: u64,
    /// Funding-budget requests it let through.
    pub funding: u64,
    /// `Retry-After` pauses it obeyed.
    pub pauses: u64,
}

fn local_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Binance's default weight budget (2 400 per minute) until `exchangeInfo`
/// says more, and its funding budget.
impl Default for Governor {
    fn default() -> Governor {
        Governor::new(2400, Duration::from_secs(60))
    }
}

impl Governor {
    /// A governor allowing `limit` weight per clock-aligned `window` (and
    /// Binance's funding budget).
    pub fn new(limit: u32, window: Duration) -> Governor {
        Governor {
            state: Mutex::new(State {
                weight: Budget::new(limit, window),
                funding: Budget::new(FUNDING_LIMIT, FUNDING_WINDOW),
                offset_ms: 0,
                clock_known: false,
                paused_until_ms: 0,
                total_weight: 0,
                total_funding: 0,
                pauses: 0,
            }),
            changed: Condvar::new(),
        }
    }

    /// Sets the weight budget (from `exchangeInfo`'s `rateLimits`).
    pub fn set_limit(&self, limit: u32, window: Duration) {
        let mut s = self.state.lock().expect("governor lock");
        let (used, now) = (s.weight.used, local_ms() + s.offset_ms);
        s.weight = Budget::new(limit, window);
        s.weight.roll(now);
        // What was spent so far stays spent (the request that asked counts).
        s.weight.used = used;
        drop(s);
        self.changed.notify_all();
    }

    /// Sets the funding budget (the simulator can shorten it; Binance: 500
    /// per 5 minutes).
    pub fn set_funding_limit(&self, limit: u32, window: Duration) {
        let mut s = self.state.lock().expect("governor lock");
        s.funding = Budget::new(limit, window);
        drop(s);
        self.changed.notify_all();
    }

    /// The exchange said its clock read `server_ms` when the local clock read
    /// `local_ms` (an answer's `serverTime`, taken on receipt).
    pub fn set_server_time(&self, server_ms: i64, local_ms: i64) {
        let mut s = self.state.lock().expect("governor lock");
        s.offset_ms = server_ms - local_ms;
        s.clock_known = true;
        drop(s);
        self.changed.notify_all();
    }

    /// An answer's `Date` (whole seconds of the exchange's clock). It only
    /// corrects a drift the whole-second stamp can show: an estimate outside
    /// `[date, date + 1 s)` by more than `slack` moves to the middle of it.
    pub fn observe_date(&self, date_ms: i64, slack: Duration) {
        let slack = slack.as_millis() as i64;
        let mut s = self.state.lock().expect("governor lock");
        let estimate = local_ms() + s.offset_ms;
        if estimate < date_ms - slack || estimate >= date_ms + 1000 + slack {
            if s.clock_known {
                tracing::warn!(
                    drift_ms = estimate - (date_ms + 500),
                    "the exchange's clock moved against the local one; windows follow it"
                );
            }
            s.offset_ms = date_ms + 500 - local_ms();
            s.clock_known = true;
        }
    }

    /// The exchange's clock now, as far as the governor knows it.
    pub fn server_now(&self) -> i64 {
        local_ms() + self.state.lock().expect("governor lock").offset_ms
    }

    /// Blocks until `cost` fits every budget's current window, then reserves it.
    pub fn acquire(&self, cost: Cost) {
        let mut s = self.state.lock().expect("governor lock");
        loop {
            let local = local_ms();
            let now = local + s.offset_ms;
            s.weight.roll(now);
            s.funding.roll(now);
            let wake_at = if now < s.paused_until_ms {
                Some(s.paused_until_ms)
            } else {
                match (
                    s.weight.wait_for(now, cost.weight),
                    s.funding.wait_for(now, cost.funding),
                ) {
                    (None, None) => None,
                    (a, b) => a.max(b),
                }
            };
            let Some(wake_at) = wake_at else {
                s.weight.used += cost.weight;
                s.funding.used += cost.funding;
                s.total_weight += u64::from(cost.weight);
                s.total_funding += u64::from(cost.funding);
                return;
            };
            let wait = Duration::from_millis((wake_at - now).max(1) as u64);
            s = self.changed.wait_timeout(s, wait).expect("governor lock").0;
        }
    }

    /// The server's `X-MBX-USED-WEIGHT-1M`, read from an answer received now.
    pub fn observe_used(&self, used: u32) {
        let mut s = self.state.lock().expect("governor lock");
        let now = local_ms() + s.offset_ms;
        if now.div_euclid(s.weight.window_ms) == s.weight.window {
            s.weight.used = s.weight.used.max(used);
        }
    }

    /// A 429 or 418 said to wait: nobody sends before then.
    pub fn pause(&self, retry_after: Duration) {
        let mut s = self.state.lock().expect("governor lock");
        // Jitter, so that the processes sharing an IP that were all told to
        // wait do not all come back at the same instant.
        let jitter = fastrand::i64(0..=s.weight.window_ms / 10);
        let until = local_ms() + s.offset_ms + retry_after.as_millis() as i64 + jitter;
        s.paused_until_ms = s.paused_until_ms.max(until);
        s.pauses += 1;
        drop(s);
        self.changed.notify_all();
    }

    /// What it let through and how often it paused.
    pub fn stats(&self) -> GovernorStats {
        let s = self.state.lock().expect("governor lock");
        GovernorStats {
            weight: s.total_weight,
            funding: s.total_funding,
            pauses: s.pauses,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;

    /// Threads asking for more than a window's budget: the excess waits for the
    /// next window, and no window ever lets more than the limit through.
    #[test]
    fn never_lets_more_than_the_limit_through_in_a_window() {
        let window = Duration::from_secs(2);
        // Start right after a window turns, so the test spans one boundary.
        std::thread::sleep(Duration::from_millis(
            (2000 - local_ms().rem_euclid(2000) + 10) as u64,
        ));
        let governor = Arc::new(Governor::new(100, window));
        let windows: Vec<i64> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..11)
                .map(|_| {
                    let g = governor.clone();
                    scope.spawn(move || {
                        g.acquire(Cost::weight(20));
                        local_ms().div_euclid(2000)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let first = *windows.iter().min().unwrap();
        let count = |w: i64| windows.iter().filter(|&&x| x == w).count();
        assert_eq!(
            (count(first), count(first + 1), count(first + 2)),
            (5, 5, 1)
        );
        assert_eq!(governor.stats().weight, 220);
    }

    /// The server's count (another process on the same IP) is respected.
    #[test]
    fn the_servers_count_lowers_what_is_left() {
        let governor = Governor::new(100, Duration::from_secs(3600));
        governor.acquire(Cost::weight(10));
        governor.observe_used(95);
        let started = Instant::now();
        let g = &governor;
        std::thread::scope(|scope| {
            let waiter = scope.spawn(move || g.acquire(Cost::weight(10)));
            std::thread::sleep(Duration::from_millis(300));
            assert!(!waiter.is_finished(), "only 5 of 100 left");
            g.set_limit(1000, Duration::from_secs(3600));
            waiter.join().unwrap();
        });
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[test]
    fn a_pause_holds_everyone() {
        let governor = Governor::new(1_000_000, Duration::from_secs(60));
        governor.pause(Duration::from_millis(700));
        let started = Instant::now();
        governor.acquire(Cost::weight(1));
        assert!(started.elapsed() >= Duration::from_millis(650));
        assert_eq!(governor.stats().pauses, 1);
    }

    /// Windows follow the exchange's clock: with the exchange 1.5 s ahead and
    /// 2 s windows, what the governor lets through in one of *its* windows
    /// stays under the limit, whatever the local windows say.
    #[test]
    fn windows_are_aligned_to_the_exchanges_clock() {
        let governor = Arc::new(Governor::new(100, Duration::from_secs(2)));
        governor.set_server_time(local_ms() + 1500, local_ms());
        let server_windows: Vec<i64> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..11)
                .map(|_| {
                    let g = governor.clone();
                    scope.spawn(move || {
                        g.acquire(Cost::weight(20));
                        g.server_now().div_euclid(2000)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for w in &server_windows {
            let n = server_windows.iter().filter(|x| *x == w).count();
            assert!(n <= 5, "{n} requests of 20 in one 100-weight window");
        }
    }

    #[test]
    fn funding_requests_wait_for_their_own_budget_only() {
        let governor = Governor::new(1_000_000, Duration::from_secs(60));
        governor.set_funding_limit(2, Duration::from_secs(3600));
        let funding = Cost {
            weight: 1,
            funding: 1,
        };
        governor.acquire(funding);
        governor.acquire(funding);
        let g = &governor;
        std::thread::scope(|scope| {
            let waiter = scope.spawn(move || g.acquire(funding));
            std::thread::sleep(Duration::from_millis(200));
            assert!(!waiter.is_finished(), "the funding budget is spent");
            // Other requests go through meanwhile.
            g.acquire(Cost::weight(5));
            g.set_funding_limit(10, Duration::from_secs(3600));
            waiter.join().unwrap();
        });
        assert_eq!(governor.stats().funding, 3);
    }

    #[test]
    fn a_date_header_corrects_only_a_drift_it_can_show() {
        let governor = Governor::default();
        let local = local_ms();
        governor.set_server_time(local + 250, local);
        // A Date within the second the estimate falls in changes nothing.
        let date = (local + 250).div_euclid(1000) * 1000;
        governor.observe_date(date, Duration::from_millis(200));
        assert!((governor.server_now() - (local_ms() + 250)).abs() < 50);
        // Ten seconds off: the estimate follows the Date.
        governor.observe_date(date + 10_000, Duration::from_millis(200));
        assert!((governor.server_now() - (date + 10_500)).abs() < 100);
    }
}
