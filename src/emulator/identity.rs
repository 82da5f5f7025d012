//! A local stand-in for App Service's managed identity endpoint.
//!
//! Request and response follow
//! <https://learn.microsoft.com/azure/app-service/overview-managed-identity#rest-endpoint-reference>:
//! `GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=...&client_id=...` with the
//! `X-IDENTITY-HEADER` secret; the answer carries `access_token`, `expires_on` (epoch seconds
//! as a string), `resource` and `token_type`.

use crate::{
    Clock, Error, Result,
    clock::{SharedClock, SystemClock},
    error::ErrorKind,
};
use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use azure_core::{
    credentials::{AccessToken, TokenCredential, TokenRequestOptions},
    time::{Duration, OffsetDateTime},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use parking_lot::Mutex;
use serde_json::json;
use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};
use tokio::sync::{oneshot, watch};

/// The tenant id in emulated tokens.
pub const EMULATOR_TENANT_ID: &str = "00000000-0000-4000-8000-00000000a2e0";
/// The subscription in emulated `xms_mirid` claims.
const SUBSCRIPTION: &str = "00000000-0000-4000-8000-00000000501b";
/// Token lifetime unless set. Defaults to 24 h, the longest managed identity tokens live.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::hours(24);

/// A running local managed identity endpoint (App Service flavour) on 127.0.0.1.
///
/// It issues JWT-shaped tokens with `iat`, `nbf`, `exp`, `iss = https://sts.windows.net/<tenant>/`,
/// `aud` = the requested resource, and `oid`/`xms_mirid` naming the identity. Like the real
/// endpoint it hands out the same token for an identity and resource until that token is past
/// half its life (or [`rotate`](Self::rotate) is called). It can be told to change the
/// lifetime, add latency, fail, hold requests, or reject an identity, and it counts requests.
///
/// The server stops when the handle drops.
///
/// # Examples
/// ```no_run
/// # async fn run() -> azure_passwordless::Result<()> {
/// use azure_passwordless::emulator::IdentityEndpoint;
///
/// let endpoint = IdentityEndpoint::builder().identity_name("restaurant-app").start().await?;
/// // A child process (or this process, before any thread starts) gets:
/// for (name, value) in endpoint.env_vars() {
///     println!("{name}={value}");
/// }
/// # Ok(()) }
/// ```
pub struct IdentityEndpoint {
    addr: SocketAddr,
    state: Arc<EndpointState>,
    shutdown: Option<oneshot::Sender<()>>,
}

struct EndpointState {
    clock: SharedClock,
    header_secret: String,
    identity_name: String,
    control: Mutex<Control>,
    held: watch::Sender<bool>,
    requests: AtomicU64,
    waiting: AtomicU64,
    issued: Mutex<Vec<String>>,
    client_ids: Mutex<Vec<Option<String>>>,
}

struct Control {
    lifetime: Duration,
    latency: std::time::Duration,
    failure: Option<(StatusCode, String)>,
    rejected: HashSet<Option<String>>,
    current: HashMap<(String, Option<String>), Issued>,
}

#[derive(Clone)]
struct Issued {
    token: String,
    issued_at: OffsetDateTime,
    expires_on: OffsetDateTime,
}

/// Builder for [`IdentityEndpoint`].
#[must_use]
pub struct IdentityEndpointBuilder {
    clock: SharedClock,
    lifetime: Duration,
    identity_name: String,
    header_secret: Option<String>,
    listener: Option<std::net::TcpListener>,
}

impl fmt::Debug for IdentityEndpointBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityEndpointBuilder")
            .field("lifetime", &self.lifetime)
            .field("identity_name", &self.identity_name)
            .finish_non_exhaustive()
    }
}

impl IdentityEndpointBuilder {
    /// The clock that stamps `iat`/`exp`. Defaults to [`SystemClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Token lifetime. Defaults to [`DEFAULT_TOKEN_LIFETIME`].
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// The managed identity's name, as it appears in `xms_mirid` (and so becomes the
    /// PostgreSQL user). Defaults to `azure-passwordless-identity`.
    pub fn identity_name(mut self, name: impl Into<String>) -> Self {
        self.identity_name = name.into();
        self
    }

    /// The `IDENTITY_HEADER` secret callers must send. Defaults to a random value.
    pub fn header_secret(mut self, secret: impl Into<String>) -> Self {
        self.header_secret = Some(secret.into());
        self
    }

    /// Serve on this already-bound listener instead of a fresh port. Lets a test binary learn
    /// the port, set `IDENTITY_ENDPOINT` in its process environment, and only then start threads.
    pub fn listener(mut self, listener: std::net::TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Starts serving. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`ErrorKind::Emulator`] when the port cannot be bound.
    pub async fn start(self) -> Result<IdentityEndpoint> {
        let emulator_err =
            |what: &'static str| move |e: std::io::Error| Error::new(ErrorKind::Emulator, what).with_source(e);
        let listener = match self.listener {
            Some(std_listener) => {
                std_listener
                    .set_nonblocking(true)
                    .map_err(emulator_err("cannot use the given listener"))?;
                tokio::net::TcpListener::from_std(std_listener)
                    .map_err(emulator_err("cannot use the given listener"))?
            }
            None => tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(emulator_err("cannot bind the identity endpoint on 127.0.0.1"))?,
        };
        let addr = listener.local_addr().map_err(emulator_err("listener has no address"))?;
        let state = Arc::new(EndpointState {
            clock: self.clock,
            header_secret: self
                .header_secret
                .unwrap_or_else(|| format!("emulated-identity-header-{:016x}", fastrand::u64(..))),
            identity_name: self.identity_name,
            control: Mutex::new(Control {
                lifetime: self.lifetime,
                latency: std::time::Duration::ZERO,
                failure: None,
                rejected: HashSet::new(),
                current: HashMap::new(),
            }),
            held: watch::channel(false).0,
            requests: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            issued: Mutex::new(Vec::new()),
            client_ids: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/msi/token", get(token_handler))
            .with_state(state.clone());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        tracing::debug!(%addr, "local identity endpoint started");
        Ok(IdentityEndpoint {
            addr,
            state,
            shutdown: Some(tx),
        })
    }
}

impl IdentityEndpoint {
    /// A builder with the defaults.
    pub fn builder() -> IdentityEndpointBuilder {
        IdentityEndpointBuilder {
            clock: Arc::new(SystemClock),
            lifetime: DEFAULT_TOKEN_LIFETIME,
            identity_name: "azure-passwordless-identity".into(),
            header_secret: None,
            listener: None,
        }
    }

    /// The value for `IDENTITY_ENDPOINT`.
    pub fn url(&self) -> String {
        format!("http://{}/msi/token", self.addr)
    }

    /// The value for `IDENTITY_HEADER`.
    pub fn header_secret(&self) -> &str {
        &self.state.header_secret
    }

    /// `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` with their values, for an [`Env`](crate::Env)
    /// or a child process's environment.
    pub fn env_vars(&self) -> [(&'static str, String); 2] {
        [
            ("IDENTITY_ENDPOINT", self.url()),
            ("IDENTITY_HEADER", self.state.header_secret.clone()),
        ]
    }

    /// The identity's name (the last segment of `xms_mirid`).
    pub fn identity_name(&self) -> &str {
        &self.state.identity_name
    }

    /// Sets the lifetime of tokens issued from now on.
    pub fn set_lifetime(&self, lifetime: Duration) {
        self.state.control.lock().lifetime = lifetime;
    }

    /// Adds real latency to every answer (for benchmarks and realism, not for tests of timing).
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.state.control.lock().latency = latency;
    }

    /// Makes every request fail with `status` and `message`, until [`recover`](Self::recover).
    pub fn fail_with(&self, status: u16, message: impl Into<String>) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self.state.control.lock().failure = Some((status, message.into()));
    }

    /// Stops failing.
    pub fn recover(&self) {
        self.state.control.lock().failure = None;
    }

    /// Answers requests for this identity (a client id, or `None` for system-assigned) with
    /// HTTP 400, as App Service does for an identity not assigned to the app.
    pub fn reject_identity(&self, client_id: Option<&str>) {
        self.state.control.lock().rejected.insert(client_id.map(str::to_owned));
    }

    /// Makes requests wait until [`release`](Self::release). Lets a test hold a fetch in flight.
    pub fn hold(&self) {
        self.state.held.send_replace(true);
    }

    /// Lets held requests through.
    pub fn release(&self) {
        self.state.held.send_replace(false);
    }

    /// Requests currently held by [`hold`](Self::hold).
    pub fn waiting(&self) -> u64 {
        self.state.waiting.load(Ordering::SeqCst)
    }

    /// Forgets every current token, so the next request for any identity gets a new one.
    pub fn rotate(&self) {
        self.state.control.lock().current.clear();
    }

    /// The token this endpoint currently issues for `resource` (a scope, with or without
    /// `/.default`) and identity, issuing one if none is current.
    pub fn current_token(&self, resource: &str, client_id: Option<&str>) -> String {
        self.state
            .issue(resource.strip_suffix("/.default").unwrap_or(resource), client_id)
            .token
    }

    /// Requests received (token requests, including rejected and failed ones).
    pub fn request_count(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// The `client_id` of every token request, in order (`None` for system-assigned).
    pub fn client_ids(&self) -> Vec<Option<String>> {
        self.state.client_ids.lock().clone()
    }

    /// Every token issued so far: lets a test check that none leaks into logs.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state.issued.lock().clone()
    }

    /// A credential that calls this endpoint directly over HTTP, with no cache of its own.
    ///
    /// For driving a [`TokenCache`](crate::TokenCache) on an injected clock: azure_identity's
    /// `ManagedIdentityCredential` keeps a private cache on the system clock.
    pub fn credential(&self, client_id: Option<&str>) -> Arc<EndpointCredential> {
        Arc::new(EndpointCredential {
            url: self.url(),
            header_secret: self.state.header_secret.clone(),
            client_id: client_id.map(str::to_owned),
            http: reqwest::Client::new(),
        })
    }
}

impl fmt::Debug for IdentityEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityEndpoint")
            .field("url", &self.url())
            .field("identity_name", &self.state.identity_name)
            .field("requests", &self.request_count())
            .finish_non_exhaustive()
    }
}

impl Drop for IdentityEndpoint {
    fn drop(&mut self) {
        self.release();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl EndpointState {
    fn issue(&self, resource: &str, client_id: Option<&str>) -> Issued {
        let now = self.clock.now();
        let mut control = self.control.lock();
        let key = (resource.to_owned(), client_id.map(str::to_owned));
        if let Some(current) = control.current.get(&key) {
            let half_life = (current.expires_on - current.issued_at) / 2;
            if now < current.issued_at + half_life {
                return current.clone();
            }
        }
        let expires_on = now + control.lifetime;
        let token = self.mint(resource, client_id, now, expires_on);
        let issued = Issued {
            token,
            issued_at: now,
            expires_on,
        };
        control.current.insert(key, issued.clone());
        self.issued.lock().push(issued.token.clone());
        issued
    }

    fn mint(&self, resource: &str, client_id: Option<&str>, now: OffsetDateTime, exp: OffsetDateTime) -> String {
        let mirid = match client_id {
            Some(_) => format!(
                "/subscriptions/{SUBSCRIPTION}/resourcegroups/emulator/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}",
                self.identity_name
            ),
            None => format!(
                "/subscriptions/{SUBSCRIPTION}/resourcegroups/emulator/providers/Microsoft.Web/sites/{}",
                self.identity_name
            ),
        };
        let oid = pseudo_uuid(&mirid);
        let app_id = client_id
            .map(str::to_owned)
            .unwrap_or_else(|| pseudo_uuid(&format!("app:{mirid}")));
        let header = json!({"typ": "JWT", "alg": "RS256", "kid": "emulator"});
        let claims = json!({
            "aud": resource,
            "iss": format!("https://sts.windows.net/{EMULATOR_TENANT_ID}/"),
            "iat": now.unix_timestamp(),
            "nbf": now.unix_timestamp(),
            "exp": exp.unix_timestamp(),
            "appid": app_id,
            "appidacr": "2",
            "idtyp": "app",
            "oid": oid,
            "sub": oid,
            "tid": EMULATOR_TENANT_ID,
            "xms_mirid": mirid,
            "uti": format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
            "ver": "1.0",
        });
        let signature: Vec<u8> = (0..256).map(|_| fastrand::u8(..)).collect();
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }
}

/// A stable, UUID-shaped id derived from a name (FNV-1a; not cryptographic, only stable).
fn pseudo_uuid(name: &str) -> String {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x8422_2325_cbf2_9ce4;
    for byte in name.bytes() {
        a = (a ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        b = (b ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(7);
    }
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

async fn token_handler(
    State(state): State<Arc<EndpointState>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let client_id = query.get("client_id").cloned();
    state.client_ids.lock().push(client_id.clone());

    let mut held = state.held.subscribe();
    if *held.borrow() {
        state.waiting.fetch_add(1, Ordering::SeqCst);
        let _ = held.wait_for(|h| !*h).await;
        state.waiting.fetch_sub(1, Ordering::SeqCst);
    }
    let latency = state.control.lock().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }

    let secret_ok = headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == state.header_secret);
    if !secret_ok {
        return error(StatusCode::UNAUTHORIZED, "missing or wrong X-IDENTITY-HEADER");
    }
    if query.get("api-version").map(String::as_str) != Some("2019-08-01") {
        return error(StatusCode::BAD_REQUEST, "api-version must be 2019-08-01");
    }
    let Some(resource) = query.get("resource").filter(|r| !r.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "resource is required");
    };
    let (failure, rejected) = {
        let control = state.control.lock();
        (control.failure.clone(), control.rejected.contains(&client_id))
    };
    if let Some((status, message)) = failure {
        return error(status, &message);
    }
    if rejected {
        return error(
            StatusCode::BAD_REQUEST,
            "Identity not found: the requested identity has not been assigned to this resource",
        );
    }
    let issued = state.issue(resource, client_id.as_deref());
    Json(json!({
        "access_token": issued.token,
        "expires_on": issued.expires_on.unix_timestamp().to_string(),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": client_id.unwrap_or_default(),
    }))
    .into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"error": "invalid_request", "error_description": message})),
    )
        .into_response()
}

/// A credential calling an [`IdentityEndpoint`] directly, with no cache. See
/// [`IdentityEndpoint::credential`].
pub struct EndpointCredential {
    url: String,
    header_secret: String,
    client_id: Option<String>,
    http: reqwest::Client,
}

impl fmt::Debug for EndpointCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointCredential")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl TokenCredential for EndpointCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        use azure_core::error::ErrorKind as Kind;
        let [scope] = scopes else {
            return Err(azure_core::Error::with_message(
                Kind::Credential,
                "exactly one scope is required",
            ));
        };
        let resource = scope.strip_suffix("/.default").unwrap_or(scope);
        let mut query = vec![("api-version", "2019-08-01"), ("resource", resource)];
        if let Some(id) = &self.client_id {
            query.push(("client_id", id));
        }
        let response = self
            .http
            .get(&self.url)
            .query(&query)
            .header("x-identity-header", &self.header_secret)
            .header("metadata", "true")
            .send()
            .await
            .map_err(|e| azure_core::Error::with_error(Kind::Io, e, "identity endpoint request failed"))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| azure_core::Error::with_error(Kind::Io, e, "identity endpoint response failed"))?;
        if !status.is_success() {
            return Err(azure_core::Error::with_message(
                Kind::Credential,
                format!(
                    "identity endpoint answered {status}: {}",
                    String::from_utf8_lossy(&body)
                ),
            ));
        }
        let parsed: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| azure_core::Error::with_error(Kind::DataConversion, e, "identity endpoint sent bad JSON"))?;
        let token = parsed["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                azure_core::Error::with_message(Kind::DataConversion, "identity endpoint sent no access_token")
            })?
            .to_owned();
        let expires_on = parsed["expires_on"]
            .as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
            .ok_or_else(|| {
                azure_core::Error::with_message(Kind::DataConversion, "identity endpoint sent no expires_on")
            })?;
        Ok(AccessToken::new(token, expires_on))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_uuid_is_stable_and_uuid_shaped() {
        let a = pseudo_uuid("x");
        assert_eq!(a, pseudo_uuid("x"));
        assert_ne!(a, pseudo_uuid("y"));
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }
}
