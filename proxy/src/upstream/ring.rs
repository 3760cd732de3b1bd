//! Consistent hashing over a ring (Envoy's ring hash, Istio's `consistentHash`): each endpoint owns many points on
//! a ring of 64-bit hashes; a request's key goes to the owner of the first point at or after its hash. When an
//! endpoint comes or goes, only the keys of its own arcs move (about 1/N of them). Pure.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;

/// The most points a ring holds (4 MiB of points).
const MAX_RING_SIZE: u64 = 256 * 1024;

#[derive(Debug, Default)]
pub struct Ring {
    /// Sorted by hash; the second value indexes `endpoints`.
    points: Vec<(u64, u32)>,
    endpoints: Vec<SocketAddr>,
}

/// The hash of a key; the same in every proxy built from the same source.
pub fn hash_of(key: &[u8]) -> u64 {
    // `DefaultHasher::new()` uses fixed keys: stable within a build, which is all a ring needs.
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

impl Ring {
    /// `minimum_size` points per endpoint (so at least that many in all), fewer only when the ring would pass
    /// [`MAX_RING_SIZE`]. Unlike Envoy, which shares the minimum among the endpoints, each endpoint's points do not
    /// depend on how many others there are: an endpoint that comes or goes moves only the keys of its own points.
    pub fn new(endpoints: &[SocketAddr], minimum_size: u64) -> Self {
        if endpoints.is_empty() {
            return Self::default();
        }
        let n = endpoints.len() as u64;
        let per_endpoint = minimum_size.min(MAX_RING_SIZE / n).max(1);
        let mut points: Vec<(u64, u32)> = endpoints
            .iter()
            .enumerate()
            .flat_map(|(index, address)| {
                (0..per_endpoint).map(move |i| (hash_of(format!("{address}_{i}").as_bytes()), index as u32))
            })
            .collect();
        points.sort_unstable();
        Self { points, endpoints: endpoints.to_vec() }
    }

    /// The endpoint owning `key`: the first point at or after it (around the ring) whose endpoint is `usable`.
    pub fn lookup(&self, key: u64, usable: impl Fn(&SocketAddr) -> bool) -> Option<SocketAddr> {
        let start = self.points.partition_point(|(hash, _)| *hash < key);
        let len = self.points.len();
        (0..len)
            .filter_map(|i| self.endpoints.get(self.points[(start + i) % len].1 as usize).copied())
            .find(|address| usable(address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(n: u16) -> Vec<SocketAddr> {
        (1..=n).map(|port| SocketAddr::from(([10, 0, 0, 1], port))).collect()
    }

    fn owners(ring: &Ring, keys: u32) -> Vec<SocketAddr> {
        (0..keys).map(|k| ring.lookup(hash_of(format!("user-{k}").as_bytes()), |_| true).unwrap()).collect()
    }

    #[test]
    fn keys_spread_and_an_added_endpoint_moves_about_its_share() {
        let before = owners(&Ring::new(&endpoints(4), 1024), 10_000);
        for endpoint in endpoints(4) {
            let share = before.iter().filter(|o| **o == endpoint).count();
            assert!((1_500..3_500).contains(&share), "{endpoint} owns {share} of 10000 keys");
        }
        let after = owners(&Ring::new(&endpoints(5), 1024), 10_000);
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        // About a fifth of the keys move, all to the new endpoint.
        assert!((1_500..2_500).contains(&moved), "{moved} of 10000 keys moved");
        assert!(before.iter().zip(&after).all(|(a, b)| a == b || b.port() == 5), "keys only move to the new one");
    }

    #[test]
    fn an_unusable_owner_passes_its_keys_on() {
        let ring = Ring::new(&endpoints(3), 64);
        let key = hash_of(b"sticky");
        let owner = ring.lookup(key, |_| true).unwrap();
        let next = ring.lookup(key, |a| *a != owner).unwrap();
        assert_ne!(owner, next);
        assert_eq!(ring.lookup(key, |_| true), Some(owner), "the same key, the same endpoint");
        assert_eq!(Ring::default().lookup(key, |_| true), None);
    }
}
