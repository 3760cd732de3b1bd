//! Which of a cluster's endpoints are ejected by outlier detection now, read on every pick, and fed by the
//! outcome of every request ([`super::outlier`] decides). Without a policy nothing is recorded and picks pay one
//! atomic load.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::time::Instant;

use super::outlier::{Outcome, Outliers};
use crate::config::cluster::OutlierPolicy;

#[derive(Debug, Default)]
pub struct Health {
    state: Mutex<State>,
    /// Ejections that may still be running; 0 lets a pick skip the lock.
    ejections: AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    outliers: Option<Outliers>,
    ejected: BTreeMap<SocketAddr, Instant>,
    /// Below this share of endpoints in (percent), ejections are ignored.
    panic_threshold: f64,
}

impl Health {
    pub fn configure(&self, policy: Option<OutlierPolicy>, panic_threshold: f64) {
        let Ok(mut state) = self.state.lock() else { return };
        state.panic_threshold = panic_threshold;
        match (policy, state.outliers.as_mut()) {
            (Some(policy), Some(outliers)) => outliers.set_policy(policy),
            (Some(policy), None) => state.outliers = Some(Outliers::new(policy)),
            (None, _) => {
                state.outliers = None;
                state.ejected.clear();
                self.ejections.store(0, Ordering::Relaxed);
            }
        }
    }

    pub fn is_watching(&self) -> bool {
        self.state.lock().is_ok_and(|s| s.outliers.is_some())
    }

    /// Records how a request to `endpoint` (one of `total`) ended.
    pub fn record(&self, endpoint: SocketAddr, outcome: Outcome, total: usize) {
        let Ok(mut state) = self.state.lock() else { return };
        let now = Instant::now();
        let Some(outliers) = state.outliers.as_mut() else { return };
        if let Some(until) = outliers.record(endpoint, outcome, total, now) {
            tracing::info!(%endpoint, ejected_for_ms = (until - now).as_millis() as u64, "outlier ejected");
            state.ejected.insert(endpoint, until);
            self.ejections.store(state.ejected.len(), Ordering::Relaxed);
        }
    }

    /// The endpoints to leave out of a pick among `total` now: those ejected, unless so many are out that the
    /// cluster is in panic (then none, as Envoy balances over all endpoints in panic mode).
    pub fn ejected(&self, total: usize) -> Vec<SocketAddr> {
        let ejected = self.ejected_now();
        if ejected.is_empty() {
            return ejected;
        }
        let inside = total.saturating_sub(ejected.len()) as f64;
        if total == 0 || inside * 100.0 / (total as f64) < self.panic_threshold() {
            return Vec::new();
        }
        ejected
    }

    /// The endpoints ejected now, panic or not (priority levels judge panic per level).
    pub fn ejected_now(&self) -> Vec<SocketAddr> {
        if self.ejections.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        let Ok(mut state) = self.state.lock() else { return Vec::new() };
        let now = Instant::now();
        state.ejected.retain(|_, until| *until > now);
        self.ejections.store(state.ejected.len(), Ordering::Relaxed);
        state.ejected.keys().copied().collect()
    }

    /// Below this share of healthy endpoints (percent), ejections are ignored.
    pub fn panic_threshold(&self) -> f64 {
        self.state.lock().map(|s| s.panic_threshold).unwrap_or_default()
    }

    /// Forgets endpoints that left the cluster.
    pub fn retain(&self, present: impl Fn(&SocketAddr) -> bool) {
        let Ok(mut state) = self.state.lock() else { return };
        state.ejected.retain(|address, _| present(address));
        if let Some(outliers) = state.outliers.as_mut() {
            outliers.retain(&present);
        }
        self.ejections.store(state.ejected.len(), Ordering::Relaxed);
    }
}
