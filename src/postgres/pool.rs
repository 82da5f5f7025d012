//! The pool: deadpool-postgres with a `Connect` that logs in with the current token.

use super::{
    claims::user_from_token,
    settings::{PgSettings, RootCert, SslMode},
};
use crate::{
    Clock, DefaultAzureCredential, Env, Error, Result, TokenCache, UserAssignedId,
    cache::CacheStats,
    clock::{SharedClock, SystemClock},
    error::ErrorKind,
};
use azure_core::{credentials::TokenCredential, time::Duration};
use deadpool_postgres::{
    ClientWrapper, Connect, Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Status,
    tokio_postgres::{self, Client, error::SqlState},
};
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use postgres_native_tls::MakeTlsConnector;
use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, OnceLock},
};
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// Most connections the pool holds. Defaults to 10.
pub const DEFAULT_MAX_SIZE: usize = 10;
/// How long `get` waits for a free connection. Defaults to 10 s.
pub const DEFAULT_WAIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long opening one connection (TLS + login) may take. Defaults to 10 s.
pub const DEFAULT_CREATE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long checking an idle connection may take. Defaults to 5 s.
pub const DEFAULT_RECYCLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Connections older than this are closed instead of reused, so the pool rolls onto fresh
/// tokens and rebalances. Defaults to 1 h.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::hours(1);

/// A deadpool-postgres pool whose every new connection logs in with a Microsoft Entra token.
///
/// - New connections take the current token from a shared [`TokenCache`] as their password;
///   checkouts of open connections never touch the credential, and open connections live on
///   when tokens rotate (PostgreSQL checks the token only at login).
/// - A login rejected with SQLSTATE 28P01 or 28000 invalidates the token, fetches a new one and
///   retries that connection once.
/// - When no token can be had, [`get`](Self::get) returns this crate's error naming the
///   credential failure ([`Error::is_credential`]), not "password authentication failed".
/// - Connections older than the max lifetime are replaced, measured on the injected clock.
///
/// # Examples
/// ```no_run
/// # async fn run() -> azure_passwordless::Result<()> {
/// use azure_passwordless::postgres::AzurePgPool;
///
/// // DBHOST, DBNAME (and optionally DBUSER, AZURE_CLIENT_ID) from the environment.
/// let pool = AzurePgPool::from_env()?;
/// let client = pool.get().await?;
/// let row = client.query_one("SELECT current_user", &[]).await.map_err(|e| e.to_string());
/// # let _ = row; Ok(()) }
/// ```
#[derive(Clone)]
pub struct AzurePgPool {
    pool: Pool,
    shared: Arc<Shared>,
}

struct Shared {
    /// `None` with a static password.
    cache: Option<TokenCache>,
    /// The PostgreSQL scope of `cache`: the hot path skips the scope lookup.
    scoped: Option<crate::ScopedTokenCache>,
    scope: String,
    credential_name: String,
    configured_user: Option<String>,
    derived_user: OnceLock<String>,
    static_password: Option<azure_core::credentials::Secret>,
    clock: SharedClock,
    max_lifetime_ms: Option<i64>,
    /// Creation time (Unix ms, injected clock) of each open connection, keyed by the address
    /// of its statement cache: deadpool's own metrics use the real clock.
    born: Mutex<HashMap<usize, i64>>,
    tls: Option<MakeTlsConnector>,
}

/// Pool and token-cache numbers together.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct PoolStatus {
    /// deadpool's status: size, available, waiting.
    pub pool: Status,
    /// The token cache's counters (all zero with a static password).
    pub tokens: CacheStats,
}

impl AzurePgPool {
    /// A pool from the process environment (see [`PgSettings::from_env`]) and a
    /// [`DefaultAzureCredential`]; `AZURE_POSTGRESQL_CLIENTID` picks the user-assigned identity
    /// when set. With `DBPASS`/`PGPASSWORD` set, logs in with that password instead (logged).
    ///
    /// # Errors
    /// Bad settings or credential configuration; see [`PgSettings::from_env`].
    pub fn from_env() -> Result<Self> {
        Self::from_env_with(&Env::process())
    }

    /// [`AzurePgPool::from_env`] reading from `env`.
    ///
    /// # Errors
    /// As [`AzurePgPool::from_env`].
    pub fn from_env_with(env: &Env) -> Result<Self> {
        let settings = PgSettings::from_env(env)?;
        let mut builder = Self::builder(settings.clone());
        if settings.password.is_none() {
            let mut credential = DefaultAzureCredential::builder().env(env.clone()).cloud(settings.cloud);
            if let Some(id) = &settings.user_assigned_client_id {
                credential = credential.user_assigned_id(UserAssignedId::ClientId(id.clone()));
            }
            builder = builder.default_credential(credential.build()?);
        }
        builder.build()
    }

    /// A builder for `settings`.
    pub fn builder(settings: PgSettings) -> AzurePgPoolBuilder {
        AzurePgPoolBuilder {
            settings,
            cache: None,
            credential_name: None,
            max_size: DEFAULT_MAX_SIZE,
            wait_timeout: Some(DEFAULT_WAIT_TIMEOUT),
            create_timeout: Some(DEFAULT_CREATE_TIMEOUT),
            recycle_timeout: Some(DEFAULT_RECYCLE_TIMEOUT),
            max_lifetime: Some(DEFAULT_MAX_LIFETIME),
            clock: Arc::new(SystemClock),
        }
    }

    /// A connection from the pool, opening one (with the current token) when none is idle.
    ///
    /// # Errors
    /// - [`ErrorKind::Credential`]: no token could be had; the message names the credential.
    /// - [`ErrorKind::Auth`]: the server rejected the login (after one retry with a new token).
    /// - [`ErrorKind::Timeout`]: no connection within the wait/create/recycle timeouts.
    /// - [`ErrorKind::Database`]/[`ErrorKind::Io`]: the server or the network failed.
    pub async fn get(&self) -> Result<deadpool_postgres::Object> {
        // Make sure a valid token exists before deadpool may open a connection: a credential
        // failure can only reach the caller, typed, from here (tokio_postgres::Error has no
        // public constructor, so it cannot travel through `Connect`).
        self.shared.token().await?;
        match self.pool.get().await {
            Ok(object) => Ok(object),
            Err(err) => Err(self.shared.pool_error(err).await),
        }
    }

    /// Pool and token-cache numbers together.
    pub fn status(&self) -> PoolStatus {
        PoolStatus {
            pool: self.pool.status(),
            tokens: self.shared.cache.as_ref().map(TokenCache::stats).unwrap_or_default(),
        }
    }

    /// The deadpool-postgres pool underneath, for what this type does not wrap (resize,
    /// retain, close). Note its `get` skips the typed credential check of [`AzurePgPool::get`].
    pub fn inner(&self) -> &Pool {
        &self.pool
    }

    /// The token cache, to share with other consumers (such as the blob uploader).
    pub fn token_cache(&self) -> Option<&TokenCache> {
        self.shared.cache.as_ref()
    }

    /// The database user: configured, or derived from the token once a connection was made.
    pub fn user(&self) -> Option<&str> {
        self.shared
            .configured_user
            .as_deref()
            .or_else(|| self.shared.derived_user.get().map(String::as_str))
    }
}

impl fmt::Debug for AzurePgPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzurePgPool")
            .field("status", &self.pool.status())
            .field("scope", &self.shared.scope)
            .field("credential", &self.shared.credential_name)
            .field("user", &self.user())
            .finish_non_exhaustive()
    }
}

/// Builder for [`AzurePgPool`].
#[must_use]
pub struct AzurePgPoolBuilder {
    settings: PgSettings,
    cache: Option<TokenCache>,
    credential_name: Option<String>,
    max_size: usize,
    wait_timeout: Option<std::time::Duration>,
    create_timeout: Option<std::time::Duration>,
    recycle_timeout: Option<std::time::Duration>,
    max_lifetime: Option<Duration>,
    clock: SharedClock,
}

impl fmt::Debug for AzurePgPoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzurePgPoolBuilder")
            .field("settings", &self.settings)
            .field("max_size", &self.max_size)
            .field("max_lifetime", &self.max_lifetime)
            .finish_non_exhaustive()
    }
}

impl AzurePgPoolBuilder {
    /// Tokens from this credential, through a new [`TokenCache`].
    pub fn credential(mut self, credential: Arc<dyn TokenCredential>) -> Self {
        self.credential_name = Some(type_name_of(&*credential));
        self.cache = Some(TokenCache::new(credential));
        self
    }

    /// Tokens from a [`DefaultAzureCredential`], through a cache whose `invalidate` also clears
    /// the credential's private caches (so a rejected token is really replaced).
    pub fn default_credential(mut self, credential: Arc<DefaultAzureCredential>) -> Self {
        self.credential_name = Some("DefaultAzureCredential".into());
        self.cache = Some(TokenCache::for_default_credential(credential));
        self
    }

    /// Tokens from this shared cache (for example the one the blob uploader uses).
    pub fn token_cache(mut self, cache: TokenCache) -> Self {
        self.credential_name = Some(type_name_of(&**cache.credential()));
        self.cache = Some(cache);
        self
    }

    /// Most connections. Defaults to [`DEFAULT_MAX_SIZE`].
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size;
        self
    }

    /// How long `get` waits for a free connection; `None` waits forever. Defaults to
    /// [`DEFAULT_WAIT_TIMEOUT`].
    pub fn wait_timeout(mut self, timeout: Option<std::time::Duration>) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// How long opening a connection may take. Defaults to [`DEFAULT_CREATE_TIMEOUT`].
    pub fn create_timeout(mut self, timeout: Option<std::time::Duration>) -> Self {
        self.create_timeout = timeout;
        self
    }

    /// How long checking an idle connection may take. Defaults to [`DEFAULT_RECYCLE_TIMEOUT`].
    pub fn recycle_timeout(mut self, timeout: Option<std::time::Duration>) -> Self {
        self.recycle_timeout = timeout;
        self
    }

    /// Connections older than this are replaced; `None` keeps them forever. Defaults to
    /// [`DEFAULT_MAX_LIFETIME`].
    pub fn max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.max_lifetime = lifetime;
        self
    }

    /// The clock measuring connection age. Defaults to [`SystemClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the pool. No connection is opened until the first `get`.
    ///
    /// # Errors
    /// Invalid settings, an unreadable or invalid CA file, no credential without a static
    /// password, or a zero `max_size`.
    pub fn build(self) -> Result<AzurePgPool> {
        let s = self.settings;
        s.validate()?;
        if self.max_size == 0 {
            return Err(Error::config("max_size must be at least 1"));
        }
        let cache = match (&s.password, self.cache) {
            (Some(_), _) => {
                info!(host = %s.host, user = ?s.user, "PostgreSQL pool uses a static password (local development mode), not Entra tokens");
                None
            }
            (None, Some(cache)) => Some(cache),
            (None, None) => {
                return Err(Error::config(
                    "the pool needs a credential (credential, default_credential or token_cache) or a static password",
                ));
            }
        };
        let tls = make_tls(&s)?;
        let mut pg = tokio_postgres::Config::new();
        pg.host(&s.host).port(s.port).dbname(&s.dbname);
        pg.ssl_mode(match s.ssl_mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            _ => tokio_postgres::config::SslMode::Require,
        });
        if let Some(name) = &s.application_name {
            pg.application_name(name);
        }
        if let Some(user) = &s.user {
            pg.user(user);
        }
        let scope = s.cloud.postgres_scope().to_owned();
        let shared = Arc::new(Shared {
            scoped: cache.as_ref().map(|c| c.scoped(&scope)),
            cache,
            scope,
            credential_name: self.credential_name.unwrap_or_else(|| "static password".into()),
            configured_user: s.user.clone(),
            derived_user: OnceLock::new(),
            static_password: s.password.clone(),
            clock: self.clock,
            max_lifetime_ms: self
                .max_lifetime
                .map(|d| d.whole_milliseconds().clamp(0, i64::MAX as i128) as i64),
            born: Mutex::new(HashMap::new()),
            tls,
        });
        let manager = Manager::from_connect(
            pg,
            TokenConnect(shared.clone()),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let on_create = shared.clone();
        let on_recycle = shared.clone();
        let pool = Pool::builder(manager)
            .max_size(self.max_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(self.wait_timeout)
            .create_timeout(self.create_timeout)
            .recycle_timeout(self.recycle_timeout)
            .post_create(Hook::sync_fn(move |client: &mut ClientWrapper, _| {
                on_create.born(client);
                Ok(())
            }))
            .pre_recycle(Hook::sync_fn(move |client: &mut ClientWrapper, _| {
                on_recycle.check_age(client)
            }))
            .build()
            .map_err(|e| Error::config("could not build the connection pool").with_source(e))?;
        Ok(AzurePgPool { pool, shared })
    }
}

/// The type name at the start of a `Debug` output: "DefaultAzureCredential { .. }" → the name.
fn type_name_of(credential: &dyn TokenCredential) -> String {
    let text = format!("{credential:?}");
    text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .next()
        .unwrap_or("credential")
        .to_owned()
}

fn make_tls(s: &PgSettings) -> Result<Option<MakeTlsConnector>> {
    if s.ssl_mode == SslMode::Disable {
        return Ok(None);
    }
    let mut builder = native_tls::TlsConnector::builder();
    if let Some(root) = &s.root_cert {
        let (pem, origin) = match root {
            RootCert::File { path, var } => {
                let origin = match var {
                    Some(var) => format!("{var} ({})", path.display()),
                    None => format!("root certificate file {}", path.display()),
                };
                let pem = std::fs::read(path).map_err(|e| {
                    Error::config(format!("cannot read {origin}: expected a PEM CA file")).with_source(e)
                })?;
                (pem, origin)
            }
            RootCert::Pem(pem) => (pem.clone(), "the root certificate".to_owned()),
        };
        let cert = native_tls::Certificate::from_pem(&pem)
            .map_err(|e| Error::config(format!("{origin} is not a PEM-encoded certificate")).with_source(e))?;
        builder.add_root_certificate(cert);
    }
    match s.ssl_mode {
        SslMode::Require => {
            builder
                .danger_accept_invalid_certs(true)
                .danger_accept_invalid_hostnames(true);
        }
        SslMode::VerifyCa => {
            builder.danger_accept_invalid_hostnames(true);
        }
        _ => {}
    }
    let connector = builder
        .build()
        .map_err(|e| Error::config("could not set up TLS for PostgreSQL").with_source(e))?;
    Ok(Some(MakeTlsConnector::new(connector)))
}

fn statement_cache_key(client: &ClientWrapper) -> usize {
    Arc::as_ptr(&client.statement_cache) as usize
}

fn is_login_rejected(err: &tokio_postgres::Error) -> bool {
    err.code()
        .is_some_and(|c| *c == SqlState::INVALID_PASSWORD || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
}

impl Shared {
    /// The current token (`None` with a static password), as the crate's typed error when the
    /// credential fails.
    async fn token(&self) -> Result<Option<crate::Token>> {
        let Some(scoped) = &self.scoped else { return Ok(None) };
        match scoped.get().await {
            Ok(token) => Ok(Some(token)),
            Err(err) => Err(Error::new(
                ErrorKind::Credential,
                format!("no Entra token for PostgreSQL from {}", self.credential_name),
            )
            .with_source(err)),
        }
    }

    fn user_for(&self, token: Option<&crate::Token>) -> Option<String> {
        if let Some(user) = &self.configured_user {
            return Some(user.clone());
        }
        if let Some(user) = self.derived_user.get() {
            return Some(user.clone());
        }
        let (name, claim) = user_from_token(token?.secret())?;
        if self.derived_user.set(name.clone()).is_ok() {
            info!(user = %name, claim, "no PostgreSQL user configured; using the identity named in the token");
        }
        Some(name)
    }

    async fn connect_once(
        &self,
        pg_config: &tokio_postgres::Config,
        token: Option<&crate::Token>,
    ) -> Result<(Client, JoinHandle<()>), tokio_postgres::Error> {
        let mut config = pg_config.clone();
        match (&self.static_password, token) {
            (Some(password), _) => config.password(password.secret()),
            // Without a token the server refuses the login with a real 28P01; `get` then
            // reports the credential failure instead.
            (None, Some(token)) => config.password(token.secret()),
            (None, None) => config.password(""),
        };
        if let Some(user) = self.user_for(token) {
            config.user(&user);
        }
        fn spawn<S, T>(connection: tokio_postgres::Connection<S, T>) -> JoinHandle<()>
        where
            S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
            T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        {
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    warn!(error = %e, "PostgreSQL connection closed with an error");
                }
            })
        }
        match &self.tls {
            Some(tls) => {
                let (client, connection) = config.connect(tls.clone()).await?;
                Ok((client, spawn(connection)))
            }
            None => {
                let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
                Ok((client, spawn(connection)))
            }
        }
    }

    async fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> Result<(Client, JoinHandle<()>), tokio_postgres::Error> {
        let token = self.token().await.ok().flatten();
        match self.connect_once(pg_config, token.as_ref()).await {
            Err(err) if is_login_rejected(&err) && self.cache.is_some() => {
                warn!(
                    sqlstate = err.code().map(|c| c.code()).unwrap_or_default(),
                    "PostgreSQL rejected the token; fetching a new one and retrying once"
                );
                if let Some(cache) = &self.cache {
                    cache.invalidate(&self.scope);
                }
                let fresh = self.token().await.ok().flatten();
                self.connect_once(pg_config, fresh.as_ref()).await
            }
            other => other,
        }
    }

    fn born(&self, client: &ClientWrapper) {
        if self.max_lifetime_ms.is_none() {
            return;
        }
        let now = self.clock.unix_millis();
        let mut born = self.born.lock();
        // Connections that died without being recycled leave entries behind; drop any older
        // than twice the lifetime so the map stays the size of the pool.
        if let Some(max) = self.max_lifetime_ms {
            born.retain(|_, t| now - *t <= max.saturating_mul(2));
        }
        born.insert(statement_cache_key(client), now);
    }

    fn check_age(&self, client: &ClientWrapper) -> Result<(), HookError> {
        let Some(max) = self.max_lifetime_ms else { return Ok(()) };
        let key = statement_cache_key(client);
        let now = self.clock.unix_millis();
        let mut born = self.born.lock();
        let created = *born.entry(key).or_insert(now);
        if now - created >= max {
            born.remove(&key);
            Err(HookError::message("connection reached its max lifetime"))
        } else {
            Ok(())
        }
    }

    async fn pool_error(&self, err: deadpool_postgres::PoolError) -> Error {
        use deadpool_postgres::PoolError;
        match err {
            PoolError::Timeout(kind) => {
                let which = match kind {
                    deadpool_postgres::TimeoutType::Wait => "wait (no free connection)",
                    deadpool_postgres::TimeoutType::Create => "create (opening a connection)",
                    deadpool_postgres::TimeoutType::Recycle => "recycle (checking an idle connection)",
                };
                Error::new(
                    ErrorKind::Timeout,
                    format!("no PostgreSQL connection within the pool's {which} timeout"),
                )
            }
            PoolError::Backend(e) => {
                if is_login_rejected(&e) {
                    // The token may have become unobtainable since `get` checked it.
                    if let Err(credential_error) = self.token().await {
                        return credential_error;
                    }
                    let user = self
                        .configured_user
                        .clone()
                        .or_else(|| self.derived_user.get().cloned());
                    let sqlstate = e.code().map(|c| c.code().to_owned()).unwrap_or_default();
                    let detail = e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_default();
                    return Error::new(
                        ErrorKind::Auth,
                        format!(
                            "PostgreSQL rejected the login of user {} (SQLSTATE {sqlstate}: {detail}); \
                             check that an Entra role exists for this identity",
                            user.as_deref().unwrap_or("(unknown)")
                        ),
                    )
                    .with_source(e);
                }
                let kind = if e.as_db_error().is_some() {
                    ErrorKind::Database
                } else {
                    ErrorKind::Io
                };
                let text = match e.as_db_error() {
                    Some(db) => format!("PostgreSQL error {}: {}", db.code().code(), db.message()),
                    None => "could not connect to PostgreSQL".to_owned(),
                };
                Error::new(kind, text).with_source(e)
            }
            PoolError::Closed => Error::new(ErrorKind::Io, "the connection pool is closed"),
            PoolError::NoRuntimeSpecified => Error::config("the connection pool has no runtime"),
            PoolError::PostCreateHook(e) => {
                Error::new(ErrorKind::Database, "a new connection failed its setup").with_source(e)
            }
        }
    }
}

/// deadpool's `Connect`: every new physical connection logs in with the current token.
struct TokenConnect(Arc<Shared>);

impl Connect for TokenConnect {
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> BoxFuture<'_, Result<(Client, JoinHandle<()>), tokio_postgres::Error>> {
        let pg_config = pg_config.clone();
        Box::pin(async move { self.0.connect(&pg_config).await })
    }
}
