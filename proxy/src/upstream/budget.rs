//! A cluster's retry limit. With a retry budget (Envoy's `retry_budget`, which Istio's DestinationRule
//! `trafficPolicy.retryBudget` maps to, and which Weft's operator writes by default), retries in flight may be at
//! most `percent` of the requests in flight, and at least `min_concurrency`: when a backend fails outright,
//! retries add a fifth to its load instead of multiplying it. Without one, at most `max_retries` retries may be
//! in flight (Envoy's `max_retries` circuit breaker).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use crate::config::cluster::{BudgetConfig, ENVOY_DEFAULT_MAX_RETRIES};

#[derive(Debug)]
pub struct RetryBudget {
    rule: RwLock<Rule>,
    counts: Arc<Counts>,
}

#[derive(Debug, Clone, Copy)]
enum Rule {
    Budget(BudgetConfig),
    AtMost(u32),
}

#[derive(Debug, Default)]
struct Counts {
    active: AtomicUsize,
    retries: AtomicUsize,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self { rule: RwLock::new(Rule::AtMost(ENVOY_DEFAULT_MAX_RETRIES)), counts: Arc::default() }
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

/// Counts one retry against the limit while it lives.
#[derive(Debug)]
pub struct RetryPermit(Arc<Counts>);

impl Drop for RetryPermit {
    fn drop(&mut self) {
        self.0.retries.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RetryBudget {
    /// The budget when there is one, else the `max_retries` limit.
    pub fn configure(&self, budget: Option<BudgetConfig>, max_retries: u32) {
        if let Ok(mut rule) = self.rule.write() {
            *rule = budget.map_or(Rule::AtMost(max_retries), Rule::Budget);
        }
    }

    pub fn request_started(&self) -> Active {
        self.counts.active.fetch_add(1, Ordering::Relaxed);
        Active(self.counts.clone())
    }

    /// Requests in flight to the cluster now.
    pub fn active(&self) -> usize {
        self.counts.active.load(Ordering::Relaxed)
    }

    /// The retries that may be in flight now.
    pub fn allowed(&self) -> usize {
        let rule = self.rule.read().map_or(Rule::AtMost(ENVOY_DEFAULT_MAX_RETRIES), |r| *r);
        match rule {
            Rule::Budget(b) => ((self.active() as f64 * b.percent / 100.0) as usize).max(b.min_concurrency as usize),
            Rule::AtMost(n) => n as usize,
        }
    }

    /// A permit for one more retry, or `None` when the limit is reached.
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
        budget.configure(Some(BudgetConfig { percent: 20.0, min_concurrency: 3 }), 0);
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

    #[test]
    fn without_a_budget_max_retries_bounds_them() {
        let budget = RetryBudget::default();
        assert_eq!(budget.allowed(), 3, "Envoy's default max_retries");
        budget.configure(None, 1);
        let first = budget.try_retry();
        assert!(first.is_some() && budget.try_retry().is_none());
    }
}
