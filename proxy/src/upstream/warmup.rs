//! Slow start (Envoy's, Istio's `warmup`): an endpoint that joined the cluster less than a window ago gets a
//! reduced weight, `max(min_weight_percent / 100, (age / window) ^ (1 / aggression))`, so a new instance is not
//! sent its full share of requests while it warms up. Pure.

use std::time::Duration;

use crate::config::cluster::SlowStart;

/// An endpoint's weight factor in 0..=1 at `age` (Envoy counts at least one second of age).
pub fn factor(slow_start: &SlowStart, age: Duration) -> f64 {
    if age >= slow_start.window || slow_start.window.is_zero() {
        return 1.0;
    }
    let time = age.as_secs_f64().max(1.0) / slow_start.window.as_secs_f64();
    time.powf(1.0 / slow_start.aggression).max(slow_start.min_weight_percent / 100.0).min(1.0)
}

/// The index of `weights` a uniform `roll` in 0..1 lands on, each chosen in proportion to its weight; `None` when
/// there is no positive weight.
pub fn weighted(weights: &[f64], roll: f64) -> Option<usize> {
    let total: f64 = weights.iter().filter(|w| **w > 0.0).sum();
    if total <= 0.0 {
        return None;
    }
    let mut point = roll.clamp(0.0, 1.0) * total;
    for (index, weight) in weights.iter().enumerate().filter(|(_, w)| **w > 0.0) {
        if point < *weight {
            return Some(index);
        }
        point -= weight;
    }
    weights.iter().rposition(|w| *w > 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slow_start(aggression: f64) -> SlowStart {
        SlowStart { window: Duration::from_secs(100), aggression, min_weight_percent: 10.0 }
    }

    #[test]
    fn the_weight_grows_over_the_window_from_the_minimum() {
        let linear = slow_start(1.0);
        assert_eq!(factor(&linear, Duration::ZERO), 0.1, "the minimum share at first");
        assert!((factor(&linear, Duration::from_secs(50)) - 0.5).abs() < 1e-9);
        assert_eq!(factor(&linear, Duration::from_secs(100)), 1.0, "full weight after the window");
        let eager = slow_start(2.0);
        assert!((factor(&eager, Duration::from_secs(25)) - 0.5).abs() < 1e-9, "faster at first");
    }

    #[test]
    fn weighted_picks_follow_the_weights() {
        let weights = [1.0, 0.0, 3.0];
        let picks: Vec<usize> = (0..1000).map(|i| weighted(&weights, f64::from(i) / 1000.0).unwrap()).collect();
        assert_eq!(picks.iter().filter(|p| **p == 0).count(), 250);
        assert_eq!(picks.iter().filter(|p| **p == 2).count(), 750);
        assert_eq!(weighted(&[0.0, 0.0], 0.5), None);
        assert_eq!(weighted(&[2.0], 1.0), Some(0), "the top of the range");
    }
}
