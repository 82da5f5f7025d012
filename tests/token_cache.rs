//! TokenCache against the local identity endpoint over real sockets, on a manual clock.
//!
//! The endpoint stamps tokens with the same manual clock the cache reads, so moving the clock
//! moves the whole world; nothing here sleeps to make time pass. Fetches are held in flight with
//! the endpoint's `hold()`/`release()`.

use azure_core::credentials::TokenCredential;
use azure_core::time::{Duration, OffsetDateTime};
use azure_passwordless::emulator::IdentityEndpoint;
use azure_passwordless::{ManualClock, TokenCache};
use futures_util::FutureExt;
use std::sync::Arc;

const SCOPE: &str = "https://ossrdbms-aad.database.windows.net/.default";

fn start() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

struct World {
    clock: ManualClock,
    endpoint: IdentityEndpoint,
    cache: TokenCache,
}

async fn world(lifetime: Duration) -> World {
    let clock = ManualClock::new(start());
    let endpoint = IdentityEndpoint::builder()
        .clock(Arc::new(clock.clone()))
        .lifetime(lifetime)
        .start()
        .await
        .unwrap();
    let cache = TokenCache::builder(endpoint.credential(None))
        .clock(Arc::new(clock.clone()))
        .jitter(|_| Duration::ZERO)
        .build();
    World { clock, endpoint, cache }
}

/// Waits (in real time, bounded) until `cond` holds: for work that crosses a real socket.
async fn until(mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while !cond() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("condition not reached within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_call_fetches_then_hits() {
    let w = world(Duration::hours(24)).await;
    let a = w.cache.get(SCOPE).await.unwrap();
    let b = w.cache.get(SCOPE).await.unwrap();
    assert_eq!(a.secret(), b.secret());
    assert_eq!(a.expires_on(), start() + Duration::hours(24));
    let stats = w.cache.stats();
    assert_eq!((stats.fetches, stats.hits, stats.misses), (1, 1, 1));
    assert_eq!(w.endpoint.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_points_follow_token_lifetime() {
    let w = world(Duration::hours(24)).await;
    let t = w.cache.get(SCOPE).await.unwrap();
    assert_eq!(t.refresh_at(), start() + Duration::hours(12), "24 h token: half life");

    let w = world(Duration::hours(1)).await;
    let t = w.cache.get(SCOPE).await.unwrap();
    assert_eq!(
        t.refresh_at(),
        start() + Duration::minutes(55),
        "1 h token: 5 min before expiry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitter_is_injected_and_bounded() {
    let clock = ManualClock::new(start());
    let endpoint = IdentityEndpoint::builder()
        .clock(Arc::new(clock.clone()))
        .lifetime(Duration::hours(1))
        .start()
        .await
        .unwrap();
    let asked = Arc::new(parking_lot::Mutex::new(None));
    let seen = asked.clone();
    let cache = TokenCache::builder(endpoint.credential(None))
        .clock(Arc::new(clock.clone()))
        .jitter(move |max| {
            *seen.lock() = Some(max);
            Duration::hours(5) // a misbehaving jitter source: must be clamped
        })
        .build();
    let t = cache.get(SCOPE).await.unwrap();
    assert_eq!(*asked.lock(), Some(Duration::seconds(60)));
    // Clamped to the 60 s maximum and still before expiry.
    assert_eq!(t.refresh_at(), start() + Duration::minutes(56));
    assert!(t.refresh_at() < t.expires_on());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_refresh_point_callers_never_wait_and_one_background_fetch_runs() {
    let w = world(Duration::hours(24)).await;
    let old = w.cache.get(SCOPE).await.unwrap();
    w.clock.advance(Duration::hours(12) + Duration::seconds(1));
    w.endpoint.hold();
    // Every call answers at once with the old token even though the endpoint is held.
    for _ in 0..100 {
        let t = w.cache.get(SCOPE).now_or_never().expect("a caller waited").unwrap();
        assert_eq!(t.secret(), old.secret());
    }
    until(|| w.endpoint.waiting() == 1).await;
    assert_eq!(w.cache.stats().background_refreshes, 1, "single flight per scope");
    w.endpoint.release();
    until(|| w.cache.get_cached(SCOPE).is_some_and(|t| t.secret() != old.secret())).await;
    let stats = w.cache.stats();
    assert_eq!(stats.fetches, 2);
    assert_eq!(stats.waits, 1, "only the very first call waited");
    assert_eq!(w.endpoint.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_cold_callers_share_one_fetch() {
    let w = world(Duration::hours(24)).await;
    w.endpoint.hold();
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let cache = w.cache.clone();
        tasks.push(tokio::spawn(async move {
            cache.get(SCOPE).await.map(|t| t.secret().to_owned())
        }));
    }
    until(|| w.cache.stats().waits == 1000).await;
    w.endpoint.release();
    let mut secrets = std::collections::HashSet::new();
    for task in tasks {
        secrets.insert(task.await.unwrap().unwrap());
    }
    assert_eq!(secrets.len(), 1);
    assert_eq!(w.endpoint.request_count(), 1);
    let stats = w.cache.stats();
    assert_eq!((stats.fetches, stats.misses, stats.waits), (1, 1000, 1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_refresh_keeps_valid_token_and_backs_off_30s() {
    let w = world(Duration::hours(24)).await;
    let old = w.cache.get(SCOPE).await.unwrap();
    w.endpoint.fail_with(500, "identity endpoint down for maintenance");
    w.clock.advance(Duration::hours(13));
    assert_eq!(w.cache.get(SCOPE).await.unwrap().secret(), old.secret());
    until(|| w.cache.stats().failures == 1).await;
    assert_eq!(w.endpoint.request_count(), 2);

    // Within the 30 s back-off: still the old token, no new request.
    w.clock.advance(Duration::seconds(29));
    for _ in 0..50 {
        assert_eq!(w.cache.get(SCOPE).await.unwrap().secret(), old.secret());
    }
    assert_eq!(w.cache.stats().background_refreshes, 1);

    // After it: one more attempt, which now succeeds.
    w.endpoint.recover();
    w.clock.advance(Duration::seconds(2));
    assert_eq!(w.cache.get(SCOPE).await.unwrap().secret(), old.secret());
    until(|| w.cache.get_cached(SCOPE).is_some_and(|t| t.secret() != old.secret())).await;
    let stats = w.cache.stats();
    assert_eq!((stats.background_refreshes, stats.failures, stats.fetches), (2, 1, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_and_failing_fetch_fails_every_waiter() {
    let w = world(Duration::hours(1)).await;
    w.cache.get(SCOPE).await.unwrap();
    w.endpoint.fail_with(503, "service unavailable");
    w.endpoint.hold();
    w.clock.advance(Duration::hours(2));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let cache = w.cache.clone();
        tasks.push(tokio::spawn(async move { cache.get(SCOPE).await }));
    }
    until(|| w.cache.stats().waits == 21).await; // 20 plus the first call
    w.endpoint.release();
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        assert!(err.is_credential());
        assert!(err.to_string().contains(SCOPE), "{err}");
        assert!(err.report().contains("service unavailable"), "{}", err.report());
    }
    assert_eq!(w.endpoint.request_count(), 2, "one shared fetch for 20 waiters");

    // Once the endpoint is back, the next caller gets a fresh token without any restart.
    w.endpoint.recover();
    let t = w.cache.get(SCOPE).await.unwrap();
    assert!(t.expires_on() > start() + Duration::hours(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_near_expiry_is_not_handed_out() {
    let w = world(Duration::hours(1)).await;
    let old = w.cache.get(SCOPE).await.unwrap();
    w.endpoint.rotate();
    // 5 s before expiry: inside the 10 s margin, so callers wait for a new token.
    w.clock.advance(Duration::hours(1) - Duration::seconds(5));
    let t = w.cache.get(SCOPE).await.unwrap();
    assert_ne!(t.secret(), old.secret());
    assert_eq!(w.cache.stats().waits, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_forces_a_new_fetch() {
    let w = world(Duration::hours(24)).await;
    let old = w.cache.get(SCOPE).await.unwrap();
    w.endpoint.rotate();
    w.cache.invalidate(SCOPE);
    assert!(w.cache.get_cached(SCOPE).is_none());
    let new = w.cache.get(SCOPE).await.unwrap();
    assert_ne!(new.secret(), old.secret());
    assert_eq!(w.endpoint.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_are_cached_separately() {
    let w = world(Duration::hours(24)).await;
    let pg = w.cache.get(SCOPE).await.unwrap();
    let storage = w.cache.get("https://storage.azure.com/.default").await.unwrap();
    assert_ne!(pg.secret(), storage.secret());
    w.cache.get(SCOPE).await.unwrap();
    assert_eq!(w.cache.stats().fetches, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_is_a_token_credential() {
    let w = world(Duration::hours(24)).await;
    let credential: Arc<dyn TokenCredential> = Arc::new(w.cache.clone());
    let a = credential.get_token(&[SCOPE], None).await.unwrap();
    let b = credential.get_token(&[SCOPE], None).await.unwrap();
    assert_eq!(a.token.secret(), b.token.secret());
    assert_eq!(w.endpoint.request_count(), 1);
    assert!(credential.get_token(&[], None).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_text_in_debug_or_display() {
    let w = world(Duration::hours(24)).await;
    let token = w.cache.get(SCOPE).await.unwrap();
    w.endpoint.fail_with(500, "down");
    w.cache.invalidate(SCOPE);
    let err = w.cache.get(SCOPE).await.unwrap_err();
    let texts = [
        format!("{token:?}"),
        format!("{:?}", w.cache),
        format!("{:?}", w.cache.stats()),
        format!("{err} {err:?} {}", err.report()),
        format!("{:?}", w.endpoint),
        format!("{:?}", w.endpoint.credential(None)),
    ];
    for issued in w.endpoint.issued_tokens() {
        for text in &texts {
            assert!(!text.contains(&issued), "token leaked into {text}");
            assert!(
                !text.contains(w.endpoint.header_secret()),
                "identity header leaked into {text}"
            );
        }
    }
}
