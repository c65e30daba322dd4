//! The pure parts of the sweeps: which points they visit, where the knee
//! is, and the slope of memory against cached claims.

use serde::{Deserialize, Serialize};

/// The closed-loop client counts: 1, 2, 4, … up to `max`.
pub fn client_counts(max: usize) -> Vec<usize> {
    std::iter::successors(Some(1usize), |clients| clients.checked_mul(2))
        .take_while(|clients| *clients <= max.max(1))
        .collect()
}

/// Offered rates from `start`, each `factor` times the last, rounded to two
/// significant digits, up to `max`.
pub fn offered_rates(start: f64, factor: f64, max: f64) -> Vec<f64> {
    let mut rates: Vec<f64> = Vec::new();
    let mut rate = start.max(1.0);
    while rate <= max && rates.len() < 64 {
        let rounded = round_two_digits(rate);
        if rates.last() != Some(&rounded) {
            rates.push(rounded);
        }
        rate *= factor.max(1.01);
    }
    rates
}

fn round_two_digits(value: f64) -> f64 {
    if value < 10.0 {
        return value.round();
    }
    let unit = 10f64.powf(value.log10().floor() - 1.0);
    (value / unit).round() * unit
}

/// One point of an open-loop sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenPoint {
    pub offered_per_s: f64,
    pub achieved_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub ok: u64,
    pub errors: u64,
}

/// Whether a point is past the knee: its p99 is above `p99_bound_ms`, or
/// less than 90 % of the offered rate was served (errors, overruns and a
/// queue that grew until the end all count as not served).
pub fn past_knee(point: &OpenPoint, p99_bound_ms: f64) -> bool {
    point.p99_ms > p99_bound_ms || point.achieved_per_s < 0.9 * point.offered_per_s
}

/// Consecutive points past the knee that end a sweep: one alone may be a
/// stall of the shared machine (a GC pause, another process), not the
/// knee.
pub const PAST_KNEE_TO_STOP: usize = 2;

/// Whether a sweep that measured `points` should stop.
pub fn sweep_done(points: &[OpenPoint], p99_bound_ms: f64) -> bool {
    points.len() >= PAST_KNEE_TO_STOP
        && points[points.len() - PAST_KNEE_TO_STOP..]
            .iter()
            .all(|point| past_knee(point, p99_bound_ms))
}

/// The knee: the highest offered rate served within the bounds, below the
/// rates where the sweep stayed past them. None when no point was within.
pub fn knee(points: &[OpenPoint], p99_bound_ms: f64) -> Option<f64> {
    let trailing_past = points
        .iter()
        .rev()
        .take_while(|point| past_knee(point, p99_bound_ms))
        .count();
    points[..points.len() - trailing_past]
        .iter()
        .rev()
        .find(|point| !past_knee(point, p99_bound_ms))
        .map(|point| point.offered_per_s)
}

/// The least-squares slope of `y` against `x`; None under two distinct x.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let covariance: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let variance: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    (variance > 0.0).then(|| covariance / variance)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(offered: f64, achieved: f64, p99_ms: f64) -> OpenPoint {
        OpenPoint {
            offered_per_s: offered,
            achieved_per_s: achieved,
            p50_ms: p99_ms / 3.0,
            p99_ms,
            ok: 0,
            errors: 0,
        }
    }

    #[test]
    fn client_counts_double_up_to_the_maximum() {
        assert_eq!(client_counts(256), vec![1, 2, 4, 8, 16, 32, 64, 128, 256]);
        assert_eq!(client_counts(100), vec![1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(client_counts(0), vec![1]);
    }

    #[test]
    fn offered_rates_grow_geometrically_and_round() {
        assert_eq!(
            offered_rates(50.0, 1.5, 1000.0),
            vec![50.0, 75.0, 110.0, 170.0, 250.0, 380.0, 570.0, 850.0]
        );
        assert_eq!(offered_rates(100.0, 2.0, 100.0), vec![100.0]);
        assert!(offered_rates(100.0, 2.0, 50.0).is_empty());
    }

    #[test]
    fn the_knee_is_the_last_rate_within_both_bounds_before_the_end() {
        let points = [
            point(100.0, 99.0, 8.0),
            point(200.0, 198.0, 12.0),
            // A stall: past the bound once, then within it again.
            point(300.0, 298.0, 400.0),
            point(400.0, 395.0, 30.0),
            // Served, but too slow, twice: the end.
            point(800.0, 790.0, 250.0),
            point(1600.0, 900.0, 900.0),
        ];
        assert!(!sweep_done(&points[..3], 100.0));
        assert!(sweep_done(&points, 100.0));
        assert_eq!(knee(&points, 100.0), Some(400.0));
        assert_eq!(knee(&points, 20.0), Some(200.0));
        // Not served: 85 % of the offered rate.
        let short = [point(100.0, 99.0, 5.0), point(200.0, 170.0, 5.0)];
        assert!(past_knee(&short[1], 100.0));
        assert_eq!(knee(&short, 100.0), Some(100.0));
        assert_eq!(knee(&[point(100.0, 50.0, 5.0)], 100.0), None);
        assert_eq!(knee(&[], 100.0), None);
    }

    #[test]
    fn the_slope_is_least_squares() {
        let line: Vec<(f64, f64)> = (0..5).map(|x| (x as f64, 3.0 * x as f64 + 7.0)).collect();
        assert!((slope(&line).unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 2.0)]), None);
        assert_eq!(slope(&[(1.0, 2.0), (1.0, 3.0)]), None);
    }
}
