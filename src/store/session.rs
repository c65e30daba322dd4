//! Building the driver session from configuration.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{NewSessionError, PrepareError};
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::statement::{Consistency, SerialConsistency};
use secrecy::{ExposeSecret, SecretString};

/// How to reach Cassandra and at which consistency to talk to it.
#[derive(Clone)]
pub struct CqlSettings {
    pub nodes: Vec<String>,
    pub local_dc: Option<String>,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub consistency: Consistency,
    pub serial_consistency: SerialConsistency,
    /// The driver's per-request timeout. It must sit above the server's
    /// write timeout plus its CAS contention timeout, or client-side
    /// timeouts (unknown outcomes all) will fire first.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// TLS to the nodes, when set.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Addresses the nodes announce (system.peers) mapped to the addresses
    /// dedupd must dial instead: nodes behind NAT or a port-forward, or a
    /// fault-injecting proxy. Empty: dial what the nodes announce.
    pub address_map: HashMap<SocketAddr, SocketAddr>,
}

impl std::fmt::Debug for CqlSettings {
    // Written by hand so that the password can never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CqlSettings")
            .field("nodes", &self.nodes)
            .field("local_dc", &self.local_dc)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("consistency", &self.consistency)
            .field("serial_consistency", &self.serial_consistency)
            .field("request_timeout", &self.request_timeout)
            .field("tls", &self.tls.as_ref().map(|_| "on"))
            .field("address_map", &self.address_map)
            .finish()
    }
}

impl CqlSettings {
    pub fn local(nodes: Vec<String>) -> Self {
        Self {
            nodes,
            local_dc: None,
            username: None,
            password: None,
            consistency: Consistency::LocalQuorum,
            serial_consistency: SerialConsistency::LocalSerial,
            request_timeout: Duration::from_secs(6),
            connect_timeout: Duration::from_secs(5),
            tls: None,
            address_map: HashMap::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "could not open a CQL session to {nodes:?}: {source}; check DEDUPD_CQL_NODES, that \
         Cassandra listens there (deploy/local/cassandra status), and the credentials"
    )]
    Session {
        nodes: Vec<String>,
        #[source]
        source: NewSessionError,
    },
    #[error(
        "could not prepare the claim statements in keyspace {keyspace}: {source}; has the schema \
         been created? run `dedupd migrate` (or `dedupd serve --migrate`)"
    )]
    Prepare {
        keyspace: String,
        #[source]
        source: PrepareError,
    },
}

/// Opens a session. It is bound to no keyspace: statements name theirs.
pub async fn connect_session(settings: &CqlSettings) -> Result<Session, ConnectError> {
    let mut policy = DefaultPolicy::builder().token_aware(true);
    if let Some(dc) = &settings.local_dc {
        // Stay in the local DC: LOCAL_SERIAL only means something there.
        policy = policy
            .prefer_datacenter(dc.clone())
            .permit_dc_failover(false);
    }
    let profile = ExecutionProfile::builder()
        .consistency(settings.consistency)
        .serial_consistency(Some(settings.serial_consistency))
        .request_timeout(Some(settings.request_timeout))
        .load_balancing_policy(policy.build())
        .build();
    let mut builder = SessionBuilder::new()
        .known_nodes(&settings.nodes)
        .connection_timeout(settings.connect_timeout)
        .default_execution_profile_handle(profile.into_handle());
    if let Some(tls) = &settings.tls {
        builder = builder.tls_context(Some(tls.clone()));
    }
    if !settings.address_map.is_empty() {
        builder = builder.address_translator(Arc::new(settings.address_map.clone()));
    }
    if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
        builder = builder.user(user, password.expose_secret());
    }
    let session = builder
        .build()
        .await
        .map_err(|source| ConnectError::Session {
            nodes: settings.nodes.clone(),
            source,
        })?;
    Ok(session)
}
