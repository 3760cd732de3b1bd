//! A cluster's endpoints and how one is chosen for a request: power of two choices over a load measure (peak-EWMA
//! latency x in-flight requests, in-flight requests alone, or nothing for a uniform pick), or round robin. A pick
//! can be told which endpoints to avoid (those a retry already tried), as Envoy's `previous_hosts` predicate.
//!
//! Written here rather than taken from tower's `p2c::Balance`: that balancer picks behind a worker task and cannot
//! leave endpoints out of one pick, which retries need (and outlier ejection and consistent hashing will).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::time::Instant;
use weft_xds::lb::LbAlgorithm;

use super::endpoint::Endpoint;
use super::hashing::{HashTable, Hashing};
use super::warmup;
use crate::config::cluster::SlowStart;

/// Latency assumed for an endpoint that has not answered yet.
const DEFAULT_RTT: Duration = Duration::from_millis(30);
/// How quickly old latency observations fade.
const EWMA_DECAY: Duration = Duration::from_secs(10);

/// One endpoint and what the balancer knows of it.
pub struct Member {
    pub endpoint: Endpoint,
    /// Its priority level and locality (group of the assignment); they change with EDS while the member (its
    /// pool, its estimate) stays.
    priority: AtomicU32,
    locality: AtomicU32,
    in_flight: AtomicUsize,
    rtt: Mutex<Ewma>,
    /// When the balancer took the endpoint in, for slow start.
    joined: Instant,
}

/// Peak-sensitive moving average of response latency (Finagle's and tower's peak EWMA): a slower observation is
/// taken at once, faster ones pull the estimate down gradually, and the estimate fades while nothing is observed.
struct Ewma {
    estimate_ns: f64,
    at: Instant,
}

impl Ewma {
    fn decayed(&mut self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_nanos() as f64;
        self.estimate_ns *= (-elapsed / EWMA_DECAY.as_nanos() as f64).exp();
        self.at = now;
        self.estimate_ns
    }

    fn observe(&mut self, rtt: Duration, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_nanos() as f64;
        let rtt = rtt.as_nanos() as f64;
        if rtt > self.estimate_ns {
            self.estimate_ns = rtt;
        } else {
            let keep = (-elapsed / EWMA_DECAY.as_nanos() as f64).exp();
            self.estimate_ns = self.estimate_ns * keep + rtt * (1.0 - keep);
        }
        self.at = now;
    }
}

impl Member {
    pub fn new(endpoint: Endpoint) -> Self {
        let rtt = Ewma { estimate_ns: DEFAULT_RTT.as_nanos() as f64, at: Instant::now() };
        Self {
            endpoint,
            priority: AtomicU32::new(0),
            locality: AtomicU32::new(0),
            in_flight: AtomicUsize::new(0),
            rtt: Mutex::new(rtt),
            joined: Instant::now(),
        }
    }

    pub fn priority(&self) -> u32 {
        self.priority.load(Ordering::Relaxed)
    }

    pub fn locality(&self) -> u32 {
        self.locality.load(Ordering::Relaxed)
    }

    pub fn place(&self, priority: u32, locality: u32) {
        self.priority.store(priority, Ordering::Relaxed);
        self.locality.store(locality, Ordering::Relaxed);
    }

    fn is_within(&self, within: Within) -> bool {
        match within {
            Within::Level(level) => self.priority() == level,
            Within::Locality(locality) => self.locality() == locality,
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.endpoint.address()
    }

    fn load(&self, algorithm: LbAlgorithm) -> f64 {
        let pending = self.in_flight.load(Ordering::Relaxed) as f64;
        match algorithm {
            LbAlgorithm::PeakEwma => {
                let rtt = self.rtt.lock().map(|mut e| e.decayed(Instant::now())).unwrap_or(0.0);
                rtt * (pending + 1.0)
            }
            LbAlgorithm::LeastRequest => pending,
            LbAlgorithm::Random | LbAlgorithm::RoundRobin | LbAlgorithm::RingHash | LbAlgorithm::Maglev => 0.0,
        }
    }
}

/// A request in flight to a member: counted until [`InFlight::finish`] or drop.
pub struct InFlight {
    member: Arc<Member>,
    started: Instant,
}

impl InFlight {
    pub(super) fn start(member: Arc<Member>) -> Self {
        member.in_flight.fetch_add(1, Ordering::Relaxed);
        Self { member, started: Instant::now() }
    }

    /// The response head arrived: its latency feeds the estimate.
    pub fn finish(self) {
        if let Ok(mut rtt) = self.member.rtt.lock() {
            rtt.observe(self.started.elapsed(), Instant::now());
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.member.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The endpoints of a cluster, replaced whole on each change (reads vastly outnumber changes).
#[derive(Default)]
pub struct Members {
    /// Sorted by address.
    list: RwLock<Arc<Vec<Arc<Member>>>>,
    /// For consistent hashing; empty otherwise.
    table: RwLock<Arc<HashTable>>,
    turn: AtomicUsize,
}

impl Members {
    pub fn snapshot(&self) -> Arc<Vec<Arc<Member>>> {
        self.list.read().map(|l| l.clone()).unwrap_or_default()
    }

    /// The member at `address` (the list is sorted by address).
    pub fn at(&self, address: SocketAddr) -> Option<Arc<Member>> {
        let members = self.snapshot();
        members.binary_search_by_key(&address, |m| m.address()).ok().map(|at| members[at].clone())
    }

    /// Takes `members` (sorted by address), with a table over them when hashing.
    pub fn replace(&self, members: Vec<Arc<Member>>, hashing: Option<Hashing>) {
        if let (Some(hashing), Ok(mut table)) = (hashing, self.table.write()) {
            let addresses: Vec<SocketAddr> = members.iter().map(|m| m.address()).collect();
            *table = Arc::new(HashTable::build(hashing, &addresses));
        }
        if let Ok(mut list) = self.list.write() {
            *list = Arc::new(members);
        }
    }

    /// Chooses an endpoint by `algorithm`, not one of `avoid` unless nothing else is left; `roll` is random. With
    /// consistent hashing and a `key`, the table decides; without a key, the pick is random.
    pub fn pick(&self, algorithm: LbAlgorithm, pick: Pick<'_>) -> Option<(Arc<Member>, InFlight)> {
        let Pick { avoid, roll, key, warmup, within } = pick;
        let all = self.snapshot();
        let narrowed: Vec<Arc<Member>>;
        let list = match within {
            // Consistent hashing keeps its table over every level: a key's endpoint must not move with health.
            Some(within) if !(algorithm.is_consistent_hash() && key.is_some()) => {
                narrowed = all.iter().filter(|m| m.is_within(within)).cloned().collect();
                if narrowed.is_empty() { &all } else { &narrowed }
            }
            _ => &all,
        };
        if let (true, Some(key)) = (algorithm.is_consistent_hash(), key) {
            let table = self.table.read().map(|t| t.clone()).unwrap_or_default();
            let address = table.lookup(key, |a| !avoid.contains(a)).or_else(|| table.lookup(key, |_| true));
            if let Some(member) = address.and_then(|a| list.binary_search_by_key(&a, |m| m.address()).ok()) {
                let chosen = &list[member];
                return Some((chosen.clone(), InFlight::start(chosen.clone())));
            }
        }
        // Only a retry avoids endpoints: a first attempt picks from the list as it is, without a copy.
        let not_avoided: Vec<Arc<Member>>;
        let open: &[Arc<Member>] = if avoid.is_empty() {
            list
        } else {
            not_avoided = list.iter().filter(|m| !avoid.contains(&m.address())).cloned().collect();
            if not_avoided.is_empty() { list } else { &not_avoided }
        };
        let warming = warmup.filter(|w| open.len() > 1 && open.iter().any(|m| m.joined.elapsed() < w.window));
        let chosen = match (open.len(), algorithm) {
            (0, _) => return None,
            (1, _) => &open[0],
            (_, algorithm) if let Some(slow_start) = warming => warming_pick(open, algorithm, &slow_start, roll),
            (n, LbAlgorithm::RoundRobin) => &open[self.turn.fetch_add(1, Ordering::Relaxed) % n],
            (n, _) => {
                let (first, second) = two_of(n, roll);
                let (a, b) = (&open[first], &open[second]);
                if b.load(algorithm) < a.load(algorithm) { b } else { a }
            }
        };
        Some((chosen.clone(), InFlight::start(chosen.clone())))
    }
}

/// What one pick is told: endpoints to avoid, a random roll, and the request's hash key (consistent hashing).
#[derive(Debug, Clone, Copy)]
pub struct Pick<'a> {
    pub avoid: &'a [SocketAddr],
    pub roll: u64,
    pub key: Option<u64>,
    /// The cluster's slow start, if it has one.
    pub warmup: Option<SlowStart>,
    /// The endpoints to pick among (see [`super::priority`]); `None`: all of them.
    pub within: Option<Within>,
}

/// A part of a cluster's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Within {
    /// A priority level.
    Level(u32),
    /// A locality (its group's position in the assignment).
    Locality(u32),
}

/// While an endpoint warms up, picks weigh each endpoint by its slow-start factor: round robin and random become
/// a weighted random pick, the two-choice balancers choose one of their two with odds `factor / (load + 1)`.
fn warming_pick<'m>(
    open: &'m [Arc<Member>],
    algorithm: LbAlgorithm,
    slow_start: &SlowStart,
    roll: u64,
) -> &'m Arc<Member> {
    let now = Instant::now();
    let factor = |m: &Member| warmup::factor(slow_start, now.saturating_duration_since(m.joined));
    // A second uniform number from the roll's other bits.
    let uniform = (roll.rotate_left(32) >> 11) as f64 / (1u64 << 53) as f64;
    match algorithm {
        LbAlgorithm::RoundRobin | LbAlgorithm::Random => {
            let weights: Vec<f64> = open.iter().map(|m| factor(m)).collect();
            &open[warmup::weighted(&weights, uniform).unwrap_or(0)]
        }
        _ => {
            let (first, second) = two_of(open.len(), roll);
            let (a, b) = (&open[first], &open[second]);
            let odds = |m: &Member| factor(m) / (m.load(algorithm) + 1.0);
            if warmup::weighted(&[odds(a), odds(b)], uniform) == Some(1) { b } else { a }
        }
    }
}

/// Two distinct indices below `n` (at least 2) from one random roll.
fn two_of(n: usize, roll: u64) -> (usize, usize) {
    let first = (roll % n as u64) as usize;
    let mut second = ((roll / n as u64) % (n as u64 - 1)) as usize;
    if second >= first {
        second += 1;
    }
    (first, second)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(ports: &[u16]) -> Members {
        let members = Members::default();
        members.replace(ports.iter().map(|p| member(*p)).collect(), None);
        members
    }

    fn member(port: u16) -> Arc<Member> {
        Arc::new(Member::new(Endpoint::new(
            ([127, 0, 0, 1], port).into(),
            Duration::from_secs(1),
            Default::default(),
            None,
        )))
    }

    /// The share of 10 000 picks that go to port 2.
    fn share_of_new(m: &Members, algorithm: LbAlgorithm, warmup: SlowStart) -> f64 {
        let picks = (0..10_000u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).filter(|roll| {
            let pick = Pick { avoid: &[], roll: *roll, key: None, warmup: Some(warmup), within: None };
            m.pick(algorithm, pick).is_some_and(|(chosen, _)| chosen.address().port() == 2)
        });
        picks.count() as f64 / 10_000.0
    }

    #[tokio::test(start_paused = true)]
    async fn a_warming_endpoint_gets_a_growing_share() {
        let old = member(1);
        tokio::time::advance(Duration::from_secs(1000)).await;
        let m = Members::default();
        m.replace(vec![old, member(2)], None);
        let warmup = SlowStart { window: Duration::from_secs(100), aggression: 1.0, min_weight_percent: 10.0 };
        for algorithm in [LbAlgorithm::RoundRobin, LbAlgorithm::LeastRequest] {
            // 0.1 / (1 + 0.1) at first.
            let share = share_of_new(&m, algorithm, warmup);
            assert!((0.07..0.11).contains(&share), "{algorithm:?}: {share}");
        }
        tokio::time::advance(Duration::from_secs(50)).await;
        let share = share_of_new(&m, LbAlgorithm::RoundRobin, warmup);
        assert!((0.30..0.37).contains(&share), "half its weight: a third of the picks, not {share}");
        tokio::time::advance(Duration::from_secs(50)).await;
        let share = share_of_new(&m, LbAlgorithm::RoundRobin, warmup);
        assert!((0.45..0.55).contains(&share), "warm: an even share, not {share}");
    }

    #[test]
    fn two_choices_are_distinct_and_cover_every_pair() {
        let mut seen = std::collections::BTreeSet::new();
        for roll in 0..1000 {
            let (a, b) = two_of(4, roll);
            assert!(a != b && a < 4 && b < 4);
            seen.insert((a, b));
        }
        assert_eq!(seen.len(), 12, "every ordered pair of 4");
    }

    #[tokio::test]
    async fn a_pick_avoids_what_it_is_told_to_while_anything_else_is_left() {
        let m = members(&[1, 2, 3]);
        let avoid: Vec<SocketAddr> = vec![([127, 0, 0, 1], 1).into(), ([127, 0, 0, 1], 2).into()];
        for algorithm in [LbAlgorithm::PeakEwma, LbAlgorithm::RoundRobin, LbAlgorithm::Random] {
            for roll in 0..50 {
                let (member, _) =
                    m.pick(algorithm, Pick { avoid: &avoid, roll, key: None, warmup: None, within: None }).unwrap();
                assert_eq!(member.address().port(), 3, "{algorithm:?}");
            }
        }
        let all: Vec<SocketAddr> = (1..=3).map(|p| SocketAddr::from(([127, 0, 0, 1], p))).collect();
        assert!(
            m.pick(LbAlgorithm::PeakEwma, Pick { avoid: &all, roll: 7, key: None, warmup: None, within: None })
                .is_some(),
            "all tried: one of them again"
        );
        assert!(
            members(&[])
                .pick(LbAlgorithm::PeakEwma, Pick { avoid: &[], roll: 1, key: None, warmup: None, within: None })
                .is_none()
        );
    }

    #[tokio::test]
    async fn least_request_prefers_the_idle_endpoint_and_in_flight_counts_drop() {
        let m = members(&[1, 2]);
        let (busy, held) = m
            .pick(LbAlgorithm::LeastRequest, Pick { avoid: &[], roll: 0, key: None, warmup: None, within: None })
            .unwrap();
        for roll in 0..20 {
            let (next, _) = m
                .pick(LbAlgorithm::LeastRequest, Pick { avoid: &[], roll, key: None, warmup: None, within: None })
                .unwrap();
            assert_ne!(next.address(), busy.address(), "the other one is idle");
        }
        drop(held);
        assert_eq!(busy.in_flight.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn peak_ewma_takes_slow_answers_at_once_and_forgets_them_slowly() {
        let mut e = Ewma { estimate_ns: 1e6, at: Instant::now() };
        e.observe(Duration::from_millis(100), Instant::now());
        assert_eq!(e.estimate_ns, 1e8, "a peak is taken as is");
        tokio::time::advance(EWMA_DECAY).await;
        let faded = e.decayed(Instant::now());
        assert!((faded - 1e8 / std::f64::consts::E).abs() < 1e3, "{faded}");
    }
}
