//! Building and running the application: bind, connect, serve, drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};

use crate::claims::{ClaimService, ClaimSettings, RetryBudget};
use crate::config::{FileConfig, Namespaces, ServeArgs};
use crate::domain::KeyspaceName;
use crate::http::auth::Auth;
use crate::http::{self, AppState, Health, Services};
use crate::metrics::Metrics;
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
}

impl AppConfig {
    pub fn from_args(args: &ServeArgs) -> anyhow::Result<Self> {
        let file = FileConfig::load_with_auth(args.config.as_deref(), args.auth_config.as_deref())?;
        Ok(Self {
            listen: args.listen,
            cql: args.cql.settings()?,
            keyspace: args.cql.keyspace()?,
            namespaces: Namespaces::from_file(&file)?,
            auth: Auth::from_file(&file.auth)?,
            migrate: args.migrate.then(|| args.replication.clone()),
            max_in_flight: args.max_in_flight.max(1),
            claims: ClaimSettings {
                budget: RetryBudget {
                    deadline: Duration::from_millis(args.request_deadline_ms),
                    ..RetryBudget::default()
                },
                read_first: args.read_first(),
                completed_cache_bytes: args.completed_cache_mib << 20,
                max_clock_skew: Duration::from_millis(args.max_clock_skew_ms),
            },
            shutdown_delay: Duration::from_secs(args.shutdown_delay_secs),
            drain_timeout: Duration::from_secs(args.drain_timeout_secs),
        })
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
        let app = http::router(state.clone(), request_timeout);
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
