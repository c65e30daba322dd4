//! `dedupd`'s command line: subcommands, flags and their environment
//! fallbacks (the Kubernetes way: ConfigMaps and Secrets become environment
//! variables). Only the binary reads it; the library takes an `AppConfig`.
//! The benchmark, soak and fault checker are another binary, `dedupd-lab`,
//! with flags of their own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use scylla::statement::{Consistency, SerialConsistency};
use secrecy::SecretString;

use dedupd::claims::{ClaimSettings, ReadFirstPolicy, RetryBudget, WaitSettings};
use dedupd::config::FileConfig;
use dedupd::domain::KeyspaceName;
use dedupd::domain::Namespaces;
use dedupd::http::auth::Auth;
use dedupd::proxy::config::{ProxyConfig, ProxyFlags};
use dedupd::startup::AppConfig;
use dedupd::store::CqlSettings;
use dedupd::store::migrate::Replication;
use dedupd::telemetry::LogFormat;

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
    /// Serve as a reverse proxy in front of one HTTP API, giving its POST
    /// and PATCH routes `Idempotency-Key` (README, "Idempotency-Key for any
    /// API").
    Proxy(ProxyArgs),
    /// Create the keyspace and apply the CQL migrations, then exit.
    Migrate(MigrateArgs),
    /// Print the SHA-256 of a bearer token read from stdin, for the
    /// `[[auth.tokens]]` entries of the config file.
    HashToken,
    /// An operator's actions on a stuck claim, through a running dedupd's
    /// admin API (needs a token with `admin = true`).
    Admin(AdminArgs),
}

/// `dedupd admin …`: where the service is and who asks.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// The dedupd to ask (plain HTTP; inside a pod, the default).
    #[arg(
        long,
        env = "DEDUPD_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// A file holding the admin bearer token (a mounted Secret). Without
    /// it, the token comes from DEDUPD_ADMIN_TOKEN. Never a flag's value:
    /// flags show in `ps`.
    #[arg(long, env = "DEDUPD_ADMIN_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    #[command(subcommand)]
    pub action: AdminCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Show a claim: state, holder's claimant, lease, window.
    Get { namespace: String, key: String },
    /// End an in-progress claim now, fencing its holder: its token owns
    /// nothing afterwards, and the key can be claimed again at once.
    ForceRelease {
        namespace: String,
        key: String,
        /// Why, for the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Delete a claim, completed or not, so its key can be claimed again:
    /// the work it stands for may then run again.
    Forget {
        namespace: String,
        key: String,
        /// Why, for the audit log (required).
        #[arg(long)]
        reason: String,
    },
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
    #[arg(long, env = "DEDUPD_MAX_CLOCK_SKEW_MS", default_value_t = dedupd::claims::DEFAULT_MAX_CLOCK_SKEW_MS)]
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
    /// How long, in seconds, a cached completed claim is trusted after this
    /// instance learned it. Only an operator's `dedupd admin forget` can
    /// end a completed claim early: other instances hear of it within this.
    #[arg(long, env = "DEDUPD_COMPLETED_CACHE_MAX_AGE_SECS", default_value_t = dedupd::claims::DEFAULT_COMPLETED_CACHE_MAX_AGE.as_secs(), value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub completed_cache_max_age_secs: u64,
    /// How many claims may wait at once on this instance for a key's holder
    /// (`wait_secs`); more are refused at once with 503.
    #[arg(long, env = "DEDUPD_MAX_WAITERS", default_value_t = dedupd::claims::DEFAULT_MAX_WAITERS)]
    pub max_waiters: usize,
    /// How often, in milliseconds, a waiting claim looks for what other
    /// instances did (one quorum read): a completion through another
    /// instance is heard within it, one through this instance at once.
    #[arg(long, env = "DEDUPD_WAIT_POLL_MS", default_value_t = dedupd::claims::DEFAULT_WAIT_POLL.as_millis() as u64, value_parser = clap::value_parser!(u64).range(10..=5000))]
    pub wait_poll_ms: u64,
    /// After SIGTERM, how long /readyz reports 503 before the listener
    /// closes, so load balancers stop sending traffic first.
    #[arg(long, env = "DEDUPD_SHUTDOWN_DELAY_SECS", default_value_t = 5)]
    pub shutdown_delay_secs: u64,
    /// After the listener closes, how long in-flight requests may finish.
    #[arg(long, env = "DEDUPD_DRAIN_TIMEOUT_SECS", default_value_t = 20)]
    pub drain_timeout_secs: u64,
}

/// `dedupd proxy`: every `serve` flag (listen address, database, config,
/// auth, limits), and the upstream.
#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// The API to protect: plain HTTP/1.1, `http://host:port[/prefix]`.
    #[arg(long, env = "DEDUPD_PROXY_UPSTREAM")]
    pub upstream: String,
    /// How long the upstream has to answer a request, in milliseconds. A
    /// claim's lease is this plus 10 s, so no retry takes a key over while
    /// its first request may still be running.
    #[arg(long, env = "DEDUPD_PROXY_UPSTREAM_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1000..=600_000))]
    pub upstream_timeout_ms: u64,
    /// TOML file with the protected routes and the storage policy (README).
    /// Without it: POST and PATCH on every path, keys optional, fail closed.
    #[arg(long, env = "DEDUPD_PROXY_CONFIG")]
    pub proxy_config: Option<PathBuf>,
    /// The largest request body of a protected request, in bytes (read
    /// whole for its fingerprint; larger ones get 413).
    #[arg(long, env = "DEDUPD_PROXY_MAX_REQUEST_BODY_BYTES", default_value_t = dedupd::proxy::config::DEFAULT_MAX_REQUEST_BODY_BYTES)]
    pub max_request_body_bytes: usize,
    /// What protected requests may hold in memory at once, in MiB: their
    /// bodies, and room for each forward's response to be stored. A
    /// request that finds none gets 503 before anything is forwarded.
    #[arg(long, env = "DEDUPD_PROXY_MAX_BUFFERED_MIB", default_value_t = (dedupd::proxy::config::DEFAULT_MAX_BUFFERED_BYTES >> 20) as u64, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub max_buffered_mib: u64,
}

impl ProxyArgs {
    pub fn app_config(&self) -> anyhow::Result<AppConfig> {
        let proxy = ProxyConfig::from_flags(&ProxyFlags {
            upstream: &self.upstream,
            upstream_timeout: Duration::from_millis(self.upstream_timeout_ms),
            config: self.proxy_config.as_deref(),
            max_request_body_bytes: self.max_request_body_bytes,
            max_buffered_bytes: (self.max_buffered_mib as usize) << 20,
        })?;
        let config = self.serve.app_config()?;
        Ok(AppConfig {
            proxy: Some(proxy),
            ..config
        })
    }
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
    /// The application these flags (and the files they name) describe.
    pub fn app_config(&self) -> anyhow::Result<AppConfig> {
        let file = FileConfig::load_with_auth(self.config.as_deref(), self.auth_config.as_deref())?;
        Ok(
            AppConfig::builder(self.cql.settings()?, self.cql.keyspace()?)
                .listen(self.listen)
                .namespaces(Namespaces::from_file(&file)?)
                .auth(Auth::from_file(&file.auth)?)
                .migrate(self.migrate.then(|| self.replication.clone()))
                .max_in_flight(self.max_in_flight)
                .claims(ClaimSettings {
                    budget: RetryBudget {
                        deadline: Duration::from_millis(self.request_deadline_ms),
                        ..RetryBudget::default()
                    },
                    read_first: self.read_first(),
                    completed_cache_bytes: self.completed_cache_mib << 20,
                    completed_cache_max_age: Duration::from_secs(self.completed_cache_max_age_secs),
                    max_clock_skew: Duration::from_millis(self.max_clock_skew_ms),
                    wait: WaitSettings {
                        max_waiters: self.max_waiters,
                        poll: Duration::from_millis(self.wait_poll_ms),
                    },
                })
                .shutdown_delay(Duration::from_secs(self.shutdown_delay_secs))
                .drain_timeout(Duration::from_secs(self.drain_timeout_secs))
                .build(),
        )
    }
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
            Some(dedupd::store::tls::client_config(ca, client)?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lab_commands_are_not_the_services() {
        for command in ["bench", "soak", "check"] {
            assert!(
                Cli::try_parse_from(["dedupd", command]).is_err(),
                "{command}"
            );
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
}
