//! Building and running the application: bind, connect, serve, drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};

use crate::claims::{ClaimService, ClaimSettings};
use crate::domain::KeyspaceName;
use crate::domain::Namespaces;
use crate::http::auth::Auth;
use crate::http::{self, AppState, Health, Services};
use crate::metrics::Metrics;
use crate::proxy::ProxyConfig;
use crate::sequences::SequenceService;
use crate::store::faults::FaultPlan;
use crate::store::migrate::{Replication, migrate};
use crate::store::{CqlSettings, Store, connect_session};

/// Everything `serve` needs, independent of where it came from.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub listen: SocketAddr,
    pub cql: CqlSettings,
    pub keyspace: KeyspaceName,
    pub namespaces: Namespaces,
    pub auth: Auth,
    /// Create the keyspace and apply migrations before serving.
    pub migrate: Option<Replication>,
    pub max_in_flight: usize,
    pub claims: ClaimSettings,
    pub shutdown_delay: Duration,
    pub drain_timeout: Duration,
    /// Serve as `dedupd proxy` in front of this upstream instead of the
    /// claim API.
    pub proxy: Option<ProxyConfig>,
}

impl AppConfig {
    /// A config for `cql` and `keyspace`, with the defaults of an instance
    /// run inside another program (the tests, the lab's benchmark): a free
    /// loopback port, no namespaces file, no auth, no migrations, no drain
    /// delay. `dedupd serve` sets every field from its flags (src/cli.rs).
    pub fn builder(cql: CqlSettings, keyspace: KeyspaceName) -> AppConfigBuilder {
        AppConfigBuilder {
            config: AppConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                cql,
                keyspace,
                namespaces: Namespaces::default(),
                auth: Auth::default(),
                migrate: None,
                max_in_flight: 512,
                claims: ClaimSettings::default(),
                shutdown_delay: Duration::ZERO,
                drain_timeout: Duration::from_secs(5),
                proxy: None,
            },
        }
    }
}

/// Builds an `AppConfig`; see `AppConfig::builder` for the defaults.
#[derive(Debug, Clone)]
#[must_use]
pub struct AppConfigBuilder {
    config: AppConfig,
}

/// Declares setters that store their argument as it comes, each named
/// after the field it sets.
macro_rules! plain_setters {
    ($($(#[$meta:meta])* $field:ident: $type:ty;)*) => {$(
        $(#[$meta])*
        pub fn $field(mut self, $field: $type) -> Self {
            self.config.$field = $field;
            self
        }
    )*};
}

impl AppConfigBuilder {
    plain_setters! {
        listen: SocketAddr;
        namespaces: Namespaces;
        auth: Auth;
        /// Create the keyspace with this replication and migrate before serving.
        migrate: Option<Replication>;
        claims: ClaimSettings;
        shutdown_delay: Duration;
        drain_timeout: Duration;
        /// Serve as an idempotency proxy in front of an upstream.
        proxy: Option<ProxyConfig>;
    }

    /// Requests that may wait on Cassandra at once (at least one).
    pub fn max_in_flight(mut self, permits: usize) -> Self {
        self.config.max_in_flight = permits.max(1);
        self
    }

    pub fn build(self) -> AppConfig {
        self.config
    }
}

/// A bound, not yet serving, application.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    config: AppConfig,
    faults: Arc<FaultPlan>,
}

impl Application {
    /// Binds the listener. The database session is opened in the background
    /// by `run_until_stopped`, so `/livez` answers at once and `/readyz` says
    /// when claims can be served.
    pub async fn build(config: AppConfig) -> std::io::Result<Self> {
        Self::build_with_faults(config, Arc::new(FaultPlan::default())).await
    }

    /// As `build`, with a fault plan the tests can arm.
    pub async fn build_with_faults(
        config: AppConfig,
        faults: Arc<FaultPlan>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        let state = AppState {
            services: Arc::new(OnceLock::new()),
            namespaces: Arc::new(config.namespaces.clone()),
            auth: Arc::new(config.auth.clone()),
            metrics: Metrics::new(),
            health: Arc::new(Health::default()),
            permits: Arc::new(Semaphore::new(config.max_in_flight)),
        };
        Ok(Self {
            listener,
            state,
            config,
            faults,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, then drains: readiness goes 503,
    /// the listener stays open for `shutdown_delay` (load balancers notice),
    /// then closes, and in-flight requests get `drain_timeout` to finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Application {
            listener,
            state,
            config,
            faults,
        } = self;
        let connector = tokio::spawn(connect_until_ready(config.clone(), state.clone(), faults));
        // A request stops starting statements at its deadline, but the one
        // in flight then may run for the driver's whole request timeout:
        // the backstop waits for both, so it cuts only a request that hangs.
        let request_timeout =
            config.claims.budget.deadline + config.cql.request_timeout + Duration::from_secs(1);
        let app = match &config.proxy {
            Some(proxy) => crate::proxy::router(state.clone(), proxy.clone(), request_timeout)?,
            None => http::router(state.clone(), request_timeout),
        };
        let (stop_accepting, stop_signal) = oneshot::channel::<()>();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stop_signal.await;
        });
        let mut server = tokio::spawn(async move { server.await });
        tracing::info!(listen = %config.listen, "serving");

        tokio::select! {
            result = &mut server => {
                connector.abort();
                result??;
                return Ok(());
            }
            () = shutdown => {}
        }
        tracing::info!(
            delay_secs = config.shutdown_delay.as_secs(),
            "shutdown requested, draining"
        );
        state.health.start_draining();
        // Claims waiting for a key's holder answer now, with what they have,
        // rather than hold the drain for up to their wait.
        if let Some(services) = state.services.get() {
            services.claims.stop_waiting();
        }
        tokio::time::sleep(config.shutdown_delay).await;
        let _ = stop_accepting.send(());
        match tokio::time::timeout(config.drain_timeout, &mut server).await {
            Ok(result) => result??,
            Err(_) => {
                tracing::warn!(
                    drain_timeout_secs = config.drain_timeout.as_secs(),
                    "in-flight requests did not finish in time, dropping them"
                );
                server.abort();
            }
        }
        connector.abort();
        // The last Arc of the service drops the store and with it the
        // session, closing its connections.
        drop(state);
        tracing::info!("stopped");
        Ok(())
    }
}

/// Opens the session (migrating first when asked) and publishes the claim
/// service, retrying with capped backoff until it works.
async fn connect_until_ready(config: AppConfig, state: AppState, faults: Arc<FaultPlan>) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match connect(&config, &state, faults.clone()).await {
            Ok(services) => {
                let _ = state.services.set(services);
                tracing::info!(keyspace = %config.keyspace, nodes = ?config.cql.nodes, "database session ready");
                return;
            }
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), retry_in_ms = backoff.as_millis() as u64, "database not ready");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn connect(
    config: &AppConfig,
    state: &AppState,
    faults: Arc<FaultPlan>,
) -> anyhow::Result<Services> {
    if let Some(replication) = &config.migrate {
        // Its own session: migrations `USE` the keyspace, which the serving
        // session (fully qualified prepared statements) must not carry.
        let session = connect_session(&config.cql).await?;
        let report = migrate(&session, &config.keyspace, replication).await?;
        tracing::info!(applied = ?report.applied, "migrations checked");
    }
    let session = Arc::new(connect_session(&config.cql).await?);
    let store = Store::with_session(
        session,
        &config.cql,
        &config.keyspace,
        state.metrics.clone(),
        faults,
    )
    .await?;
    let store = Arc::new(store);
    Ok(Services {
        claims: Arc::new(ClaimService::new(
            store.clone(),
            state.metrics.clone(),
            config.claims,
        )),
        sequences: Arc::new(SequenceService::new(
            store,
            state.metrics.clone(),
            config.claims.budget,
        )),
    })
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(error = %error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
