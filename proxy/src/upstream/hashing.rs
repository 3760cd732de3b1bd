//! Consistent hashing's table: a ring ([`super::ring`]) or a Maglev table ([`super::maglev`]), built from the
//! cluster's endpoints and read by each pick with a key. Pure.

use std::net::SocketAddr;

use weft_xds::lb::LbAlgorithm;

use super::maglev::Maglev;
use super::ring::Ring;

/// Which table a cluster hashes over, and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hashing {
    /// At least this many points per endpoint.
    Ring(u64),
    /// This many slots (a prime).
    Maglev(u64),
}

impl Hashing {
    /// The hashing of `algorithm` with the cluster's table `size`; `None` for algorithms that do not hash.
    pub fn of(algorithm: LbAlgorithm, size: u64) -> Option<Self> {
        match algorithm {
            LbAlgorithm::RingHash => Some(Self::Ring(size)),
            LbAlgorithm::Maglev => Some(Self::Maglev(size)),
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
pub enum HashTable {
    #[default]
    Empty,
    Ring(Ring),
    Maglev(Maglev),
}

impl HashTable {
    pub fn build(hashing: Hashing, endpoints: &[SocketAddr]) -> Self {
        match hashing {
            Hashing::Ring(size) => Self::Ring(Ring::new(endpoints, size)),
            Hashing::Maglev(size) => Self::Maglev(Maglev::new(endpoints, size)),
        }
    }

    /// The endpoint owning `key`, passing over those not `usable`.
    pub fn lookup(&self, key: u64, usable: impl Fn(&SocketAddr) -> bool) -> Option<SocketAddr> {
        match self {
            Self::Empty => None,
            Self::Ring(ring) => ring.lookup(key, usable),
            Self::Maglev(table) => table.lookup(key, usable),
        }
    }
}
