//! AzurePgPool (token passwords via DefaultAzureCredential → local identity endpoint) vs plain
//! deadpool-postgres with a static password, against the same TLS PostgreSQL.
//!
//! `cargo bench --all-features --bench pool` — criterion's numbers, then a side-by-side summary
//! with ratios (ours / plain; goal ≤ 1.05).
#![allow(clippy::disallowed_methods, reason = "a benchmark measures real time")]

#[path = "../tests/common/mod.rs"]
mod common;

use azure_passwordless::emulator::{IdentityEndpoint, PostgresServer};
use azure_passwordless::postgres::{AzurePgPool, PgSettings};
use azure_passwordless::{DefaultAzureCredential, Env};
use criterion::Criterion;
use deadpool_postgres::{Pool, Runtime};
use std::time::{Duration, Instant};

const SCOPE: &str = "https://ossrdbms-aad.database.windows.net/.default";
const HEADER: &str = "pool-bench-identity-header";
const IDENTITY: &str = "bench-identity";

fn main() {
    let listener = common::identity_env(HEADER, &[]);
    let url = format!("http://{}/msi/token", listener.local_addr().unwrap());
    let rt = common::runtime();
    let (endpoint, server) = rt.block_on(async {
        let endpoint = IdentityEndpoint::builder()
            .listener(listener)
            .header_secret(HEADER)
            .identity_name(IDENTITY)
            .start()
            .await
            .unwrap();
        let server = PostgresServer::start("bench").await.unwrap();
        server
            .create_login_role(IDENTITY, &endpoint.current_token(SCOPE, None))
            .await
            .unwrap();
        server
            .create_login_role("plain", "plain-static-password")
            .await
            .unwrap();
        (endpoint, server)
    });

    let settings = PgSettings::new("127.0.0.1", "bench")
        .port(server.port())
        .root_cert_pem(server.ca_pem().as_bytes().to_vec());
    let env = Env::from_slice(&[("IDENTITY_ENDPOINT", &url), ("IDENTITY_HEADER", HEADER)]);
    let ours = AzurePgPool::builder(settings)
        .default_credential(DefaultAzureCredential::builder().env(env).build().unwrap())
        .max_size(4)
        .build()
        .unwrap();
    let plain = plain_pool(&server);
    // Our pool with the plain role's static password: separates the pool's own cost from the
    // token's.
    let ours_static = AzurePgPool::builder(
        PgSettings::new("127.0.0.1", "bench")
            .port(server.port())
            .root_cert_pem(server.ca_pem().as_bytes().to_vec())
            .user("plain")
            .password("plain-static-password"),
    )
    .max_size(4)
    .build()
    .unwrap();
    rt.block_on(async {
        ours.get().await.unwrap().query_one("SELECT 1", &[]).await.unwrap();
        plain.get().await.unwrap().query_one("SELECT 1", &[]).await.unwrap();
    });

    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(4));
    {
        let mut g = c.benchmark_group("checkout_select_1");
        g.bench_function("plain deadpool-postgres (static password)", |b| {
            b.to_async(&rt)
                .iter(|| async { plain.get().await.unwrap().query_one("SELECT 1", &[]).await.unwrap() })
        });
        g.bench_function("AzurePgPool (Entra token)", |b| {
            b.to_async(&rt)
                .iter(|| async { ours.get().await.unwrap().query_one("SELECT 1", &[]).await.unwrap() })
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("new_connection");
        g.sample_size(20);
        g.bench_function("plain deadpool-postgres (static password)", |b| {
            b.to_async(&rt).iter(|| async {
                plain.retain(|_, _| false);
                plain.get().await.unwrap()
            })
        });
        g.bench_function("AzurePgPool (Entra token)", |b| {
            b.to_async(&rt).iter(|| async {
                ours.inner().retain(|_, _| false);
                ours.get().await.unwrap()
            })
        });
        g.bench_function("AzurePgPool (static password)", |b| {
            b.to_async(&rt).iter(|| async {
                ours_static.inner().retain(|_, _| false);
                ours_static.get().await.unwrap()
            })
        });
        g.finish();
    }
    c.final_summary();

    // Side by side in many short alternating rounds, so drift on a shared machine hits both
    // alike; the ratio reported is the median of the per-round ratios.
    const ROUNDS: usize = 20;
    let (checkouts, news) = (500u32, 10u32);
    let mut rows: Vec<(&str, Vec<f64>, Vec<f64>, u32)> = vec![
        ("checkout + SELECT 1", vec![], vec![], checkouts),
        ("new connection", vec![], vec![], news),
    ];
    rt.block_on(async {
        for _ in 0..ROUNDS {
            let t = Instant::now();
            for _ in 0..checkouts {
                plain.get().await.unwrap().query_one("SELECT 1", &[]).await.unwrap();
            }
            rows[0].1.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            for _ in 0..checkouts {
                ours.get().await.unwrap().query_one("SELECT 1", &[]).await.unwrap();
            }
            rows[0].2.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            for _ in 0..news {
                plain.retain(|_, _| false);
                drop(plain.get().await.unwrap());
            }
            rows[1].1.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            for _ in 0..news {
                ours.inner().retain(|_, _| false);
                drop(ours.get().await.unwrap());
            }
            rows[1].2.push(t.elapsed().as_secs_f64());
        }
    });
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("\nsummary ({ROUNDS} alternating rounds; µs per operation and ratio = medians)");
    println!(
        "{:<22} {:>12} {:>12} {:>8}",
        "operation", "plain", "AzurePgPool", "ratio"
    );
    for (name, plain_t, ours_t, n) in rows {
        let ratios: Vec<f64> = plain_t.iter().zip(&ours_t).map(|(p, o)| o / p).collect();
        let per = |v: Vec<f64>| median(v) * 1e6 / f64::from(n);
        println!(
            "{name:<22} {:>12.1} {:>12.1} {:>8.3}",
            per(plain_t),
            per(ours_t),
            median(ratios)
        );
    }
    println!(
        "token cache: {:?}; identity endpoint requests: {}",
        ours.status().tokens,
        endpoint.request_count()
    );
    drop(server);
}

fn plain_pool(server: &PostgresServer) -> Pool {
    let mut config = deadpool_postgres::Config::new();
    config.host = Some("127.0.0.1".into());
    config.port = Some(server.port());
    config.user = Some("plain".into());
    config.password = Some("plain-static-password".into());
    config.dbname = Some("bench".into());
    config.ssl_mode = Some(deadpool_postgres::SslMode::Require);
    config.pool = Some(deadpool_postgres::PoolConfig::new(4));
    let tls = native_tls::TlsConnector::builder()
        .add_root_certificate(native_tls::Certificate::from_pem(server.ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    config
        .create_pool(Some(Runtime::Tokio1), postgres_native_tls::MakeTlsConnector::new(tls))
        .unwrap()
}
