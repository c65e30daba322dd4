//! Integration tests: one binary (one link, one database start), one module
//! per capability. Every test runs against a real Cassandra or ScyllaDB; see
//! database.rs for how one is found or started.

mod admin;
mod auth;
mod bad_input;
mod batch;
mod concurrency;
mod cql_auth;
mod credentials;
mod expiry;
mod faults;
mod keys;
mod lifecycle;
mod migrate;
mod operations;
mod proxy;
mod read_first;
mod sequences;
mod tls;
mod wait;
mod wire_faults;
