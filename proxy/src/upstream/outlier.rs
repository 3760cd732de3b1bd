//! Outlier detection (Istio's `outlierDetection`, Envoy's consecutive-error ejection) as a pure state machine:
//! outcomes of requests to endpoints in, ejections out. An endpoint with too many server errors (or failures to
//! connect) in a row is ejected from balancing for the base ejection time times the number of its ejections (at
//! most the maximum ejection time), then comes back on its own; the multiplier shrinks again for each interval
//! the endpoint stays in. At most `max_ejection_percent` of the endpoints are out at once (at least one may be).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::cluster::OutlierPolicy;

/// How one request to an endpoint ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An answer that is not a server error.
    Success,
    /// A 5xx answer from the endpoint.
    ServerError(u16),
    /// No answer: the connection failed or was reset (Envoy's "local origin" errors).
    LocalOriginFailure,
}

#[derive(Debug, Clone, Default)]
struct Host {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    consecutive_local: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
    multiplier_checked: Option<Instant>,
}

#[derive(Debug)]
pub struct Outliers {
    policy: OutlierPolicy,
    hosts: HashMap<SocketAddr, Host>,
}

impl Outliers {
    pub fn new(policy: OutlierPolicy) -> Self {
        Self { policy, hosts: HashMap::new() }
    }

    /// Takes a new policy, keeping what is known of the endpoints.
    pub fn set_policy(&mut self, policy: OutlierPolicy) {
        self.policy = policy;
    }

    /// Forgets endpoints that are gone.
    pub fn retain(&mut self, present: impl Fn(&SocketAddr) -> bool) {
        self.hosts.retain(|address, _| present(address));
    }

    /// Whether `host` is ejected at `now`.
    #[cfg(test)]
    pub fn is_ejected(&self, host: SocketAddr, now: Instant) -> bool {
        self.hosts.get(&host).and_then(|h| h.ejected_until).is_some_and(|until| until > now)
    }

    fn ejected_count(&self, now: Instant) -> usize {
        self.hosts.values().filter(|h| h.ejected_until.is_some_and(|until| until > now)).count()
    }

    /// Records an outcome for `host`, one of `total` endpoints; returns when its ejection ends if this outcome
    /// ejected it.
    pub fn record(&mut self, host: SocketAddr, outcome: Outcome, total: usize, now: Instant) -> Option<Instant> {
        let policy = self.policy;
        let state = self.hosts.entry(host).or_default();
        if state.ejected_until.is_some_and(|until| until > now) {
            return None;
        }
        shrink_multiplier(state, policy.interval, now);
        if !count(state, &policy, outcome) {
            return None;
        }
        let ejected = self.ejected_count(now);
        let allowed = (total * policy.max_ejection_percent as usize / 100).max(1);
        let state = self.hosts.entry(host).or_default();
        // Counted again from zero whether or not the ejection happens, as Envoy does.
        (state.consecutive_5xx, state.consecutive_gateway, state.consecutive_local) = (0, 0, 0);
        if ejected >= allowed {
            return None;
        }
        state.ejections += 1;
        let length = (policy.base_ejection_time * state.ejections).min(policy.max_ejection_time);
        let until = now + length;
        state.ejected_until = Some(until);
        state.multiplier_checked = Some(until);
        Some(until)
    }
}

/// Updates the counters; whether one reached its threshold.
fn count(state: &mut Host, policy: &OutlierPolicy, outcome: Outcome) -> bool {
    let (server_error, gateway_error, local) = match outcome {
        Outcome::Success => (false, false, false),
        Outcome::ServerError(status) => (true, (502..=504).contains(&status), false),
        // Not split: a failure to connect counts as the 503 Envoy would answer.
        Outcome::LocalOriginFailure if !policy.split_local_origin => (true, true, false),
        Outcome::LocalOriginFailure => (false, false, true),
    };
    let step = |counter: &mut u32, hit: bool| *counter = if hit { *counter + 1 } else { 0 };
    if !matches!(outcome, Outcome::LocalOriginFailure) || !policy.split_local_origin {
        step(&mut state.consecutive_5xx, server_error);
        step(&mut state.consecutive_gateway, gateway_error);
    }
    // Any answer means the connection worked: a local-origin streak ends.
    step(&mut state.consecutive_local, local);
    let reached = |counter: u32, threshold: Option<u32>| threshold.is_some_and(|t| counter >= t);
    reached(state.consecutive_5xx, policy.consecutive_5xx)
        || reached(state.consecutive_gateway, policy.consecutive_gateway)
        || reached(state.consecutive_local, policy.consecutive_local_origin)
}

/// Each whole interval an endpoint stays in takes one off its ejection multiplier (Envoy's sweep).
fn shrink_multiplier(state: &mut Host, interval: Duration, now: Instant) {
    let Some(since) = state.multiplier_checked else {
        state.multiplier_checked = Some(now);
        return;
    };
    if interval.is_zero() || now <= since {
        return;
    }
    let intervals = (now - since).as_nanos() / interval.as_nanos();
    if intervals > 0 {
        state.ejections = state.ejections.saturating_sub(u32::try_from(intervals).unwrap_or(u32::MAX));
        state.multiplier_checked = Some(since + interval * u32::try_from(intervals).unwrap_or(u32::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> OutlierPolicy {
        OutlierPolicy {
            consecutive_5xx: Some(3),
            consecutive_gateway: None,
            consecutive_local_origin: None,
            split_local_origin: false,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 50,
        }
    }

    fn host(n: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], n))
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_errors_eject_for_a_growing_time_then_the_endpoint_comes_back() {
        let mut o = Outliers::new(policy());
        let now = Instant::now();
        assert_eq!(o.record(host(1), Outcome::ServerError(500), 4, now), None);
        assert_eq!(o.record(host(1), Outcome::Success, 4, now), None, "a success resets the count");
        for _ in 0..2 {
            assert_eq!(o.record(host(1), Outcome::ServerError(503), 4, now), None);
        }
        assert_eq!(o.record(host(1), Outcome::LocalOriginFailure, 4, now), Some(now + Duration::from_secs(30)));
        assert!(o.is_ejected(host(1), now + Duration::from_secs(29)));
        assert!(!o.is_ejected(host(1), now + Duration::from_secs(30)), "back after the base ejection time");
        let later = now + Duration::from_secs(31);
        for _ in 0..2 {
            o.record(host(1), Outcome::ServerError(500), 4, later);
        }
        let until = o.record(host(1), Outcome::ServerError(500), 4, later);
        assert_eq!(until, Some(later + Duration::from_secs(60)), "the second ejection lasts twice as long");
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_than_the_allowed_share_is_ejected_and_the_multiplier_shrinks() {
        let mut o = Outliers::new(policy());
        let now = Instant::now();
        let eject = |o: &mut Outliers, h: u16, at: Instant| {
            (0..3).filter_map(|_| o.record(host(h), Outcome::ServerError(502), 4, at)).next()
        };
        assert!(eject(&mut o, 1, now).is_some());
        assert!(eject(&mut o, 2, now).is_some(), "50% of 4: two may be out");
        assert!(eject(&mut o, 3, now).is_none(), "not a third");
        // Host 1 back at 30 s, then healthy for three intervals: its multiplier is back to zero.
        let later = now + Duration::from_secs(30 + 35);
        o.record(host(1), Outcome::Success, 4, later);
        assert_eq!(eject(&mut o, 1, later), Some(later + Duration::from_secs(30)));
    }

    #[test]
    fn split_local_origin_failures_count_apart() {
        let policy = OutlierPolicy { split_local_origin: true, consecutive_local_origin: Some(2), ..policy() };
        let mut o = Outliers::new(policy);
        let now = Instant::now();
        assert_eq!(o.record(host(1), Outcome::ServerError(500), 2, now), None);
        assert_eq!(o.record(host(1), Outcome::LocalOriginFailure, 2, now), None, "not counted as a 5xx");
        assert_eq!(o.record(host(1), Outcome::ServerError(500), 2, now), None, "an answer ends the local streak");
        assert_eq!(o.record(host(1), Outcome::LocalOriginFailure, 2, now), None);
        assert!(o.record(host(1), Outcome::LocalOriginFailure, 2, now).is_some(), "two local failures in a row");
    }
}
