//! dedupd: a claim ledger for services that consume at-least-once messages.
//!
//! Before acting on a message, a service claims the message's id; inside the
//! retention window exactly one claimant wins. Claims are lightweight
//! transactions on Cassandra or ScyllaDB.

pub mod claims;
pub mod config;
pub mod domain;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod proxy;
pub mod sequences;
pub mod startup;
pub mod store;
pub mod telemetry;
