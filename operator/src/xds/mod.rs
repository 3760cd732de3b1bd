//! The ADS server: per connected proxy, translate each new snapshot and push what changed.

pub mod delta;
mod grpc;
mod held;
mod node;
pub mod protocol;
pub mod resources;
pub mod server;
pub mod shared;
pub mod sotw;

pub use grpc::AdsService;
pub use server::AdsServer;
