//! Starting the server: its options, the listener (connection limits, timeouts, TLS), the
//! background threads it runs (KPI guard, events), and why it may fail to start.

use super::mlflow_hook::MlflowReceiver;
use super::{ServerState, events, guard, limits, router, tokens, watch};
use crate::store::local::LocalStore;
use crate::store::{Store, StoreError};
use axum::Router;
use std::path::PathBuf;
use std::sync::Arc;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on, e.g. `127.0.0.1:8080` (port 0 picks a free one).
    pub listen: String,
    /// Store path (unused with `database`).
    pub store: PathBuf,
    /// Policy path (unused with `database`).
    pub policy: PathBuf,
    /// Tokens file (unused with `database`).
    pub tokens: PathBuf,
    /// A PostgreSQL URL: the store, its policy history and the tokens all come from
    /// this database, so any number of replicas started with it serve as one.
    pub database: Option<String>,
    /// TLS certificate and key (PEM), for HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Write an access log line per request to stderr.
    pub access_log: bool,
    /// Connection, time and rate limits.
    pub limits: limits::Limits,
    /// The server's own key (its principal holds role `server`): signs relayed
    /// submissions. Given to every replica; never generated per process.
    pub server_key: Option<PathBuf>,
    /// Run the KPI guard on CRs in canary, signing with the server key.
    pub kpi_guard: bool,
    /// Take MLflow's webhook deliveries.
    pub mlflow_webhook: Option<MlflowWebhook>,
    /// Send signed events to these subscribers (`serve --subscribers FILE`).
    pub subscribers: Vec<events::Subscriber>,
}

/// Where MLflow's webhook deliveries come from and how they are signed.
#[derive(Debug, Clone)]
pub struct MlflowWebhook {
    /// The registry's URL (versions are read from it).
    pub url: String,
    /// How versions awaiting review are marked.
    pub convention: crate::sources::mlflow::Convention,
    /// The webhook's shared secret.
    pub secret: String,
}

/// Serves until the process is stopped; `ready` receives the bound address.
pub async fn serve(
    opts: ServeOptions,
    ready: impl FnOnce(std::net::SocketAddr),
) -> Result<(), ServeError> {
    // Opening a database blocks (its client runs its own runtime): off the async threads.
    let mut state = {
        let opts = opts.clone();
        tokio::task::spawn_blocking(move || ServerState::load(&opts))
            .await
            .map_err(|_| ServeError::Stopped)??
    };
    state.access_log = opts.access_log;
    state.limiter = limits::RateLimiter::new(opts.limits.rate_per_sec, opts.limits.burst);
    state.body_timeout = opts.limits.body_timeout;
    state.keep_alive = watch::KEEP_ALIVE.min(opts.limits.idle_timeout / 2);
    if let Some(file) = &opts.server_key {
        state.server_key = Some(Arc::new(state.server_signer(file)?));
    }
    if let Some(MlflowWebhook {
        url,
        convention,
        secret,
    }) = &opts.mlflow_webhook
    {
        // A blocking HTTP client is made (and used) off the async threads.
        let url = url.clone();
        let client = tokio::task::spawn_blocking(move || crate::sources::mlflow::Client::new(&url))
            .await
            .map_err(|_| ServeError::Stopped)?
            .map_err(|e| ServeError::Mlflow(e.to_string()))?;
        state.mlflow = Some(Arc::new(MlflowReceiver {
            client,
            convention: convention.clone(),
            secret: secret.clone(),
        }));
    }
    let state = Arc::new(state);
    if opts.kpi_guard {
        if state.server_key.is_none() {
            return Err(ServeError::GuardWithoutKey);
        }
        guard::spawn(state.clone());
    }
    let events_state = state.clone();
    let app = router(state);
    let addr: std::net::SocketAddr = opts.listen.parse().map_err(|source| ServeError::Listen {
        value: opts.listen.clone(),
        source,
    })?;
    let tls = match &opts.tls {
        None => None,
        Some((cert, key)) => {
            crate::tls::install_crypto_provider();
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(|source| ServeError::Tls {
                    cert: cert.clone(),
                    key: key.clone(),
                    source,
                })?;
            Some(
                axum_server::tls_rustls::RustlsAcceptor::new(config)
                    .handshake_timeout(opts.limits.header_timeout),
            )
        }
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    if !opts.subscribers.is_empty() {
        let scheme = if tls.is_some() { "https" } else { "http" };
        // With SQLite, a connection of the events thread's own; a database's pool
        // already gives it one.
        let events_store: Arc<dyn Store> = match &opts.database {
            Some(_) => events_state.store.clone(),
            None => {
                let own = LocalStore::open(&opts.store)?;
                own.writes_only_derived_data()?;
                Arc::new(own)
            }
        };
        events::spawn(
            events_state,
            events_store,
            opts.subscribers.clone(),
            format!("{scheme}://{bound}"),
        );
    }
    ready(bound);
    accept_loop(listener, app, tls, opts.limits).await
}

/// Accepts connections up to the limit (one more is closed at once), each served with
/// the head deadline and the idle timeout, over TLS when configured.
pub(super) async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<axum_server::tls_rustls::RustlsAcceptor>,
    limits: limits::Limits,
) -> Result<(), ServeError> {
    use axum_server::accept::Accept;
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            // Out of descriptors or a connection reset before it was accepted: wait a
            // moment rather than spin, and keep serving.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let io = limits::IdleTimeout::new(tcp, limits.idle_timeout);
        let service = TowerToHyperService::new(app.clone());
        let (builder, tls) = (builder.clone(), tls.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => {
                    let _ = builder
                        .serve_connection_with_upgrades(TokioIo::new(io), service)
                        .await;
                }
                Some(acceptor) => {
                    if let Ok((stream, ())) = acceptor.accept(io, ()).await {
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .await;
                    }
                }
            }
        });
    }
}

/// Starts the server on a thread of its own (a two-worker runtime) and returns once it
/// listens: for tests, benchmarks and tools that need a real server in-process.
pub fn start_in_background(opts: ServeOptions) -> Result<std::net::SocketAddr, ServeError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let failed = tx.clone();
    std::thread::Builder::new()
        .name("tollgate-server".into())
        .spawn(move || {
            let outcome = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|source| ServeError::Runtime {
                    what: "start the async runtime",
                    source,
                })
                .and_then(|rt| {
                    rt.block_on(serve(opts, move |addr| {
                        let _ = tx.send(Ok(addr));
                    }))
                });
            if let Err(e) = outcome {
                let _ = failed.send(Err(e));
            }
        })
        .map_err(|source| ServeError::Runtime {
            what: "start the server thread",
            source,
        })?;
    rx.recv().map_err(|_| ServeError::Stopped)?
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The MLflow source for webhooks does not read.
    #[error("--source for MLflow webhooks: {0}")]
    Mlflow(String),
    /// `--kpi-guard` without `--server-key`: the guard signs as the server.
    #[error(
        "--kpi-guard signs readings and rollbacks as the server: give --server-key FILE (a key of the policy's principal holding the server role, on the on-call roster)"
    )]
    GuardWithoutKey,
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The policy history in the log does not read.
    #[error(transparent)]
    Policy(#[from] crate::audit::policy_log::BookError),
    /// The store has no policy in its log.
    #[error(
        "the store at {} has no policy in its log (it predates policy entries, or `tollgate init` was not run on it); run `tollgate migrate` (or `tollgate init --database URL`) first",
        .0.display()
    )]
    NoPolicy(PathBuf),
    /// A key line of the policy in force is not a public key.
    #[error(transparent)]
    Keys(#[from] crate::audit::keys::KeyLineError),
    /// The tokens file.
    #[error(transparent)]
    Tokens(#[from] tokens::TokenError),
    /// The server key cannot be loaded.
    #[error("--server-key {}: {source}", path.display())]
    ServerKey {
        /// The key file.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::audit::keys::KeyError,
    },
    /// The server key belongs to no principal.
    #[error(
        "--server-key {}: this key ({fingerprint}) belongs to no principal of the policy in force; add the server as a principal with role server and this key (`tollgate init --server-principal ID` does it for a new store)",
        path.display()
    )]
    ServerKeyOwner {
        /// The key file.
        path: PathBuf,
        /// Its fingerprint.
        fingerprint: String,
    },
    /// The server key's principal lacks the server role.
    #[error(
        "--server-key {}: the key is {owner}'s, who does not hold the server role in the policy in force",
        path.display()
    )]
    ServerKeyRole {
        /// The key file.
        path: PathBuf,
        /// Whose it is.
        owner: String,
    },
    /// `--listen` is not an address.
    #[error("--listen {value:?}: expected an address such as 127.0.0.1:8080 ({source})")]
    Listen {
        /// What was given.
        value: String,
        /// Why it does not parse.
        #[source]
        source: std::net::AddrParseError,
    },
    /// The TLS certificate or key cannot be loaded.
    #[error("cannot load TLS certificate {} / key {}: {source}", cert.display(), key.display())]
    Tls {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The runtime or the server thread could not start.
    #[error("cannot {what}: {source}")]
    Runtime {
        /// What was being started.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server thread ended before it listened.
    #[error("the server stopped before it listened")]
    Stopped,
}
