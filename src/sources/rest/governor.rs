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

use std::sync::{Arc, Condvar, Mutex};
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
    clock: Arc<dyn Clock>,
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

/// Where the governor reads the local time. Waiting is always real (a
/// condition variable with a timeout); a test clock moves time by hand and then
/// calls [`Governor::clock_moved`] so that waiters look again.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Local time now, in ms.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
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
        Governor::with_clock(limit, window, Arc::new(SystemClock))
    }

    /// [`Governor::new`] reading the local time from `clock`.
    pub fn with_clock(limit: u32, window: Duration, clock: Arc<dyn Clock>) -> Governor {
        Governor {
            clock,
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

    /// The clock was moved (a test clock): waiters look at it again.
    pub fn clock_moved(&self) {
        self.changed.notify_all();
    }

    fn local_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Sets the weight budget (from `exchangeInfo`'s `rateLimits`).
    pub fn set_limit(&self, limit: u32, window: Duration) {
        let mut s = self.state.lock().expect("governor lock");
        let (used, now) = (s.weight.used, self.local_ms() + s.offset_ms);
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

    /// The exchange said its clock reads `server_ms` now (an answer's
    /// `serverTime`, just received).
    pub fn set_server_time(&self, server_ms: i64) {
        let local_ms = self.local_ms();
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
        let estimate = self.local_ms() + s.offset_ms;
        if estimate < date_ms - slack || estimate >= date_ms + 1000 + slack {
            if s.clock_known {
                tracing::warn!(
                    drift_ms = estimate - (date_ms + 500),
                    "the exchange's clock moved against the local one; windows follow it"
                );
            }
            s.offset_ms = date_ms + 500 - self.local_ms();
            s.clock_known = true;
        }
    }

    /// The exchange's clock now, as far as the governor knows it.
    pub fn server_now(&self) -> i64 {
        self.local_ms() + self.state.lock().expect("governor lock").offset_ms
    }

    /// Blocks until `cost` fits every budget's current window, then reserves it.
    pub fn acquire(&self, cost: Cost) {
        let mut s = self.state.lock().expect("governor lock");
        loop {
            let local = self.local_ms();
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
        let now = self.local_ms() + s.offset_ms;
        if now.div_euclid(s.weight.window_ms) == s.weight.window {
            s.weight.used = s.weight.used.max(used);
        }
    }

    /// A 429 or 418 said to wait: nobody sends before then.
    pub fn pause(&self, retry_after: Duration) {
        let mut s = self.state.lock().expect("governor lock");
        // Jitter, so that the processes sharing an IP that were all told to
        // wait do not all come back at the same instant: a tenth of the wait,
        // at least half a second (a window's tenth made a 1 s wait up to 7 s).
        let wait_ms = retry_after.as_millis() as i64;
        let jitter = fastrand::i64(0..=(wait_ms / 10).max(500));
        let until = self.local_ms() + s.offset_ms + wait_ms + jitter;
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
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;

    /// Time that moves only when the test says so.
    #[derive(Debug, Default)]
    struct ManualClock(AtomicI64);

    impl Clock for ManualClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// A governor on a manual clock at `start`.
    fn governor(limit: u32, window: Duration, start: i64) -> (Arc<Governor>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock(AtomicI64::new(start)));
        let governor = Arc::new(Governor::with_clock(limit, window, clock.clone()));
        (governor, clock)
    }

    fn set_time(governor: &Governor, clock: &ManualClock, ms: i64) {
        clock.0.store(ms, Ordering::SeqCst);
        governor.clock_moved();
    }

    /// Moves the clock far ahead when dropped, so that a failed assertion in a
    /// scope does not leave its waiters blocked (and the test hanging).
    struct Release<'a>(&'a Governor, &'a ManualClock);

    impl Drop for Release<'_> {
        fn drop(&mut self) {
            set_time(self.0, self.1, 1 << 50);
        }
    }

    /// Waits (really) until `done` holds, failing after 5 s.
    fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "never: {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Gives a wrongly released waiter the time to get through, so that a
    /// check that it did not is meaningful.
    fn settle() {
        std::thread::sleep(Duration::from_millis(50));
    }

    /// Threads asking for more than a window's budget: the excess waits for the
    /// next window, and no window lets more than the limit through.
    #[test]
    fn never_lets_more_than_the_limit_through_in_a_window() {
        let (g, clock) = governor(100, Duration::from_secs(2), 0);
        std::thread::scope(|scope| {
            let _release = Release(&g, &clock);
            for _ in 0..11 {
                let g = g.clone();
                scope.spawn(move || g.acquire(Cost::weight(20)));
            }
            eventually("5 requests in the first window", || g.stats().weight == 100);
            settle();
            assert_eq!(g.stats().weight, 100, "the first window holds 100");
            set_time(&g, &clock, 1_500);
            settle();
            assert_eq!(g.stats().weight, 100, "still the first window");
            set_time(&g, &clock, 2_000);
            eventually("5 more in the second window", || g.stats().weight == 200);
            settle();
            assert_eq!(g.stats().weight, 200);
            set_time(&g, &clock, 4_000);
            eventually("the last one", || g.stats().weight == 220);
        });
    }

    /// No request starts in the guard at the end of a window.
    #[test]
    fn nothing_starts_in_the_last_moments_of_a_window() {
        let (g, clock) = governor(100, Duration::from_secs(60), 60_000 - GUARD_MS);
        std::thread::scope(|scope| {
            let _release = Release(&g, &clock);
            let waiter = scope.spawn(|| g.acquire(Cost::weight(1)));
            settle();
            assert!(
                !waiter.is_finished(),
                "started {GUARD_MS} ms before the window's end"
            );
            set_time(&g, &clock, 60_000);
            waiter.join().unwrap();
        });
    }

    /// The server's count (another process on the same IP) is respected.
    #[test]
    fn the_servers_count_lowers_what_is_left() {
        let (g, _) = governor(100, Duration::from_secs(3600), 0);
        g.acquire(Cost::weight(10));
        g.observe_used(95);
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| g.acquire(Cost::weight(10)));
            settle();
            assert!(!waiter.is_finished(), "only 5 of 100 left");
            g.set_limit(1000, Duration::from_secs(3600));
            waiter.join().unwrap();
        });
    }

    #[test]
    fn a_pause_holds_everyone() {
        let (g, clock) = governor(1_000_000, Duration::from_secs(60), 0);
        g.pause(Duration::from_millis(700));
        std::thread::scope(|scope| {
            let _release = Release(&g, &clock);
            let waiter = scope.spawn(|| g.acquire(Cost::weight(1)));
            set_time(&g, &clock, 650);
            settle();
            assert!(
                !waiter.is_finished(),
                "went before the Retry-After was over"
            );
            // The pause ends after 700 ms plus a jitter of at most 500 ms.
            set_time(&g, &clock, 1_201);
            waiter.join().unwrap();
        });
        assert_eq!(g.stats().pauses, 1);
    }

    /// Windows follow the exchange's clock: with the exchange 1.5 s ahead and
    /// 2 s windows, the exchange's next window opens at local 500 ms, not at
    /// local 2 000 ms where a locally aligned window would end.
    #[test]
    fn windows_are_aligned_to_the_exchanges_clock() {
        let (g, clock) = governor(100, Duration::from_secs(2), 0);
        g.set_server_time(1_500);
        std::thread::scope(|scope| {
            let _release = Release(&g, &clock);
            for _ in 0..6 {
                let g = g.clone();
                scope.spawn(move || g.acquire(Cost::weight(20)));
            }
            eventually("5 in the exchange's first window", || {
                g.stats().weight == 100
            });
            // Exchange time 1 900: in the guard before its window ends.
            set_time(&g, &clock, 400);
            settle();
            assert_eq!(g.stats().weight, 100);
            set_time(&g, &clock, 500);
            eventually("the exchange's next window opens", || {
                g.stats().weight == 120
            });
        });
    }

    #[test]
    fn funding_requests_wait_for_their_own_budget_only() {
        let (g, _) = governor(1_000_000, Duration::from_secs(60), 0);
        g.set_funding_limit(2, Duration::from_secs(3600));
        let funding = Cost {
            weight: 1,
            funding: 1,
        };
        g.acquire(funding);
        g.acquire(funding);
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| g.acquire(funding));
            settle();
            assert!(!waiter.is_finished(), "the funding budget is spent");
            // Other requests go through meanwhile.
            g.acquire(Cost::weight(5));
            g.set_funding_limit(10, Duration::from_secs(3600));
            waiter.join().unwrap();
        });
        assert_eq!(g.stats().funding, 3);
    }

    #[test]
    fn a_date_header_corrects_only_a_drift_it_can_show() {
        let (g, _) = governor(2400, Duration::from_secs(60), 1_000_000);
        g.set_server_time(1_000_250);
        // A Date within the second the estimate falls in changes nothing.
        g.observe_date(1_000_000, Duration::from_millis(200));
        assert_eq!(g.server_now(), 1_000_250);
        // Ten seconds off: the estimate moves to the middle of that second.
        g.observe_date(1_010_000, Duration::from_millis(200));
        assert_eq!(g.server_now(), 1_010_500);
    }
}
