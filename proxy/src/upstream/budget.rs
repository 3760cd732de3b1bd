//! A cluster's retry budget, Envoy's `retry_budget` (which Istio's DestinationRule `trafficPolicy.retryBudget`
//! maps to): retries in flight may be at most `percent` of the requests in flight, and at least
//! `min_concurrency`. When a backend fails outright, retries then add a fifth to its load instead of multiplying it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Envoy's defaults for a retry budget.
pub const DEFAULT_PERCENT: f64 = 20.0;
pub const DEFAULT_MIN_CONCURRENCY: usize = 3;

#[derive(Debug)]
pub struct RetryBudget {
    percent: f64,
    min_concurrency: usize,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    active: AtomicUsize,
    retries: AtomicUsize,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self::new(DEFAULT_PERCENT, DEFAULT_MIN_CONCURRENCY)
    }
}

/// Counts one request (first attempt or retry) as active while it lives.
#[derive(Debug)]
pub struct Active(Arc<Counts>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts one retry against the budget while it lives.
#[derive(Debug)]
pub struct RetryPermit(Arc<Counts>);

impl Drop for RetryPermit {
    fn drop(&mut self) {
        self.0.retries.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RetryBudget {
    pub fn new(percent: f64, min_concurrency: usize) -> Self {
        Self { percent, min_concurrency, counts: Arc::default() }
    }

    pub fn request_started(&self) -> Active {
        self.counts.active.fetch_add(1, Ordering::Relaxed);
        Active(self.counts.clone())
    }

    /// The retries that may be in flight now.
    pub fn allowed(&self) -> usize {
        let active = self.counts.active.load(Ordering::Relaxed) as f64;
        ((active * self.percent / 100.0) as usize).max(self.min_concurrency)
    }

    /// A permit for one more retry, or `None` when the budget is spent.
    pub fn try_retry(&self) -> Option<RetryPermit> {
        let allowed = self.allowed();
        self.counts
            .retries
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < allowed).then_some(n + 1))
            .ok()
            .map(|_| RetryPermit(self.counts.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_a_share_of_active_requests_with_a_floor() {
        let budget = RetryBudget::default();
        let permits: Vec<_> = (0..3).map_while(|_| budget.try_retry()).collect();
        assert_eq!(permits.len(), 3, "the minimum concurrency with nothing active");
        assert!(budget.try_retry().is_none());
        let active: Vec<_> = (0..50).map(|_| budget.request_started()).collect();
        assert_eq!(budget.allowed(), 10, "20% of 50");
        let more: Vec<_> = (0..20).map_while(|_| budget.try_retry()).collect();
        assert_eq!(permits.len() + more.len(), 10);
        drop(more);
        drop(active);
        assert_eq!(budget.allowed(), 3);
        assert!(budget.try_retry().is_none(), "the first three are still out");
        drop(permits);
        assert!(budget.try_retry().is_some());
    }
}
