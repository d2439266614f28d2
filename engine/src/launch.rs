//! [`launch`]: a whole ferrojob server in one call — the server core (store, schedules,
//! dispatch, transport listener) plus the HTTP OpenAPI, with the admin token resolved.
//!
//! This is what `ferrojob-server`, `ferrojob demo` and `ferrojob bench dispatch` run; the
//! binaries only turn flags, environment and a TOML file into a [`LaunchConfig`].
//!
//! Admin token: the configured one if any; otherwise the one in `DIR/admin.token` if that file
//! exists (so a restarted server keeps its token); otherwise a fresh random token written to
//! `DIR/admin.token` (mode 0600 on Unix). An ephemeral server without a data dir only logs
//! that it generated a token, and [`RunningServer::admin_token`] hands it to the caller.
//!
//! Files: the data dir is made 0700 and the token file 0600 (on Unix, whatever the umask,
//! including ones an earlier version left more open); the store keeps its own files 0600.
//!
//! A store damaged in the middle of its log (after a power loss on a disk that lies about
//! fsync, say) makes the start fail with [`LaunchError::CorruptStore`], which names the way
//! out: `--salvage` ([`ServerConfig::recovery`](crate::server::ServerConfig::recovery)).

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rand::RngCore;

use crate::api::Api;
use crate::http::{ApiRateLimit, ConnectionRateLimit, FailedLoginLimit, HttpConfig, HttpServer};
use crate::server::{ServerConfig, ServerCore, StoreChoice};

/// Name of the admin token file in the data dir.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Everything [`launch`] needs.
#[derive(Clone, Debug)]
pub struct LaunchConfig {
    /// The data dir: the LogStore lives in `DIR/store`, the admin token in `DIR/admin.token`.
    /// `None` only with `ephemeral`.
    pub data_dir: Option<PathBuf>,
    /// Keep everything in memory (MemoryStore); nothing survives the process.
    pub ephemeral: bool,
    /// HTTP OpenAPI address.
    pub http: SocketAddr,
    /// Transport (worker) address.
    pub listen: SocketAddr,
    /// The admin token; `None` = read or generate (see the module docs).
    pub admin_token: Option<String>,
    /// Largest accepted HTTP request body, bytes.
    pub max_body_bytes: usize,
    /// Mark the web console's cookies `Secure` (browsers reach the server over TLS through a
    /// proxy); see [`HttpConfig::secure_cookies`].
    pub secure_cookies: bool,
    /// Requests a second per app on the OpenAPI; `None` = no limit. Default
    /// [`ApiRateLimit::default`] (1000 a second after a burst of 2000); see
    /// [`HttpConfig::api_rate`].
    pub api_rate: Option<ApiRateLimit>,
    /// Failed sign-ins allowed per source address; `None` = no limit. Default
    /// [`FailedLoginLimit::default`] (10 a minute after 20); see
    /// [`HttpConfig::failed_logins`].
    pub failed_logins: Option<FailedLoginLimit>,
    /// New HTTP connections per source address; `None` = no limit. Default
    /// [`ConnectionRateLimit::default`] (100 a second after 200); see
    /// [`HttpConfig::connection_rate`].
    pub http_connection_rate: Option<ConnectionRateLimit>,
    /// Accept each app's worker secret as an `admin` API token of that app: the
    /// compatibility mode for clients written before API tokens
    /// ([`HttpConfig::app_secret_tokens`]). Default false.
    pub app_secret_tokens: bool,
    /// TLS for both ports (the worker port and HTTP) with one certificate; `None` serves
    /// plain HTTP, and the worker port as `core.net.server_tls` says. A warning is logged for
    /// each plain port not on a loopback address.
    pub tls: Option<ferrojob_transport::tls::ServerTls>,
    /// On a server of a cluster: the base URL the other servers reach this one's HTTP API at
    /// (`http://host:port`), announced in the membership so that they can forward the
    /// requests of the apps this server owns. `None` (the default): `http://` and the bound
    /// HTTP address, unless that address is unspecified (`0.0.0.0`, `[::]`) or HTTP is
    /// served over TLS; then nothing is announced and the other servers answer this
    /// server's apps 503 instead of forwarding. `--http-advertise`.
    pub http_advertise: Option<String>,
    /// The core's settings; `store` and `listen` are overwritten from the fields above, and
    /// `net.server_tls` from `tls` when that is set.
    pub core: ServerConfig,
}

impl LaunchConfig {
    /// Defaults: data dir `dir`, HTTP on `http`, transport on `listen`, core defaults.
    pub fn new(data_dir: Option<PathBuf>, http: SocketAddr, listen: SocketAddr) -> LaunchConfig {
        let store = match &data_dir {
            Some(dir) => StoreChoice::Log {
                dir: dir.join("store"),
            },
            None => StoreChoice::Memory,
        };
        LaunchConfig {
            ephemeral: data_dir.is_none(),
            data_dir,
            http,
            listen,
            admin_token: None,
            max_body_bytes: 1 << 20,
            secure_cookies: false,
            api_rate: Some(ApiRateLimit::default()),
            failed_logins: Some(FailedLoginLimit::default()),
            http_connection_rate: Some(ConnectionRateLimit::default()),
            app_secret_tokens: false,
            tls: None,
            http_advertise: None,
            core: ServerConfig::new(store, listen),
        }
    }
}

/// Why [`launch`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// Neither a data dir nor `ephemeral`.
    #[error("a data dir is required unless the server is ephemeral")]
    NoDataDir,
    /// The data dir or the token file could not be created or read.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The admin token is empty or has whitespace inside.
    #[error("invalid admin token: {0}")]
    BadToken(&'static str),
    /// The store is damaged before intact data and the recovery mode is strict.
    #[error(
        "server core: {0}\nThe store is damaged before intact data, so the server refuses to \
         start rather than silently drop records. `ferrojob store check DIR` lists the damaged \
         ranges without changing anything. Starting with --salvage (FERROJOB_SALVAGE=true, or \
         `salvage = true` in the config file) keeps every intact record before the damage and \
         moves the damaged part aside into `*.log.corrupt*` files next to the segments \
         (nothing is deleted)."
    )]
    CorruptStore(crate::server::ServerError),
    /// The server core failed to start (store, listener).
    #[error("server core: {0}")]
    Core(#[from] crate::server::ServerError),
    /// The HTTP listener failed to start.
    #[error("http: {0}")]
    Http(#[from] crate::http::HttpError),
    /// `http_advertise` is not an `http://` URL of at most 256 bytes.
    #[error("invalid --http-advertise {0:?}: give the http://host:port the other servers of the cluster reach this one's HTTP API at")]
    BadAdvertise(String),
}

/// The HTTP URL a server of a cluster announces (see [`LaunchConfig::http_advertise`]).
fn advertised_url(
    given: Option<&str>,
    bound: SocketAddr,
    tls: bool,
) -> Result<Option<String>, LaunchError> {
    if let Some(url) = given {
        let url = url.trim_end_matches('/');
        let ok = url.len() <= 256
            && url
                .strip_prefix("http://")
                .is_some_and(|rest| !rest.is_empty() && !rest.contains(['/', '?', '#', ' ']));
        return if ok {
            Ok(Some(url.to_owned()))
        } else {
            Err(LaunchError::BadAdvertise(url.to_owned()))
        };
    }
    if tls {
        tracing::warn!("HTTP is served over TLS: this server's apps are not forwarded to it by the other servers of the cluster (they answer 503)");
        return Ok(None);
    }
    if bound.ip().is_unspecified() {
        tracing::warn!(%bound, "HTTP listens on an unspecified address: set --http-advertise so that the other servers of the cluster can forward this server's apps to it (they answer 503 meanwhile)");
        return Ok(None);
    }
    Ok(Some(format!("http://{bound}")))
}

/// A running server: core + HTTP.
#[derive(Debug)]
pub struct RunningServer {
    core: ServerCore,
    http: HttpServer,
    admin_token: String,
    token_file: Option<PathBuf>,
}

impl RunningServer {
    /// The HTTP OpenAPI's bound address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// The transport's bound address (workers connect here).
    pub fn transport_addr(&self) -> SocketAddr {
        self.core.transport_addr()
    }

    /// The admin token.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Where the admin token is stored, if it is.
    pub fn token_file(&self) -> Option<&Path> {
        self.token_file.as_deref()
    }

    /// The in-process API (what the HTTP routes call).
    pub fn api(&self) -> Arc<dyn Api> {
        self.core.api()
    }

    /// Stops HTTP first (no new requests), then the core (flushes the store).
    pub async fn shutdown(self) {
        self.http.shutdown().await;
        self.core.shutdown().await;
    }
}

fn check_token(token: &str) -> Result<(), LaunchError> {
    if token.is_empty() {
        return Err(LaunchError::BadToken("it is empty"));
    }
    if token.chars().any(char::is_whitespace) {
        return Err(LaunchError::BadToken("it contains whitespace"));
    }
    Ok(())
}

fn generate_token() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Mode of the data dir.
#[cfg(unix)]
const DATA_DIR_MODE: u32 = 0o700;
/// Mode of the admin token file.
#[cfg(unix)]
const TOKEN_FILE_MODE: u32 = 0o600;

/// Sets `path`'s permission bits to `mode` unless they are exactly that already.
#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::metadata(path)?.permissions().mode() & 0o7777 != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Creates the data dir (and missing parents) private to the owner, and makes an existing
/// one private.
fn create_data_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DATA_DIR_MODE);
    }
    builder.create(dir)?;
    #[cfg(unix)]
    restrict(dir, DATA_DIR_MODE)?;
    Ok(())
}

fn write_token(path: &Path, token: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(TOKEN_FILE_MODE);
    }
    let mut file = options.open(path)?;
    std::io::Write::write_all(&mut file, format!("{token}\n").as_bytes())?;
    file.sync_all()
}

/// Resolves the admin token (see the module docs) and where it is stored.
fn resolve_token(
    configured: Option<&str>,
    data_dir: Option<&Path>,
) -> Result<(String, Option<PathBuf>), LaunchError> {
    if let Some(token) = configured {
        check_token(token)?;
        return Ok((token.to_owned(), None));
    }
    let Some(dir) = data_dir else {
        let token = generate_token();
        tracing::warn!(
            "ephemeral server without a data dir: generated an admin token (not stored)"
        );
        return Ok((token, None));
    };
    let path = dir.join(ADMIN_TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let token = text.trim().to_owned();
            check_token(&token)?;
            #[cfg(unix)]
            restrict(&path, TOKEN_FILE_MODE).map_err(|source| LaunchError::Io {
                what: "making private the admin token file",
                path: path.clone(),
                source,
            })?;
            tracing::info!(path = %path.display(), "admin token read from file");
            Ok((token, Some(path)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = generate_token();
            write_token(&path, &token).map_err(|source| LaunchError::Io {
                what: "writing the admin token to",
                path: path.clone(),
                source,
            })?;
            tracing::warn!(path = %path.display(), "generated an admin token and wrote it to the file");
            Ok((token, Some(path)))
        }
        Err(source) => Err(LaunchError::Io {
            what: "reading the admin token from",
            path,
            source,
        }),
    }
}

/// Starts the server core and the HTTP OpenAPI.
pub async fn launch(mut config: LaunchConfig) -> Result<RunningServer, LaunchError> {
    if let Some(dir) = &config.data_dir {
        create_data_dir(dir).map_err(|source| LaunchError::Io {
            what: "creating the data dir",
            path: dir.clone(),
            source,
        })?;
    } else if !config.ephemeral {
        return Err(LaunchError::NoDataDir);
    }
    config.core.store = match (&config.core.store, &config.data_dir, config.ephemeral) {
        // A database keeps the state; the data dir keeps the admin token.
        #[cfg(feature = "postgres")]
        (StoreChoice::Postgres { url, options }, _, _) => StoreChoice::Postgres {
            url: url.clone(),
            options: *options,
        },
        (_, Some(dir), false) => StoreChoice::Log {
            dir: dir.join("store"),
        },
        _ => StoreChoice::Memory,
    };
    config.core.listen = config.listen;
    if let Some(tls) = &config.tls {
        config.core.net.server_tls = Some(tls.clone());
    }
    let plain = [
        (
            "worker",
            config.listen,
            config.core.net.server_tls.is_none(),
        ),
        ("HTTP", config.http, config.tls.is_none()),
    ];
    for (port, addr, plain) in plain {
        if plain && !addr.ip().is_loopback() {
            tracing::warn!(
                port,
                %addr,
                "listening without TLS on a non-loopback address: app secrets, tokens and job \
                 messages cross the network in clear text and can be altered on the way"
            );
        }
    }
    let (admin_token, token_file) =
        resolve_token(config.admin_token.as_deref(), config.data_dir.as_deref())?;
    // Bound first: a server of a cluster announces the address it got.
    let http_listener = tokio::net::TcpListener::bind(config.http)
        .await
        .map_err(|source| crate::http::HttpError::Bind {
            addr: config.http,
            source,
        })?;
    #[cfg(feature = "postgres")]
    if let Some(member) = &mut config.core.cluster {
        let bound = http_listener
            .local_addr()
            .map_err(|source| crate::http::HttpError::Bind {
                addr: config.http,
                source,
            })?;
        member.http_url = advertised_url(
            config.http_advertise.as_deref(),
            bound,
            config.tls.is_some(),
        )?;
    }
    let strict = config.core.recovery == ferrojob_store::RecoveryMode::Strict;
    let core = match ServerCore::start(config.core).await {
        Ok(core) => core,
        Err(crate::server::ServerError::Store(e)) if strict && e.is_corruption() => {
            return Err(LaunchError::CorruptStore(e.into()));
        }
        Err(e) => return Err(e.into()),
    };
    let http_config = HttpConfig {
        max_body_bytes: config.max_body_bytes,
        // Served over HTTPS, the console's cookies never go out on plain HTTP.
        secure_cookies: config.secure_cookies || config.tls.is_some(),
        api_rate: config.api_rate,
        failed_logins: config.failed_logins,
        connection_rate: config.http_connection_rate,
        app_secret_tokens: config.app_secret_tokens,
        tls: config.tls.clone(),
        #[cfg(feature = "postgres")]
        forwarding: core.forwarding(),
        ..HttpConfig::new(admin_token.clone())
    };
    let http = match HttpServer::serve(http_listener, core.api(), http_config) {
        Ok(h) => h,
        Err(e) => {
            core.shutdown().await;
            return Err(e.into());
        }
    };
    tracing::info!(
        http = %http.local_addr(),
        transport = %core.transport_addr(),
        "ferrojob server listening"
    );
    Ok(RunningServer {
        core,
        http,
        admin_token,
        token_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertised_http_url() {
        let bound: SocketAddr = "10.0.0.7:7700".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:7700".parse().unwrap();
        let url = |given, bound, tls| advertised_url(given, bound, tls).unwrap();
        assert_eq!(
            url(None, bound, false).as_deref(),
            Some("http://10.0.0.7:7700")
        );
        assert_eq!(url(None, any, false), None);
        assert_eq!(url(None, bound, true), None);
        assert_eq!(
            url(Some("http://sched-a.internal:7700/"), any, false).as_deref(),
            Some("http://sched-a.internal:7700")
        );
        for bad in [
            "sched-a:7700",
            "https://a:1",
            "http://",
            "http://a:1/v1",
            "http://a b",
        ] {
            assert!(advertised_url(Some(bad), bound, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_generated_token_is_written_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (first, path) = resolve_token(None, Some(dir.path())).unwrap();
        let path = path.unwrap();
        assert_eq!(path, dir.path().join(ADMIN_TOKEN_FILE));
        assert_eq!(first.len(), 48);
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the token file is private: {mode:o}");
        }
        let (again, _) = resolve_token(None, Some(dir.path())).unwrap();
        assert_eq!(again, first, "a restarted server keeps its token");
    }

    /// A power-loss image with garbage before intact data (no hint: the server never closed):
    /// strict refuses and names `--salvage`; salvage starts and keeps every intact record.
    #[tokio::test]
    async fn a_store_damaged_mid_log_is_refused_unless_salvaged() {
        use crate::api::CreateApp;
        use ferrojob_store::{LogOptions, LogStore, RecoveryMode, Store};

        /// `launch`, retried while the store is still locked by the previous server: tasks
        /// it spawned may hold the store for a moment after `shutdown` returns.
        async fn relaunch(config: LaunchConfig) -> Result<RunningServer, LaunchError> {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                match launch(config.clone()).await {
                    Err(LaunchError::Core(crate::server::ServerError::Store(
                        ferrojob_store::StoreError::Locked { .. },
                    ))) if std::time::Instant::now() < deadline => {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                    other => return other,
                }
            }
        }

        let dir = tempfile::tempdir().unwrap();
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let config = || LaunchConfig::new(Some(dir.path().to_path_buf()), local, local);
        let server = launch(config()).await.unwrap();
        let names: Vec<String> = (0..40).map(|i| format!("app-{i:02}")).collect();
        for name in &names {
            server
                .api()
                .create_app(CreateApp {
                    name: name.clone(),
                    secret: format!("secret-of-app-{name}"),
                })
                .await
                .unwrap();
        }
        server.shutdown().await;
        let store_dir = dir.path().join("store");
        std::fs::remove_file(store_dir.join("hint")).unwrap();
        let segment = store_dir.join("00000001.log");
        let mut bytes = std::fs::read(&segment).unwrap();
        let hole = bytes.len() / 2;
        for b in bytes.iter_mut().skip(hole).take(8) {
            *b ^= 0x5A;
        }
        std::fs::write(&segment, &bytes).unwrap();
        let check = LogStore::check(&store_dir).unwrap();
        assert!(!check.is_intact(), "{check:?}");

        let err = relaunch(config()).await.unwrap_err();
        assert!(matches!(err, LaunchError::CorruptStore(_)), "{err}");
        let message = err.to_string();
        assert!(message.contains("00000001.log"), "{message}");
        assert!(
            message.contains("--salvage") && message.contains("keeps every intact record"),
            "{message}"
        );

        let mut salvage = config();
        salvage.core.recovery = RecoveryMode::Salvage;
        let server = relaunch(salvage).await.unwrap();
        let api = server.api();
        let kept: Vec<&String> = names
            .iter()
            .filter(|n| api.resolve_app(n).is_ok())
            .collect();
        drop(api);
        assert!(
            !kept.is_empty() && kept.len() < names.len(),
            "kept {kept:?}"
        );
        // What survives is exactly the apps created before the hole.
        assert_eq!(kept, names.iter().take(kept.len()).collect::<Vec<_>>());
        server.shutdown().await;
        // Every intact record: the salvaged store holds what the check found intact.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let store = loop {
            match LogStore::open(&store_dir, LogOptions::default()) {
                Err(ferrojob_store::StoreError::Locked { .. })
                    if std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                other => break other.unwrap(),
            }
        };
        let keys: usize = store.tables().iter().map(|t| store.count(t)).sum();
        assert!(keys >= check.keys, "{keys} < {}", check.keys);
        assert!(std::fs::read_dir(&store_dir).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".corrupt")));
    }

    #[test]
    fn a_configured_token_wins_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (t, path) = resolve_token(Some("given"), Some(dir.path())).unwrap();
        assert_eq!((t.as_str(), path), ("given", None));
        assert!(!dir.path().join(ADMIN_TOKEN_FILE).exists());
        assert!(resolve_token(Some(""), None).is_err());
        assert!(resolve_token(Some("a b"), None).is_err());
        std::fs::write(dir.path().join(ADMIN_TOKEN_FILE), "\n").unwrap();
        assert!(
            resolve_token(None, Some(dir.path())).is_err(),
            "an empty token file"
        );
        let (ephemeral, none) = resolve_token(None, None).unwrap();
        assert!(!ephemeral.is_empty() && none.is_none());
    }
}
