// SPDX-License-Identifier: MPL-2.0
//! Helpers of the benchmarks (`cargo bench` targets of every crate and `affect bench`): timing
//! the best of several runs, quantiles of measured times, the process's resident memory and
//! the benchmarks' settings from the environment. Public so that every benchmark uses the
//! same ones.

use std::str::FromStr;
use std::time::{Duration, Instant};

/// The shortest of `runs` timed calls of `f`. Panics when `runs` is 0.
pub fn best_of<F: FnMut()>(runs: usize, mut f: F) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap()
}

/// The shortest of `runs` timed calls of `f`, or its first error; [`Duration::MAX`] when
/// `runs` is 0.
pub fn try_best_of<F: FnMut() -> Result<(), String>>(
    runs: usize,
    mut f: F,
) -> Result<Duration, String> {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed());
    }
    Ok(best)
}

/// The `p` quantile (0..=1) of `sorted` (nearest rank), or `None` when it is empty.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[((sorted.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize])
}

/// Resident set size of this process in kB (`VmRSS` of `/proc/self/status`), or `None` where
/// it cannot be read.
pub fn rss_kb() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The environment variable `name` parsed as a `T`, or `default` when it is unset or does not
/// parse.
pub fn env_or<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_takes_the_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 0.5), Some(3.0));
        assert_eq!(percentile(&v, 0.99), Some(5.0));
        assert_eq!(percentile(&v, 2.0), Some(5.0));
        assert_eq!(percentile::<f64>(&[], 0.5), None);
    }

    #[test]
    fn try_best_of_stops_at_the_first_error() {
        let mut calls = 0;
        let r = try_best_of(5, || {
            calls += 1;
            if calls == 2 {
                Err("second".to_string())
            } else {
                Ok(())
            }
        });
        assert_eq!((r, calls), (Err("second".to_string()), 2));
        assert_eq!(try_best_of(0, || Ok(())), Ok(Duration::MAX));
    }

    #[test]
    fn rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(rss_kb().unwrap() > 0);
        }
    }
}
