//! Configuration: flags with environment fallbacks (the Kubernetes way:
//! ConfigMaps and Secrets become environment variables), plus an optional
//! TOML file for namespaces and limits.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use scylla::statement::{Consistency, SerialConsistency};
use secrecy::SecretString;
use serde::Deserialize;

use crate::claims::ReadFirstPolicy;
use crate::domain::{CASSANDRA_MAX_TTL_SECS, KeyspaceName, Namespace, RetentionPolicy};
use crate::http::auth::AuthFile;
use crate::store::CqlSettings;
use crate::store::migrate::Replication;

#[derive(Debug, Parser)]
#[command(
    name = "dedupd",
    version,
    about = "A claim ledger for at-least-once consumers"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API.
    Serve(ServeArgs),
    /// Create the keyspace and apply the CQL migrations, then exit.
    Migrate(MigrateArgs),
    /// Measure what lightweight transactions cost (see docs/lwt.md).
    Bench(crate::bench::BenchArgs),
    /// A bounded soak: steady load with memory and p99 watched, then overload.
    Soak(crate::bench::soak::SoakArgs),
    /// Check the guarantee under faults (needs a 3-node local cluster).
    Check(crate::check::CheckArgs),
    /// Print the SHA-256 of a bearer token read from stdin, for the
    /// `[[auth.tokens]]` entries of the config file.
    HashToken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConsistencyArg {
    LocalQuorum,
    Quorum,
    EachQuorum,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SerialConsistencyArg {
    /// Linearizable within the local datacenter (one DC, or DC-local keys).
    LocalSerial,
    /// Linearizable across all datacenters (multi-DC deployments).
    Serial,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReadFirstArg {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// How to reach Cassandra. Shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct CqlArgs {
    /// CQL contact points, comma-separated host:port.
    #[arg(
        long,
        env = "DEDUPD_CQL_NODES",
        value_delimiter = ',',
        default_value = "127.0.0.1:9042"
    )]
    pub cql_nodes: Vec<String>,
    /// The keyspace holding dedupd's tables.
    #[arg(long, env = "DEDUPD_KEYSPACE", default_value = "dedupd")]
    pub keyspace: String,
    /// The local datacenter: requests stay in it (required for LOCAL_* levels
    /// to mean anything in a multi-DC cluster).
    #[arg(long, env = "DEDUPD_LOCAL_DC")]
    pub local_dc: Option<String>,
    /// CQL username (PasswordAuthenticator).
    #[arg(long, env = "DEDUPD_CQL_USERNAME")]
    pub cql_username: Option<String>,
    /// CQL password. Prefer the environment (a Kubernetes Secret) to the flag,
    /// which other users of the machine can read in the process list.
    #[arg(long, env = "DEDUPD_CQL_PASSWORD", hide_env_values = true)]
    pub cql_password: Option<SecretString>,
    /// Consistency of the commit (learn) phase of LWTs and of plain reads.
    #[arg(
        long,
        env = "DEDUPD_CONSISTENCY",
        value_enum,
        default_value = "local-quorum"
    )]
    pub consistency: ConsistencyArg,
    /// Serial consistency of LWTs and serial reads: one level for both.
    #[arg(
        long,
        env = "DEDUPD_SERIAL_CONSISTENCY",
        value_enum,
        default_value = "local-serial"
    )]
    pub serial_consistency: SerialConsistencyArg,
    /// Driver request timeout in milliseconds; keep it above the server's
    /// write_request_timeout plus cas_contention_timeout.
    #[arg(long, env = "DEDUPD_CQL_REQUEST_TIMEOUT_MS", default_value_t = 6000)]
    pub cql_request_timeout_ms: u64,
    /// Talk TLS to the nodes.
    #[arg(long, env = "DEDUPD_CQL_TLS", default_value_t = false)]
    pub cql_tls: bool,
    /// PEM file with the CA that signed the nodes' certificates (TLS).
    #[arg(long, env = "DEDUPD_CQL_TLS_CA")]
    pub cql_tls_ca: Option<PathBuf>,
    /// PEM client certificate chain, for nodes that require client
    /// certificates (with --cql-tls-key).
    #[arg(long, env = "DEDUPD_CQL_TLS_CERT", requires = "cql_tls_key")]
    pub cql_tls_cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[arg(long, env = "DEDUPD_CQL_TLS_KEY", requires = "cql_tls_cert")]
    pub cql_tls_key: Option<PathBuf>,
    /// Dial other addresses than the nodes announce, as comma-separated
    /// `announced=dial` pairs of IP:port (nodes behind NAT, port-forwards or
    /// a proxy). The driver names a node by the IP it announces and the port
    /// of the contact point it dialled, so dial every node on one port:
    /// `10.0.0.5:19042=127.0.0.1:19042,10.0.0.6:19042=127.0.0.2:19042`.
    /// Nodes not listed are skipped.
    #[arg(long, env = "DEDUPD_CQL_ADDRESS_MAP", value_delimiter = ',')]
    pub cql_address_map: Vec<AddressMapping>,
    /// Log format.
    #[arg(
        long,
        env = "DEDUPD_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub cql: CqlArgs,
    /// Address to serve HTTP on.
    #[arg(long, env = "DEDUPD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// TOML file with namespaces and limits (see README).
    #[arg(long, env = "DEDUPD_CONFIG")]
    pub config: Option<PathBuf>,
    /// TOML file with just the `[auth]` table; it replaces the config
    /// file's. Lets token hashes live in a Secret and namespaces in a
    /// ConfigMap.
    #[arg(long, env = "DEDUPD_AUTH_CONFIG")]
    pub auth_config: Option<PathBuf>,
    /// Apply migrations before serving (development; production runs
    /// `dedupd migrate` as a Job).
    #[arg(long, env = "DEDUPD_MIGRATE", default_value_t = false)]
    pub migrate: bool,
    /// Replication used when --migrate creates the keyspace.
    #[arg(long, env = "DEDUPD_REPLICATION", default_value = "1")]
    pub replication: Replication,
    /// Requests that may wait on Cassandra at once; more get 503 at once.
    #[arg(long, env = "DEDUPD_MAX_IN_FLIGHT", default_value_t = 512)]
    pub max_in_flight: usize,
    /// How long one request may take to decide, in milliseconds.
    #[arg(long, env = "DEDUPD_REQUEST_DEADLINE_MS", default_value_t = 10_000)]
    pub request_deadline_ms: u64,
    /// The most any instance's clock may run ahead of another's, in
    /// milliseconds: a takeover and a window's end must clear it (README,
    /// "Clocks").
    #[arg(long, env = "DEDUPD_MAX_CLOCK_SKEW_MS", default_value_t = crate::claims::DEFAULT_MAX_CLOCK_SKEW_MS)]
    pub max_clock_skew_ms: u64,
    /// Read before claiming, so that redeliveries of completed work are
    /// answered without a Paxos round: `auto` (per namespace, while at least
    /// --read-first-threshold of its recent claims were such redeliveries),
    /// `always` or `never`.
    #[arg(long, env = "DEDUPD_READ_FIRST", value_enum, default_value = "auto")]
    pub read_first: ReadFirstArg,
    /// The share of completed duplicates above which `auto` reads first.
    #[arg(long, env = "DEDUPD_READ_FIRST_THRESHOLD", default_value_t = 0.25)]
    pub read_first_threshold: f64,
    /// Memory for the cache of completed claims, in MiB (0 turns it off).
    /// Redeliveries of completed work are answered from it without a
    /// database round trip; it cannot go stale (see README).
    #[arg(long, env = "DEDUPD_COMPLETED_CACHE_MIB", default_value_t = 64)]
    pub completed_cache_mib: u64,
    /// After SIGTERM, how long /readyz reports 503 before the listener
    /// closes, so load balancers stop sending traffic first.
    #[arg(long, env = "DEDUPD_SHUTDOWN_DELAY_SECS", default_value_t = 5)]
    pub shutdown_delay_secs: u64,
    /// After the listener closes, how long in-flight requests may finish.
    #[arg(long, env = "DEDUPD_DRAIN_TIMEOUT_SECS", default_value_t = 20)]
    pub drain_timeout_secs: u64,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub cql: CqlArgs,
    /// Keyspace replication: `3` (3 in every DC) or `dc1:3,dc2:3`.
    #[arg(long, env = "DEDUPD_REPLICATION", default_value = "1")]
    pub replication: Replication,
    /// Keep trying to reach Cassandra for this many seconds (a migration Job
    /// may start before the database is up).
    #[arg(long, env = "DEDUPD_MIGRATE_WAIT_SECS", default_value_t = 120)]
    pub wait_secs: u64,
}

impl ServeArgs {
    pub fn read_first(&self) -> ReadFirstPolicy {
        match self.read_first {
            ReadFirstArg::Auto => ReadFirstPolicy::Auto {
                threshold: self.read_first_threshold.clamp(0.0, 1.0),
            },
            ReadFirstArg::Always => ReadFirstPolicy::Always,
            ReadFirstArg::Never => ReadFirstPolicy::Never,
        }
    }
}

impl CqlArgs {
    pub fn keyspace(&self) -> anyhow::Result<KeyspaceName> {
        Ok(KeyspaceName::parse(&self.keyspace)?)
    }

    pub fn settings(&self) -> anyhow::Result<CqlSettings> {
        let tls = if self.cql_tls {
            let ca = self.cql_tls_ca.as_deref().ok_or_else(|| {
                anyhow::anyhow!(
                    "--cql-tls needs --cql-tls-ca (DEDUPD_CQL_TLS_CA): the CA that signed the \
                     nodes' certificates"
                )
            })?;
            let client = self
                .cql_tls_cert
                .as_deref()
                .zip(self.cql_tls_key.as_deref());
            Some(crate::store::tls::client_config(ca, client)?)
        } else {
            None
        };
        Ok(CqlSettings {
            nodes: self.cql_nodes.clone(),
            local_dc: self.local_dc.clone(),
            username: self.cql_username.clone(),
            password: self.cql_password.clone(),
            consistency: match self.consistency {
                ConsistencyArg::LocalQuorum => Consistency::LocalQuorum,
                ConsistencyArg::Quorum => Consistency::Quorum,
                ConsistencyArg::EachQuorum => Consistency::EachQuorum,
            },
            serial_consistency: match self.serial_consistency {
                SerialConsistencyArg::LocalSerial => SerialConsistency::LocalSerial,
                SerialConsistencyArg::Serial => SerialConsistency::Serial,
            },
            request_timeout: Duration::from_millis(self.cql_request_timeout_ms),
            connect_timeout: Duration::from_secs(5),
            tls,
            address_map: self
                .cql_address_map
                .iter()
                .map(|mapping| (mapping.announced, mapping.dial))
                .collect(),
        })
    }
}

/// One `announced=dial` pair of `--cql-address-map`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressMapping {
    pub announced: SocketAddr,
    pub dial: SocketAddr,
}

impl std::str::FromStr for AddressMapping {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (announced, dial) = text.split_once('=').ok_or_else(|| {
            format!("`{text}` is not `announced=dial` (e.g. 10.0.0.5:19042=127.0.0.1:19042)")
        })?;
        let parse = |address: &str| {
            address
                .trim()
                .parse::<SocketAddr>()
                .map_err(|_| format!("`{address}` in `{text}` is not an IP address with a port"))
        };
        Ok(Self {
            announced: parse(announced)?,
            dial: parse(dial)?,
        })
    }
}

/// The optional TOML file.
///
/// ```toml
/// [auth]                  # bearer tokens; with none listed, no auth
/// protect_metrics = true
/// [[auth.tokens]]
/// name = "orders-consumer"
/// sha256 = "…"            # `dedupd hash-token` prints it
/// namespaces = ["orders"] # or ["*"]
///
/// [defaults]              # for namespaces not listed (when none are listed)
/// ttl_secs = 86400
/// max_ttl_secs = 2592000
/// lease_secs = 30
///
/// [namespaces.payments]   # once any namespace is listed, only those exist
/// ttl_secs = 604800
/// max_ttl_secs = 2592000
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub defaults: PolicyFile,
    #[serde(default)]
    pub namespaces: BTreeMap<String, PolicyFile>,
    #[serde(default)]
    pub auth: AuthFile,
}

/// The `--auth-config` file: an `[auth]` table and nothing else.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthConfigFile {
    auth: AuthFile,
}

fn read_toml<T: serde::de::DeserializeOwned>(what: &str, path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| anyhow::anyhow!("cannot read {what} {}: {error}", path.display()))?;
    toml::from_str(&text)
        .map_err(|error| anyhow::anyhow!("invalid {what} {}: {error}", path.display()))
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        read_toml("config file", path)
    }

    /// The config file, with its `[auth]` replaced by the one in
    /// `auth_path` when given.
    pub fn load_with_auth(path: Option<&Path>, auth_path: Option<&Path>) -> anyhow::Result<Self> {
        let mut file = Self::load(path)?;
        if let Some(auth_path) = auth_path {
            let auth: AuthConfigFile = read_toml("auth config file", auth_path)?;
            // Naming an auth file says "authenticate": one that lists no
            // token would silently serve everyone.
            anyhow::ensure!(
                !auth.auth.tokens.is_empty(),
                "auth config file {} lists no [[auth.tokens]]; list at least one, or leave \
                 --auth-config unset to serve without authentication",
                auth_path.display()
            );
            file.auth = auth.auth;
        }
        Ok(file)
    }
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub ttl_secs: Option<u64>,
    pub max_ttl_secs: Option<u64>,
    pub lease_secs: Option<u64>,
}

impl PolicyFile {
    fn resolve(self, base: RetentionPolicy, name: &str) -> anyhow::Result<RetentionPolicy> {
        let policy = RetentionPolicy {
            default_ttl_secs: self.ttl_secs.unwrap_or(base.default_ttl_secs),
            max_ttl_secs: self.max_ttl_secs.unwrap_or(base.max_ttl_secs),
            default_lease_secs: self.lease_secs.unwrap_or(base.default_lease_secs),
        };
        anyhow::ensure!(
            policy.max_ttl_secs >= 1 && policy.max_ttl_secs <= CASSANDRA_MAX_TTL_SECS,
            "{name}: max_ttl_secs must be between 1 and {CASSANDRA_MAX_TTL_SECS} (Cassandra's 20-year cap)"
        );
        anyhow::ensure!(
            policy.default_ttl_secs >= 1 && policy.default_ttl_secs <= policy.max_ttl_secs,
            "{name}: ttl_secs must be between 1 and max_ttl_secs ({})",
            policy.max_ttl_secs
        );
        anyhow::ensure!(
            policy.default_lease_secs >= 1,
            "{name}: lease_secs must be at least 1"
        );
        Ok(policy)
    }
}

/// Which namespaces exist and the retention rules of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespaces {
    /// No namespace configured: every valid name exists, with these rules.
    Open(RetentionPolicy),
    /// Only these exist; any other name is 404.
    Listed(BTreeMap<Namespace, RetentionPolicy>),
}

impl Default for Namespaces {
    fn default() -> Self {
        Namespaces::Open(RetentionPolicy::default())
    }
}

impl Namespaces {
    pub fn policy(&self, namespace: &Namespace) -> Option<RetentionPolicy> {
        match self {
            Namespaces::Open(policy) => Some(*policy),
            Namespaces::Listed(listed) => listed.get(namespace).copied(),
        }
    }

    pub fn from_file(file: &FileConfig) -> anyhow::Result<Self> {
        let defaults = file
            .defaults
            .resolve(RetentionPolicy::default(), "[defaults]")?;
        if file.namespaces.is_empty() {
            return Ok(Namespaces::Open(defaults));
        }
        let mut listed = BTreeMap::new();
        for (name, policy) in &file.namespaces {
            let namespace = Namespace::parse(name)
                .map_err(|error| anyhow::anyhow!("[namespaces.{name}]: {error}"))?;
            listed.insert(
                namespace,
                policy.resolve(defaults, &format!("[namespaces.{name}]"))?,
            );
        }
        Ok(Namespaces::Listed(listed))
    }

    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        Self::from_file(&FileConfig::load(path)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_means_every_namespace_with_a_day_of_retention() {
        let namespaces = Namespaces::load(None).unwrap();
        let policy = namespaces
            .policy(&Namespace::parse("anything").unwrap())
            .unwrap();
        assert_eq!(policy.default_ttl_secs, 86400);
        assert_eq!(policy.max_ttl_secs, CASSANDRA_MAX_TTL_SECS);
    }

    #[test]
    fn listed_namespaces_close_the_set() {
        let file: FileConfig = toml::from_str(
            "[defaults]\nttl_secs = 900\nmax_ttl_secs = 1000\n[namespaces.payments]\nttl_secs = 600\n",
        )
        .unwrap();
        let namespaces = Namespaces::from_file(&file).unwrap();
        let policy = namespaces
            .policy(&Namespace::parse("payments").unwrap())
            .unwrap();
        assert_eq!(policy.default_ttl_secs, 600);
        assert_eq!(policy.max_ttl_secs, 1000);
        assert_eq!(
            namespaces.policy(&Namespace::parse("orders").unwrap()),
            None
        );
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        for text in [
            "[namespaces.Bad]\n",
            "[defaults]\nttl_secs = 10\nmax_ttl_secs = 5\n",
            "[defaults]\nmax_ttl_secs = 999999999999\n",
            "[defaults]\nunknown = 1\n",
        ] {
            let parsed: Result<FileConfig, _> = toml::from_str(text);
            let result = parsed
                .map_err(anyhow::Error::from)
                .and_then(|file| Namespaces::from_file(&file));
            assert!(result.is_err(), "{text:?} should be refused");
        }
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let cli = Cli::parse_from([
            "dedupd",
            "serve",
            "--cql-username",
            "app",
            "--cql-password",
            "hunter2-secret",
        ]);
        let Command::Serve(args) = cli.command else {
            panic!("expected serve")
        };
        assert!(!format!("{args:?}").contains("hunter2-secret"));
        assert!(!format!("{:?}", args.cql.settings().unwrap()).contains("hunter2-secret"));
    }

    #[test]
    fn address_maps_parse_into_pairs_or_say_what_is_wrong() {
        let cli = Cli::parse_from([
            "dedupd",
            "serve",
            "--cql-address-map",
            "10.0.0.5:9042=127.0.0.1:19042, 10.0.0.6:9042 = 127.0.0.1:19043",
        ]);
        let Command::Serve(args) = cli.command else {
            panic!("expected serve")
        };
        let map = args.cql.settings().unwrap().address_map;
        assert_eq!(map.len(), 2);
        assert_eq!(
            map[&"10.0.0.6:9042".parse().unwrap()],
            "127.0.0.1:19043".parse().unwrap()
        );
        for (text, complaint) in [
            ("10.0.0.5:9042", "announced=dial"),
            ("10.0.0.5=127.0.0.1:1", "`10.0.0.5`"),
            ("node1:9042=127.0.0.1:1", "`node1:9042`"),
        ] {
            let error = text.parse::<AddressMapping>().unwrap_err();
            assert!(error.contains(complaint), "{text}: {error}");
        }
    }

    #[test]
    fn an_auth_config_file_replaces_the_config_files_auth() {
        let dir = std::env::temp_dir().join(format!("dedupd-auth-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("dedupd.toml");
        let auth = dir.join("auth.toml");
        std::fs::write(
            &config,
            "[namespaces.orders]\n[auth]\nprotect_metrics = false\n",
        )
        .unwrap();
        std::fs::write(
            &auth,
            format!(
                "[auth]\nprotect_metrics = true\n[[auth.tokens]]\nname = \"orders\"\nsha256 = \"{}\"\nnamespaces = [\"orders\"]\n",
                "ab".repeat(32)
            ),
        )
        .unwrap();
        let merged = FileConfig::load_with_auth(Some(&config), Some(&auth)).unwrap();
        assert!(merged.auth.protect_metrics);
        assert_eq!(merged.auth.tokens.len(), 1);
        assert!(merged.namespaces.contains_key("orders"));
        let alone = FileConfig::load_with_auth(Some(&config), None).unwrap();
        assert!(alone.auth.tokens.is_empty());
        // An auth file without tokens would turn auth off without a word.
        std::fs::write(&auth, "[auth]\nprotect_metrics = true\n").unwrap();
        let error = FileConfig::load_with_auth(Some(&config), Some(&auth)).unwrap_err();
        assert!(error.to_string().contains("lists no"), "{error}");
        // Only `[auth]` belongs in the auth file.
        std::fs::write(&auth, "[namespaces.orders]\n[auth]\n").unwrap();
        let error = FileConfig::load_with_auth(Some(&config), Some(&auth)).unwrap_err();
        assert!(error.to_string().contains("auth config file"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
