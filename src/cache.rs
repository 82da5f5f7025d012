//! A refresh-ahead token cache in front of any [`TokenCredential`].
//!
//! Rules (each has a test below):
//! - A hit touches no network, no async lock and copies nothing the size of the token.
//! - A token is refreshed at its refresh point: half its lifetime when it lives 2 h or more
//!   (managed identity tokens live up to 24 h), else 5 minutes before expiry, plus jitter up to
//!   60 s that never reaches the expiry.
//! - While a valid token exists, callers never wait: one background fetch per scope refreshes it.
//! - Only when no valid token exists do callers wait, and they all share one fetch.
//! - A failed refresh keeps the old token while it is valid and is retried no sooner than 30 s
//!   later. When no valid token exists and the fetch fails, every waiter gets its error.

use crate::{
    Error,
    clock::{SharedClock, SystemClock},
    error::ErrorKind,
};
use arc_swap::{ArcSwap, Guard};
use azure_core::{
    credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions},
    time::{Duration, OffsetDateTime},
};
use futures_util::{
    FutureExt,
    future::{BoxFuture, Shared},
};
use parking_lot::Mutex;
use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};
use tracing::{debug, info, warn};

/// Largest random delay added to a refresh point. Defaults to 60 s.
pub const DEFAULT_MAX_JITTER: Duration = Duration::seconds(60);
/// Least time between a failed background refresh and the next attempt. Defaults to 30 s.
pub const DEFAULT_FAILURE_BACKOFF: Duration = Duration::seconds(30);
/// A token this close to its expiry is no longer handed out: it could expire on its way to the
/// server. Defaults to 10 s.
pub const DEFAULT_EXPIRY_MARGIN: Duration = Duration::seconds(10);
/// Tokens living at least this long refresh at half their lifetime.
const LONG_LIVED: Duration = Duration::hours(2);
/// Shorter-lived tokens refresh this long before expiry.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::minutes(5);

/// Picks the jitter for one refresh point: given the largest allowed jitter, returns a value
/// between zero and it. Injected so tests and simulations are repeatable.
pub type Jitter = Arc<dyn Fn(Duration) -> Duration + Send + Sync>;

/// A cached access token, with the secret kept out of `Debug`.
///
/// Handed out by a cache hit without touching a shared reference count (an `arc_swap` guard),
/// so concurrent hits on several cores do not contend; cloning takes a reference count.
pub struct Token(Guard<Arc<Entry>>);

impl Clone for Token {
    fn clone(&self) -> Self {
        Token(Guard::from_inner(Arc::clone(&self.0)))
    }
}

impl Token {
    fn from_entry(entry: Arc<Entry>) -> Self {
        Token(Guard::from_inner(entry))
    }
}

struct Entry {
    secret: Secret,
    expires_on: OffsetDateTime,
    refresh_at: OffsetDateTime,
    /// `refresh_at` and the end of usability in Unix milliseconds: the hit path compares these.
    refresh_at_ms: i64,
    usable_until_ms: i64,
}

impl Entry {
    /// The "no token" entry: never usable.
    fn empty() -> Arc<Self> {
        Arc::new(Entry {
            secret: Secret::new(""),
            expires_on: OffsetDateTime::UNIX_EPOCH,
            refresh_at: OffsetDateTime::UNIX_EPOCH,
            refresh_at_ms: i64::MIN,
            usable_until_ms: i64::MIN,
        })
    }

    fn is_empty(&self) -> bool {
        self.usable_until_ms == i64::MIN
    }
}

fn unix_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

impl Token {
    /// The token text, for a password or an `Authorization: Bearer` header.
    pub fn secret(&self) -> &str {
        self.0.secret.secret()
    }

    /// When the token expires.
    pub fn expires_on(&self) -> OffsetDateTime {
        self.0.expires_on
    }

    /// When the cache starts refreshing it in the background.
    pub fn refresh_at(&self) -> OffsetDateTime {
        self.0.refresh_at
    }

    /// The token as an azure_core [`AccessToken`] (copies the secret).
    pub fn to_access_token(&self) -> AccessToken {
        AccessToken::new(self.0.secret.clone(), self.0.expires_on)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("secret", &"***")
            .field("expires_on", &self.0.expires_on)
            .field("refresh_at", &self.0.refresh_at)
            .finish()
    }
}

/// A snapshot of a [`TokenCache`]'s counters, summed over all scopes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Calls answered from the cache.
    pub hits: u64,
    /// Calls that found no valid token.
    pub misses: u64,
    /// Calls that waited for a fetch (their own or one already running).
    pub waits: u64,
    /// Fetches started in the background while a valid token existed.
    pub background_refreshes: u64,
    /// Fetches that failed.
    pub failures: u64,
    /// Calls made to the credential.
    pub fetches: u64,
}

impl CacheStats {
    /// Hits as a fraction of all calls; 1.0 when there were no calls.
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            1.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// A refresh-ahead cache of access tokens, one per scope, in front of any credential.
///
/// Itself a [`TokenCredential`], so it can be handed to azure_core clients (such as
/// azure_storage_blob's) and shared with the PostgreSQL pool: every consumer of a scope shares
/// one token and one refresh. Clones share the same cache.
///
/// # Examples
/// ```no_run
/// # async fn run() -> azure_passwordless::Result<()> {
/// use azure_passwordless::{DefaultAzureCredential, TokenCache};
///
/// let cache = TokenCache::new(DefaultAzureCredential::new()?);
/// let token = cache.get("https://storage.azure.com/.default").await?;
/// println!("valid until {}", token.expires_on());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TokenCache {
    inner: Arc<Inner>,
}

struct Inner {
    credential: Arc<dyn TokenCredential>,
    clock: SharedClock,
    jitter: Jitter,
    max_jitter: Duration,
    failure_backoff: Duration,
    expiry_margin: Duration,
    on_invalidate: Option<InvalidateHook>,
    /// Copy-on-write list of scopes: read without a lock on every call, written once per scope.
    slots: ArcSwap<Vec<Arc<Slot>>>,
    slots_write: Mutex<()>,
    stats: Counters,
}

type InvalidateHook = Arc<dyn Fn(&str) + Send + Sync>;
type FetchResult = Result<Arc<Entry>, Arc<azure_core::Error>>;
type SharedFetch = Shared<BoxFuture<'static, FetchResult>>;

struct Slot {
    /// Space-separated scopes, as OAuth joins them.
    key: Box<str>,
    current: ArcSwap<Entry>,
    inflight: Mutex<Option<SharedFetch>>,
    /// Unix milliseconds before which a failed background refresh is not retried.
    retry_not_before: Mutex<Option<i64>>,
}

impl TokenCache {
    /// A cache over `credential` with the default settings and the system clock.
    pub fn new(credential: Arc<dyn TokenCredential>) -> Self {
        Self::builder(credential).build()
    }

    /// A builder for a cache over `credential`.
    pub fn builder(credential: Arc<dyn TokenCredential>) -> TokenCacheBuilder {
        TokenCacheBuilder {
            credential,
            clock: Arc::new(SystemClock),
            jitter: Arc::new(random_jitter),
            max_jitter: DEFAULT_MAX_JITTER,
            failure_backoff: DEFAULT_FAILURE_BACKOFF,
            expiry_margin: DEFAULT_EXPIRY_MARGIN,
            on_invalidate: None,
        }
    }

    /// A cache over a [`DefaultAzureCredential`](crate::DefaultAzureCredential) whose
    /// [`invalidate`](Self::invalidate) also clears the credential's private caches, so a token a
    /// server rejected is really fetched anew.
    pub fn for_default_credential(credential: Arc<crate::DefaultAzureCredential>) -> Self {
        Self::builder_for_default_credential(credential).build()
    }

    /// [`TokenCache::builder`] with the invalidation wiring of [`TokenCache::for_default_credential`].
    pub fn builder_for_default_credential(credential: Arc<crate::DefaultAzureCredential>) -> TokenCacheBuilder {
        let forget = Arc::clone(&credential);
        Self::builder(credential).on_invalidate(move |_| forget.forget_cached_tokens())
    }

    /// A valid token for `scope`, from the cache when possible.
    ///
    /// Waits only when no valid token exists; then every caller for the scope shares one fetch.
    /// When the token is past its refresh point, one background fetch replaces it while callers
    /// keep getting the current one.
    ///
    /// # Errors
    /// [`ErrorKind::Credential`] when no valid token exists and the credential fails; the
    /// credential's error is the [`source`](std::error::Error::source).
    pub async fn get(&self, scope: &str) -> crate::Result<Token> {
        if let Some(token) = self.get_cached(scope) {
            return Ok(token);
        }
        let slot = self.inner.slot(scope);
        self.inner.wait(&slot).await
    }

    /// The cached token for `scope` if one is valid now, without ever waiting.
    ///
    /// Starts a background refresh when due (inside a Tokio runtime), like [`TokenCache::get`].
    pub fn get_cached(&self, scope: &str) -> Option<Token> {
        // Borrow the slot from the lock-free scope list: no reference count touched.
        let slots = self.inner.slots.load();
        let slot = slots.iter().find(|s| &*s.key == scope)?;
        self.inner.try_hit(slot, self.inner.clock.unix_millis())
    }

    /// A handle on one scope of this cache: the same tokens and refreshes, without looking the
    /// scope up on every call. For a hot path that always wants the same scope (the pool does).
    pub fn scoped(&self, scope: &str) -> ScopedTokenCache {
        ScopedTokenCache {
            inner: Arc::clone(&self.inner),
            slot: self.inner.slot(scope),
        }
    }

    /// Forgets the token for `scope`, so the next call fetches a new one.
    ///
    /// For a server that rejected the token (for example PostgreSQL answering SQLSTATE 28P01).
    pub fn invalidate(&self, scope: &str) {
        let slot = self.inner.slot(scope);
        if !slot.current.swap(Entry::empty()).is_empty() {
            info!(scope = %slot.key, "cached token invalidated");
        }
        if let Some(hook) = &self.inner.on_invalidate {
            hook(scope);
        }
    }

    /// Waits until no fetch is running for any scope (including background refreshes).
    ///
    /// For tests and simulations on a [`ManualClock`](crate::ManualClock): lets a background
    /// refresh land before time moves on.
    pub async fn settle(&self) {
        let running: Vec<SharedFetch> = self
            .inner
            .slots
            .load()
            .iter()
            .filter_map(|slot| slot.inflight.lock().clone())
            .collect();
        for fetch in running {
            let _ = fetch.await;
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> CacheStats {
        let c = &self.inner.stats;
        CacheStats {
            hits: c.hits.sum(),
            misses: c.misses.sum(),
            waits: c.waits.sum(),
            background_refreshes: c.background_refreshes.sum(),
            failures: c.failures.sum(),
            fetches: c.fetches.sum(),
        }
    }

    /// The credential behind the cache.
    pub fn credential(&self) -> &Arc<dyn TokenCredential> {
        &self.inner.credential
    }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scopes: Vec<_> = self.inner.slots.load().iter().map(|s| s.key.to_string()).collect();
        f.debug_struct("TokenCache")
            .field("credential", &self.inner.credential)
            .field("scopes", &scopes)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl TokenCredential for TokenCache {
    /// Note: `options` are not forwarded; the cached token serves every caller of a scope.
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let token = match scopes {
            [scope] => self.get(scope).await,
            [] => {
                return Err(azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Credential,
                    "a token request needs at least one scope",
                ));
            }
            many => self.get(&many.join(" ")).await,
        };
        Ok(token?.to_access_token())
    }
}

/// One scope of a [`TokenCache`]; see [`TokenCache::scoped`]. Cheap to clone.
#[derive(Clone)]
pub struct ScopedTokenCache {
    inner: Arc<Inner>,
    slot: Arc<Slot>,
}

impl ScopedTokenCache {
    /// As [`TokenCache::get`] for this scope.
    ///
    /// # Errors
    /// As [`TokenCache::get`].
    pub async fn get(&self) -> crate::Result<Token> {
        if let Some(token) = self.get_cached() {
            return Ok(token);
        }
        self.inner.wait(&self.slot).await
    }

    /// As [`TokenCache::get_cached`] for this scope.
    pub fn get_cached(&self) -> Option<Token> {
        self.inner.try_hit(&self.slot, self.inner.clock.unix_millis())
    }

    /// The scope.
    pub fn scope(&self) -> &str {
        &self.slot.key
    }
}

impl fmt::Debug for ScopedTokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedTokenCache")
            .field("scope", &self.slot.key)
            .finish_non_exhaustive()
    }
}

/// Builder for [`TokenCache`].
#[must_use]
pub struct TokenCacheBuilder {
    credential: Arc<dyn TokenCredential>,
    clock: SharedClock,
    jitter: Jitter,
    max_jitter: Duration,
    failure_backoff: Duration,
    expiry_margin: Duration,
    on_invalidate: Option<InvalidateHook>,
}

impl fmt::Debug for TokenCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCacheBuilder")
            .field("credential", &self.credential)
            .field("clock", &self.clock)
            .field("max_jitter", &self.max_jitter)
            .field("failure_backoff", &self.failure_backoff)
            .field("expiry_margin", &self.expiry_margin)
            .finish_non_exhaustive()
    }
}

impl TokenCacheBuilder {
    /// The clock deciding when tokens are due. Defaults to [`SystemClock`].
    pub fn clock(mut self, clock: Arc<dyn crate::Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How jitter is picked. Defaults to uniformly random between zero and the maximum.
    pub fn jitter(mut self, jitter: impl Fn(Duration) -> Duration + Send + Sync + 'static) -> Self {
        self.jitter = Arc::new(jitter);
        self
    }

    /// Largest jitter added to a refresh point. Defaults to [`DEFAULT_MAX_JITTER`].
    pub fn max_jitter(mut self, max: Duration) -> Self {
        self.max_jitter = max.max(Duration::ZERO);
        self
    }

    /// Least time after a failed background refresh before the next. Defaults to
    /// [`DEFAULT_FAILURE_BACKOFF`].
    pub fn failure_backoff(mut self, backoff: Duration) -> Self {
        self.failure_backoff = backoff.max(Duration::ZERO);
        self
    }

    /// How long before expiry a token stops being handed out. Defaults to
    /// [`DEFAULT_EXPIRY_MARGIN`].
    pub fn expiry_margin(mut self, margin: Duration) -> Self {
        self.expiry_margin = margin.max(Duration::ZERO);
        self
    }

    /// Called with the scope on every [`TokenCache::invalidate`]: lets a credential with a
    /// private cache of its own drop it. Defaults to nothing.
    pub fn on_invalidate(mut self, hook: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_invalidate = Some(Arc::new(hook));
        self
    }

    /// Builds the cache.
    pub fn build(self) -> TokenCache {
        TokenCache {
            inner: Arc::new(Inner {
                credential: self.credential,
                clock: self.clock,
                jitter: self.jitter,
                max_jitter: self.max_jitter,
                failure_backoff: self.failure_backoff,
                expiry_margin: self.expiry_margin,
                on_invalidate: self.on_invalidate,
                slots: ArcSwap::from_pointee(Vec::new()),
                slots_write: Mutex::new(()),
                stats: Counters::default(),
            }),
        }
    }
}

fn random_jitter(max: Duration) -> Duration {
    let max_ms = max.whole_milliseconds().clamp(0, i64::MAX as i128) as i64;
    Duration::milliseconds(fastrand::i64(0..=max_ms))
}

/// When to start refreshing a token fetched at `fetched_at`.
///
/// `refresh_on` is the issuer's own hint when the credential gives one (azure_core 1.1's
/// `AccessToken` carries none yet, so callers pass `None`).
pub(crate) fn refresh_point(
    fetched_at: OffsetDateTime,
    expires_on: OffsetDateTime,
    refresh_on: Option<OffsetDateTime>,
    jitter: Duration,
) -> OffsetDateTime {
    let lifetime = expires_on - fetched_at;
    let base = match refresh_on {
        Some(hint) => hint,
        None if lifetime >= LONG_LIVED => fetched_at + lifetime / 2,
        // A 5-minute margin would leave a short token (under 10 min) no time in the cache at
        // all; refresh such tokens at half their life instead.
        None => (expires_on - REFRESH_BEFORE_EXPIRY).max(fetched_at + lifetime / 2),
    };
    let base = base.min(expires_on).max(fetched_at);
    // Jitter spreads a fleet's refreshes, but may use at most half of what is left before
    // expiry, so a background refresh always has time to finish.
    let room: Duration = (expires_on - base) / 2;
    base + jitter.max(Duration::ZERO).min(room.max(Duration::ZERO))
}

impl Inner {
    fn slot(&self, key: &str) -> Arc<Slot> {
        if let Some(slot) = self.slots.load().iter().find(|s| &*s.key == key) {
            return Arc::clone(slot);
        }
        let _write = self.slots_write.lock();
        let current = self.slots.load_full();
        if let Some(slot) = current.iter().find(|s| &*s.key == key) {
            return Arc::clone(slot);
        }
        let slot = Arc::new(Slot {
            key: key.into(),
            current: ArcSwap::new(Entry::empty()),
            inflight: Mutex::new(None),
            retry_not_before: Mutex::new(None),
        });
        let mut next = Vec::with_capacity(current.len() + 1);
        next.extend(current.iter().cloned());
        next.push(Arc::clone(&slot));
        self.slots.store(Arc::new(next));
        slot
    }

    fn try_hit(self: &Arc<Self>, slot: &Arc<Slot>, now_ms: i64) -> Option<Token> {
        let entry = slot.current.load();
        if now_ms >= entry.usable_until_ms {
            return None;
        }
        if now_ms >= entry.refresh_at_ms {
            self.refresh_in_background(slot, now_ms);
        }
        self.stats.hits.incr();
        Some(Token(entry))
    }

    fn refresh_in_background(self: &Arc<Self>, slot: &Arc<Slot>, now_ms: i64) {
        if slot.retry_not_before.lock().is_some_and(|t| now_ms < t) {
            return;
        }
        // Without a runtime there is nowhere to run the fetch; the next async caller will.
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let mut inflight = slot.inflight.lock();
        if inflight.is_some() {
            return;
        }
        self.stats.background_refreshes.incr();
        debug!(scope = %slot.key, "token past its refresh point; refreshing in the background");
        // Nobody awaits a background refresh; the spawned task runs to completion on its own.
        drop(self.start_fetch(slot, &mut inflight));
    }

    async fn wait(self: &Arc<Self>, slot: &Arc<Slot>) -> crate::Result<Token> {
        self.stats.misses.incr();
        let fetch = {
            let mut inflight = slot.inflight.lock();
            // A fetch may have finished between the miss and taking the lock.
            let entry = slot.current.load_full();
            if self.clock.unix_millis() < entry.usable_until_ms {
                return Ok(Token::from_entry(entry));
            }
            match &*inflight {
                Some(fetch) => fetch.clone(),
                None => self.start_fetch(slot, &mut inflight),
            }
        };
        self.stats.waits.incr();
        match fetch.await {
            Ok(entry) => Ok(Token::from_entry(entry)),
            Err(err) => Err(Error::new(
                ErrorKind::Credential,
                format!("could not get a token for scope {}", slot.key),
            )
            .with_source(SharedError(err))),
        }
    }

    /// Starts one fetch for `slot`; the caller holds the slot's `inflight` lock.
    fn start_fetch(self: &Arc<Self>, slot: &Arc<Slot>, inflight: &mut Option<SharedFetch>) -> SharedFetch {
        self.stats.fetches.incr();
        let work = Arc::clone(self).fetch(Arc::clone(slot));
        // Spawned, so a fetch finishes (and is stored) even if every waiter gives up. Outside a
        // Tokio runtime (another executor) the waiters drive it themselves instead.
        let fetch = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let task = runtime.spawn(work);
                async move {
                    task.await.unwrap_or_else(|join_err| {
                        Err(Arc::new(azure_core::Error::with_message(
                            azure_core::error::ErrorKind::Credential,
                            format!("the token fetch task ended abnormally: {join_err}"),
                        )))
                    })
                }
                .boxed()
            }
            Err(_) => work.boxed(),
        }
        .shared();
        *inflight = Some(fetch.clone());
        fetch
    }

    async fn fetch(self: Arc<Self>, slot: Arc<Slot>) -> FetchResult {
        let scopes: Vec<&str> = slot.key.split(' ').collect();
        let result = self.credential.get_token(&scopes, None).await;
        let now = self.clock.now();
        let outcome = match result {
            Ok(token) => {
                let jitter = (self.jitter)(self.max_jitter).min(self.max_jitter);
                let refresh_at = refresh_point(now, token.expires_on, None, jitter);
                let entry = Arc::new(Entry {
                    usable_until_ms: unix_ms(token.expires_on - self.expiry_margin),
                    refresh_at_ms: unix_ms(refresh_at),
                    secret: token.token,
                    expires_on: token.expires_on,
                    refresh_at,
                });
                debug!(scope = %slot.key, expires_on = %entry.expires_on, refresh_at = %refresh_at, "token fetched");
                slot.current.store(Arc::clone(&entry));
                *slot.retry_not_before.lock() = None;
                Ok(entry)
            }
            Err(err) => {
                self.stats.failures.incr();
                let still_valid = unix_ms(now) < slot.current.load().usable_until_ms;
                warn!(
                    scope = %slot.key,
                    error = %crate::error::report(&err),
                    keeping_valid_token = still_valid,
                    "token fetch failed"
                );
                *slot.retry_not_before.lock() = Some(unix_ms(now + self.failure_backoff));
                Err(Arc::new(err))
            }
        };
        // Cleared after the result is stored, so a caller that finds no fetch running also
        // finds the new token.
        *slot.inflight.lock() = None;
        outcome
    }
}

/// A credential error shared by every waiter of one fetch.
struct SharedError(Arc<azure_core::Error>);

impl fmt::Debug for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Counters striped over cache lines so concurrent hits on several cores do not contend on one.
#[derive(Default)]
struct Counters {
    hits: Counter,
    misses: Counter,
    waits: Counter,
    background_refreshes: Counter,
    failures: Counter,
    fetches: Counter,
}

const STRIPES: usize = 8;

#[derive(Default)]
struct Counter([Padded; STRIPES]);

#[derive(Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

impl Counter {
    fn incr(&self) {
        self.0[stripe()].0.fetch_add(1, Ordering::Relaxed);
    }

    fn sum(&self) -> u64 {
        self.0.iter().map(|p| p.0.load(Ordering::Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::days(20_000)
    }

    #[test]
    fn long_lived_tokens_refresh_at_half_life() {
        let at = refresh_point(t0(), t0() + Duration::hours(24), None, Duration::ZERO);
        assert_eq!(at, t0() + Duration::hours(12));
        let at = refresh_point(t0(), t0() + Duration::hours(2), None, Duration::ZERO);
        assert_eq!(at, t0() + Duration::hours(1));
    }

    #[test]
    fn short_lived_tokens_refresh_five_minutes_before_expiry() {
        let at = refresh_point(t0(), t0() + Duration::hours(1), None, Duration::ZERO);
        assert_eq!(at, t0() + Duration::minutes(55));
    }

    #[test]
    fn very_short_tokens_refresh_at_half_life() {
        let at = refresh_point(t0(), t0() + Duration::minutes(6), None, Duration::ZERO);
        assert_eq!(at, t0() + Duration::minutes(3));
    }

    #[test]
    fn refresh_hint_wins_when_given() {
        let hint = t0() + Duration::minutes(20);
        let at = refresh_point(t0(), t0() + Duration::hours(1), Some(hint), Duration::ZERO);
        assert_eq!(at, hint);
    }

    #[test]
    fn jitter_is_added_but_never_reaches_expiry() {
        let at = refresh_point(t0(), t0() + Duration::hours(1), None, Duration::seconds(45));
        assert_eq!(at, t0() + Duration::minutes(55) + Duration::seconds(45));
        // Only 60 s left after the base point: jitter is capped at half of that.
        let at = refresh_point(t0(), t0() + Duration::minutes(2), None, Duration::seconds(60));
        assert_eq!(at, t0() + Duration::minutes(1) + Duration::seconds(30));
        assert!(at < t0() + Duration::minutes(2));
    }

    #[test]
    fn already_expired_token_is_due_at_once() {
        let at = refresh_point(t0(), t0() - Duration::minutes(1), None, Duration::seconds(30));
        assert_eq!(at, t0());
    }

    #[test]
    fn token_debug_hides_the_secret() {
        let token = Token::from_entry(Arc::new(Entry {
            secret: Secret::new("eyJ-very-secret"),
            expires_on: t0(),
            refresh_at: t0(),
            refresh_at_ms: 0,
            usable_until_ms: 0,
        }));
        let text = format!("{token:?}");
        assert!(!text.contains("eyJ-very-secret"), "{text}");
        assert!(text.contains("***"));
    }

    /// A credential that answers at once, needing no runtime.
    #[derive(Debug)]
    struct Immediate;

    #[async_trait::async_trait]
    impl TokenCredential for Immediate {
        async fn get_token(&self, _: &[&str], _: Option<TokenRequestOptions<'_>>) -> azure_core::Result<AccessToken> {
            Ok(AccessToken::new("immediate", t0() + Duration::hours(1)))
        }
    }

    #[test]
    fn fetch_outside_a_tokio_runtime_does_not_panic() {
        let clock = crate::ManualClock::new(t0());
        let cache = TokenCache::builder(Arc::new(Immediate)).clock(Arc::new(clock)).build();
        let token = futures_util::FutureExt::now_or_never(cache.get("s"))
            .expect("no waiting")
            .unwrap();
        assert_eq!(token.secret(), "immediate");
        assert_eq!(cache.stats().fetches, 1);
    }

    #[test]
    fn handles_cross_threads() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Token>();
        check::<TokenCache>();
    }

    #[test]
    fn hit_rate_of_an_unused_cache_is_one() {
        assert_eq!(CacheStats::default().hit_rate(), 1.0);
        let stats = CacheStats {
            hits: 3,
            misses: 1,
            ..Default::default()
        };
        assert_eq!(stats.hit_rate(), 0.75);
    }
}
