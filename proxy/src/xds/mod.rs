//! The proxy's xDS client: a pure state machine ([`state`]) driven by a reconnecting gRPC stream ([`client`]).

pub mod client;
pub mod state;
