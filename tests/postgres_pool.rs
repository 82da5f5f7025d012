//! AzurePgPool against a real PostgreSQL (Debian binaries, TLS, `password` auth) whose role
//! password is the token the local identity endpoint issues, reached through the real
//! azure_identity ManagedIdentityCredential.
//!
//! azure_identity reads IDENTITY_ENDPOINT/IDENTITY_HEADER from the process environment, so this
//! binary has its own `main` (harness = false) and sets them before any thread starts.

mod common;

use azure_core::time::{Duration, OffsetDateTime};
use azure_passwordless::emulator::{IdentityEndpoint, PostgresServer};
use azure_passwordless::postgres::{AzurePgPool, PgSettings};
use azure_passwordless::{Env, ManualClock, TokenCache};
use std::sync::{Arc, Mutex};

const SCOPE: &str = "https://ossrdbms-aad.database.windows.net/.default";
const HEADER_SECRET: &str = "pg-test-identity-header-51c2";
const IDENTITY: &str = "restaurant-review-identity";

struct Ctx {
    endpoint: IdentityEndpoint,
    server: PostgresServer,
    logs: common::LogBuffer,
}

impl Ctx {
    /// The app settings of the seed (DBHOST, DBNAME, ...) plus the identity endpoint's variables.
    fn env(&self, extra: &[(&str, &str)]) -> Env {
        let url = self.endpoint.url();
        let port = self.server.port().to_string();
        let ca = self.server.ca_file().display().to_string();
        let pairs = vec![
            ("IDENTITY_ENDPOINT", url.as_str()),
            ("IDENTITY_HEADER", HEADER_SECRET),
            ("DBHOST", "127.0.0.1"),
            ("DBPORT", port.as_str()),
            ("DBNAME", "restaurants"),
            ("PGSSLROOTCERT", ca.as_str()),
        ];
        common::env_with(pairs, extra)
    }

    fn credential(&self) -> Arc<azure_passwordless::DefaultAzureCredential> {
        azure_passwordless::DefaultAzureCredential::builder()
            .env(self.env(&[]))
            .build()
            .unwrap()
    }

    /// A pool builder on the test server with the managed identity credential.
    fn pool(&self) -> azure_passwordless::postgres::AzurePgPoolBuilder {
        AzurePgPool::builder(self.settings()).default_credential(self.credential())
    }

    fn settings(&self) -> PgSettings {
        PgSettings::new("127.0.0.1", "restaurants")
            .port(self.server.port())
            .root_cert_pem(self.server.ca_pem().as_bytes().to_vec())
    }
}

async fn backend_pid(pool: &AzurePgPool) -> i32 {
    pool.get()
        .await
        .unwrap()
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

async fn queries_over_tls_with_managed_identity(ctx: &Ctx) {
    let pool = AzurePgPool::from_env_with(&ctx.env(&[])).unwrap();
    let client = pool.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT current_user::text, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    let (user, ssl): (String, bool) = (row.get(0), row.get(1));
    assert_eq!(user, IDENTITY, "user derived from the token's xms_mirid");
    assert!(ssl, "connection must be TLS");
    assert_eq!(pool.user(), Some(IDENTITY));
    drop(client);
    assert!(
        ctx.logs
            .text()
            .contains("no PostgreSQL user configured; using the identity named in the token")
    );

    let pool = ctx.pool().max_size(8).build().unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let client = pool.get().await?;
                let n: i32 = client
                    .query_one("SELECT $1::int + 1", &[&i])
                    .await
                    .map_err(|e| e.to_string())
                    .unwrap()
                    .get(0);
                assert_eq!(n, i + 1);
                Ok::<_, azure_passwordless::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let status = pool.status();
    assert!(status.pool.size <= 8, "{status:?}");
    assert_eq!(status.tokens.fetches, 1, "one token for 200 checkouts: {status:?}");
}

async fn token_rotation_keeps_old_connections_and_new_ones_retry(ctx: &Ctx) {
    let pool = AzurePgPool::from_env_with(&ctx.env(&[])).unwrap();
    let old = pool.get().await.unwrap();
    let requests = ctx.endpoint.request_count();

    // The token rotates: the identity endpoint issues a new one and the server accepts only it.
    ctx.endpoint.rotate();
    let new_token = ctx.endpoint.current_token(SCOPE, None);
    ctx.server.set_password(IDENTITY, &new_token).await.unwrap();

    let fresh = pool.get().await.unwrap(); // the held `old` forces a new connection
    fresh.query_one("SELECT 1", &[]).await.unwrap();
    old.query_one("SELECT 1", &[])
        .await
        .expect("open connections live on after rotation");
    assert!(ctx.endpoint.request_count() > requests, "a new token was fetched");
    assert_eq!(pool.status().tokens.fetches, 2);
    assert!(
        ctx.logs
            .text()
            .contains("PostgreSQL rejected the token; fetching a new one and retrying once")
    );
}

async fn endpoint_down_while_token_valid(ctx: &Ctx) {
    let pool = AzurePgPool::from_env_with(&ctx.env(&[])).unwrap();
    let held = pool.get().await.unwrap();
    ctx.endpoint.fail_with(500, "identity endpoint down");
    // A second connection has to be opened, with the cached token.
    let second = pool.get().await;
    ctx.endpoint.recover();
    second.unwrap().query_one("SELECT 1", &[]).await.unwrap();
    drop(held);
    assert_eq!(pool.status().pool.size, 2);
}

async fn endpoint_down_after_expiry_gives_typed_error_then_recovers(ctx: &Ctx) {
    // Its own endpoint and identity, on a manual clock shared with the cache.
    let clock = ManualClock::new(OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap());
    let endpoint = IdentityEndpoint::builder()
        .clock(Arc::new(clock.clone()))
        .lifetime(Duration::hours(1))
        .identity_name("expiring-identity")
        .start()
        .await
        .unwrap();
    ctx.server
        .create_login_role("expiring-identity", &endpoint.current_token(SCOPE, None))
        .await
        .unwrap();
    let cache = TokenCache::builder(endpoint.credential(None))
        .clock(Arc::new(clock.clone()))
        .build();
    let pool = AzurePgPool::builder(ctx.settings()).token_cache(cache).build().unwrap();
    pool.get().await.unwrap().query_one("SELECT 1", &[]).await.unwrap();

    endpoint.fail_with(503, "identity endpoint under maintenance");
    clock.advance(Duration::hours(2));
    let err = pool.get().await.unwrap_err();
    assert!(err.is_credential(), "{err:?}");
    assert!(
        err.to_string()
            .contains("no Entra token for PostgreSQL from EndpointCredential"),
        "{err}"
    );
    assert!(
        err.report().contains("identity endpoint under maintenance"),
        "{}",
        err.report()
    );
    assert!(!err.report().contains("password authentication failed"));

    endpoint.recover();
    ctx.server
        .set_password("expiring-identity", &endpoint.current_token(SCOPE, None))
        .await
        .unwrap();
    pool.inner().retain(|_, _| false);
    pool.get()
        .await
        .expect("pool recovers without a restart")
        .query_one("SELECT 1", &[])
        .await
        .unwrap();
}

async fn postgres_restart_under_load(ctx: &Ctx) {
    let pool = ctx
        .pool()
        .max_size(4)
        .wait_timeout(Some(std::time::Duration::from_secs(2)))
        .create_timeout(Some(std::time::Duration::from_secs(2)))
        .recycle_timeout(Some(std::time::Duration::from_secs(1)))
        .build()
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slowest = Arc::new(Mutex::new(std::time::Duration::ZERO));
    let successes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (pool, stop, slowest, successes) = (pool.clone(), stop.clone(), slowest.clone(), successes.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0, 0);
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let started = tokio::time::Instant::now();
                    let result = match pool.get().await {
                        Ok(client) => client
                            .query_one("SELECT 1", &[])
                            .await
                            .map(|_| ())
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    let took = started.elapsed();
                    {
                        let mut s = slowest.lock().unwrap();
                        *s = (*s).max(took);
                    }
                    if result.is_ok() {
                        ok += 1;
                        successes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    } else {
                        failed += 1;
                    }
                    tokio::task::yield_now().await;
                }
                (ok, failed)
            })
        })
        .collect();
    // Restart only once the load is running.
    while successes.load(std::sync::atomic::Ordering::SeqCst) < 100 {
        tokio::task::yield_now().await;
    }
    ctx.server.restart().await.unwrap();
    // After the restart every checkout must succeed again.
    let mut recovered = false;
    for _ in 0..50 {
        if let Ok(client) = pool.get().await
            && client.query_one("SELECT 1", &[]).await.is_ok()
        {
            recovered = true;
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut total_ok = 0;
    for worker in workers {
        total_ok += worker.await.unwrap().0;
    }
    assert!(recovered, "pool did not recover after the restart");
    assert!(total_ok > 0);
    for _ in 0..20 {
        pool.get().await.unwrap().query_one("SELECT 1", &[]).await.unwrap();
    }
    let slowest = *slowest.lock().unwrap();
    // wait (2 s) + create (2 s) + one query; nothing may hang past the timeouts.
    assert!(
        slowest < std::time::Duration::from_secs(6),
        "a checkout took {slowest:?}"
    );
}

async fn exhausted_pool_times_out_with_a_typed_error(ctx: &Ctx) {
    let pool = ctx
        .pool()
        .max_size(1)
        .wait_timeout(Some(std::time::Duration::from_millis(200)))
        .build()
        .unwrap();
    let held = pool.get().await.unwrap();
    let err = pool.get().await.unwrap_err();
    assert_eq!(err.kind(), azure_passwordless::ErrorKind::Timeout, "{err:?}");
    assert!(err.to_string().contains("wait (no free connection) timeout"), "{err}");
    drop(held);
    pool.get().await.unwrap().query_one("SELECT 1", &[]).await.unwrap();
}

async fn bad_settings_name_the_variable(ctx: &Ctx) {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("DBNAME", "")], "set DBNAME"),
        (
            &[("DBPORT", "abc")],
            "DBPORT must be a port number between 1 and 65535, got 'abc'",
        ),
        (
            &[("PGSSLMODE", "prefer-maybe")],
            "PGSSLMODE has unknown sslmode 'prefer-maybe'",
        ),
        (
            &[("DBHOST", "myserver"), ("PGSSLMODE", "disable")],
            "plaintext to the Azure host myserver.postgres.database.azure.com",
        ),
        (
            &[("PGSSLROOTCERT", "/nonexistent/ca.pem")],
            "cannot read PGSSLROOTCERT (/nonexistent/ca.pem)",
        ),
    ];
    for (extra, expected) in cases {
        let err = AzurePgPool::from_env_with(&ctx.env(extra)).unwrap_err();
        assert!(err.is_config(), "{err:?}");
        assert!(err.to_string().contains(expected), "{expected:?} not in {err}");
    }
}

async fn plain_tcp_is_refused_by_the_server(ctx: &Ctx) {
    let pool = AzurePgPool::from_env_with(&ctx.env(&[("PGSSLMODE", "disable")])).unwrap();
    let err = pool.get().await.unwrap_err();
    assert!(err.is_auth(), "{err:?}");
    assert!(err.to_string().contains("SQLSTATE 28000"), "{err}");
}

async fn max_lifetime_on_the_injected_clock(ctx: &Ctx) {
    let clock = ManualClock::new(OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap());
    let credential = ctx.credential();
    let pool = AzurePgPool::builder(ctx.settings())
        .default_credential(credential.clone())
        .clock(Arc::new(clock.clone()))
        .max_lifetime(Some(Duration::hours(1)))
        .build()
        .unwrap();
    let first = backend_pid(&pool).await;
    clock.advance(Duration::minutes(59));
    assert_eq!(backend_pid(&pool).await, first, "younger than the lifetime: reused");
    clock.advance(Duration::minutes(2));
    let second = backend_pid(&pool).await;
    assert_ne!(second, first, "past the lifetime: replaced");

    let forever = AzurePgPool::builder(ctx.settings())
        .default_credential(credential)
        .clock(Arc::new(clock.clone()))
        .max_lifetime(None)
        .build()
        .unwrap();
    let pid = backend_pid(&forever).await;
    clock.advance(Duration::days(30));
    assert_eq!(backend_pid(&forever).await, pid);
}

async fn static_password_mode(ctx: &Ctx) {
    ctx.server
        .create_login_role("local-dev", "local-dev-password")
        .await
        .unwrap();
    let pool =
        AzurePgPool::from_env_with(&ctx.env(&[("DBUSER", "local-dev"), ("DBPASS", "local-dev-password")])).unwrap();
    let user: String = pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, "local-dev");
    assert_eq!(pool.status().tokens.fetches, 0);
    let logs = ctx.logs.text();
    assert!(logs.contains("static password (local development mode)"), "{logs}");
    assert!(!logs.contains("local-dev-password"));
    assert!(!format!("{pool:?}").contains("local-dev-password"));
}

async fn cluster_is_removed_on_drop_even_after_a_panic(_ctx: &Ctx) {
    let server = PostgresServer::start("scratch").await.unwrap();
    let (dir, port) = (server.dir().to_path_buf(), server.port());
    assert!(dir.exists());
    let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async move {
        let _server = server;
        panic!("a failing test");
    }))
    .await;
    assert!(outcome.is_err());
    assert!(!dir.exists(), "cluster directory left behind");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "server still listening"
    );
}

async fn no_token_in_logs_or_debug(ctx: &Ctx) {
    let pool = AzurePgPool::from_env_with(&ctx.env(&[])).unwrap();
    let client = pool.get().await.unwrap();
    let debug = format!("{pool:?} {:?} {client:?} {:?}", pool.status(), ctx.env(&[]));
    let mut secrets = ctx.endpoint.issued_tokens();
    secrets.push(HEADER_SECRET.to_owned());
    assert!(secrets.len() > 1);
    ctx.logs.assert_secrets_absent(&secrets, &debug);
}

fn main() {
    let listener = common::identity_env(HEADER_SECRET, &[]);
    let logs = common::capture_logs();
    let failed = common::runtime().block_on(async {
        let endpoint = common::identity_endpoint(listener, HEADER_SECRET, IDENTITY).await;
        let server = PostgresServer::start("restaurants").await.unwrap();
        server
            .create_login_role(IDENTITY, &endpoint.current_token(SCOPE, None))
            .await
            .unwrap();
        let ctx = Ctx { endpoint, server, logs };
        let all = tests![Ctx:
            queries_over_tls_with_managed_identity,
            token_rotation_keeps_old_connections_and_new_ones_retry,
            endpoint_down_while_token_valid,
            endpoint_down_after_expiry_gives_typed_error_then_recovers,
            postgres_restart_under_load,
            exhausted_pool_times_out_with_a_typed_error,
            bad_settings_name_the_variable,
            plain_tcp_is_refused_by_the_server,
            max_lifetime_on_the_injected_clock,
            static_password_mode,
            cluster_is_removed_on_drop_even_after_a_panic,
            no_token_in_logs_or_debug,
        ];
        common::run(&ctx, &all).await
    });
    common::finish(failed);
}
