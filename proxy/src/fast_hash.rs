//! Hash maps for what is looked up on every request (clusters by name, virtual hosts by domain, metric series).
//!
//! std's default SipHash costs more than the rest of such a lookup; foldhash (hashbrown's default hasher) is
//! several times cheaper and still seeded per map, so keys a client chooses (a `Host`) cannot be aimed at one
//! bucket from outside.

/// A `HashMap` with foldhash.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
