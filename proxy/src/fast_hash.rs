//! Hash maps for what is looked up on every request (clusters by name, virtual hosts by domain, metric series).
//!
//! std's default SipHash costs more than the rest of such a lookup; foldhash (hashbrown's default hasher) is
//! several times cheaper and still seeded at random per map (its authors call it minimally DoS-resistant): a
//! client chooses some keys looked up (a `Host`), not the keys the maps hold (the config's names, the series
//! of the proxy's own metrics).

/// A `HashMap` with foldhash.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
