//! The ADS server: per connected proxy, translate each new snapshot and push what changed.

pub mod resources;
pub mod server;
pub mod shared;
pub mod stream;

pub use server::AdsServer;
