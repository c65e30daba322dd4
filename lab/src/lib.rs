//! dedupd's lab: the tools that measure and attack the service, kept out of
//! the service's own package so that none of them (nor their dependencies:
//! a CQL fault proxy, an HTTP load generator, histograms) ships in the
//! production binary.
//!
//! - `bench`: what the guarantee costs, scenario against scenario;
//! - `bench::soak`: steady load, then overload;
//! - `check`: the guarantee under faults, with two real `dedupd serve`
//!   processes and a history checker;
//! - `target`: the flags that aim all three (cluster, keyspace, binary);
//! - `keyspace`: the guard that keeps all three off keyspaces they did not
//!   create;
//! - what they share: `dedupd_process` (the dedupd binary they run, and a
//!   `dedupd serve` process), `cql` (a session that waits for the
//!   database, a text value read from it), `metrics_text` (how they read its metrics), `process` (CPU and memory
//!   from /proc, pinning with taskset), `local_cluster` (the local-cluster
//!   script), `rng`.
//!
//! They speak to dedupd through its Rust client (`dedupd-client`), as a
//! service would.
//!
//! They take their contact points from `--cql-nodes` or
//! `DEDUPD_LAB_CQL_NODES`, never the service's `DEDUPD_CQL_NODES`: a shell
//! configured for a production cluster does not aim a load generator at it.

pub mod bench;
pub mod check;
pub mod cql;
pub mod dedupd_process;
pub mod keyspace;
pub mod local_cluster;
pub mod metrics_text;
pub mod process;
pub mod rng;
pub mod scale;
pub mod target;
