//! The proxy's xDS client: pure state machines, incremental ([`delta`], the default) and state of the world
//! ([`state`], for control planes without delta), driven by a reconnecting gRPC stream ([`client`]).

pub mod client;
pub mod delta;
pub mod dial;
pub mod resource;
pub mod state;
#[cfg(test)]
pub(crate) mod testing;
