//! One request-weight governor for every REST caller of a process.
//!
//! Binance counts request weight per IP per UTC clock minute (the window comes
//! from `exchangeInfo`'s `rateLimits`; the simulator can shorten it) and answers 429
//! past the budget, then 418 (a ban) to a client that keeps going. The governor
//! keeps its own count so that it never has to learn the limit from a 429:
//! each request reserves its weight before it is sent and waits for the next
//! minute when the budget is spent; the `X-MBX-USED-WEIGHT-1M` header of every
//! answer corrects the count upwards (other processes on the same IP spend the
//! same budget); a `Retry-After` pauses every caller. Requests do not start in
//! the last moments of a minute, where one could land in the next minute
//! uncounted.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// No request starts this close to the end of a window (at most a 20th of it).
const GUARD_MS: i64 = 300;

#[derive(Debug)]
struct State {
    limit: u32,
    window_ms: i64,
    minute: i64,
    used: u32,
    paused_until_ms: i64,
    /// Weight reserved over the whole run, and pauses obeyed (for the summary).
    total_weight: u64,
    pauses: u64,
}

/// The shared weight budget. All methods take `&self`: share it in an `Arc`.
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
    /// `Retry-After` pauses it obeyed.
    pub pauses: u64,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Binance's default budget (2 400 per minute) until `exchangeInfo` says more.
impl Default for Governor {
    fn default() -> Governor {
        Governor::new(2400, Duration::from_secs(60))
    }
}

impl Governor {
    /// A governor allowing `limit` weight per clock-aligned `window`.
    pub fn new(limit: u32, window: Duration) -> Governor {
        Governor {
            state: Mutex::new(State {
                limit,
                window_ms: (window.as_millis() as i64).max(1),
                minute: i64::MIN,
                used: 0,
                paused_until_ms: 0,
                total_weight: 0,
                pauses: 0,
            }),
            changed: Condvar::new(),
        }
    }

    /// Sets the budget (from `exchangeInfo`'s `rateLimits`).
    pub fn set_limit(&self, limit: u32, window: Duration) {
        let mut s = self.state.lock().expect("governor lock");
        s.limit = limit;
        s.window_ms = (window.as_millis() as i64).max(1);
        // What was spent so far stays spent (the request that asked counts).
        s.minute = now_ms().div_euclid(s.window_ms);
        drop(s);
        self.changed.notify_all();
    }

    /// Blocks until `weight` fits in the current window, then reserves it.
    pub fn acquire(&self, weight: u32) {
        let mut s = self.state.lock().expect("governor lock");
        loop {
            let now = now_ms();
            let window = s.window_ms;
            let minute = now.div_euclid(window);
            if minute != s.minute {
                s.minute = minute;
                s.used = 0;
            }
            let minute_end = (minute + 1) * window;
            let wake_at = if now < s.paused_until_ms {
                s.paused_until_ms
            } else if now >= minute_end - GUARD_MS.min(window / 20) {
                minute_end
            } else if s.used + weight <= s.limit || (s.used == 0 && weight > s.limit) {
                s.used += weight;
                s.total_weight += u64::from(weight);
                return;
            } else {
                minute_end
            };
            let wait = Duration::from_millis((wake_at - now).max(1) as u64);
            s = self.changed.wait_timeout(s, wait).expect("governor lock").0;
        }
    }

    /// The server's `X-MBX-USED-WEIGHT-1M`, read from an answer received now.
    pub fn observe_used(&self, used: u32) {
        let mut s = self.state.lock().expect("governor lock");
        if now_ms().div_euclid(s.window_ms) == s.minute {
            s.used = s.used.max(used);
        }
    }

    /// A 429 or 418 said to wait: nobody sends before then.
    pub fn pause(&self, retry_after: Duration) {
        let mut s = self.state.lock().expect("governor lock");
        // Jitter, so that the processes sharing an IP that were all told to
        // wait do not all come back at the same instant.
        let jitter = fastrand::i64(0..=s.window_ms / 10);
        let until = now_ms() + retry_after.as_millis() as i64 + jitter;
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
            (2000 - now_ms().rem_euclid(2000) + 10) as u64,
        ));
        let governor = Arc::new(Governor::new(100, window));
        let windows: Vec<i64> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..11)
                .map(|_| {
                    let g = governor.clone();
                    scope.spawn(move || {
                        g.acquire(20);
                        now_ms().div_euclid(2000)
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
        governor.acquire(10);
        governor.observe_used(95);
        let started = Instant::now();
        let g = &governor;
        std::thread::scope(|scope| {
            let waiter = scope.spawn(move || g.acquire(10));
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
        governor.acquire(1);
        assert!(started.elapsed() >= Duration::from_millis(650));
        assert_eq!(governor.stats().pauses, 1);
    }
}
