//! Hit path of our TokenCache vs azure_identity's own cached ManagedIdentityCredential, both
//! against the local identity endpoint, with 1 task and with 4 concurrent tasks.
//!
//! `cargo bench --bench token_cache` — prints criterion's numbers, then a side-by-side summary
//! with the ratio.
#![allow(clippy::disallowed_methods, reason = "a benchmark measures real time")]

use azure_core::credentials::TokenCredential;
use azure_passwordless::emulator::IdentityEndpoint;
use azure_passwordless::{DefaultAzureCredential, TokenCache};
use criterion::Criterion;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SCOPE: &str = "https://ossrdbms-aad.database.windows.net/.default";
const HEADER: &str = "bench-identity-header";

type Sdk = Arc<azure_identity::ManagedIdentityCredential>;

fn main() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: single-threaded here; azure_identity reads these from the process environment.
    unsafe {
        std::env::set_var(
            "IDENTITY_ENDPOINT",
            format!("http://{}/msi/token", listener.local_addr().unwrap()),
        );
        std::env::set_var("IDENTITY_HEADER", HEADER);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let endpoint = rt
        .block_on(
            IdentityEndpoint::builder()
                .listener(listener)
                .header_secret(HEADER)
                .start(),
        )
        .unwrap();
    let sdk: Sdk = azure_identity::ManagedIdentityCredential::new(None).unwrap();
    let ours = TokenCache::new(DefaultAzureCredential::new().unwrap());
    rt.block_on(async {
        sdk.get_token(&[SCOPE], None).await.unwrap();
        ours.get(SCOPE).await.unwrap();
    });

    let mut c = Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(3));
    {
        let mut g = c.benchmark_group("cached_token/1_task");
        g.bench_function("azure_identity ManagedIdentityCredential::get_token", |b| {
            b.to_async(&rt)
                .iter(|| async { sdk.get_token(&[SCOPE], None).await.unwrap() })
        });
        g.bench_function("TokenCache::get", |b| {
            b.to_async(&rt).iter(|| async { ours.get(SCOPE).await.unwrap() })
        });
        g.bench_function("TokenCache::get_cached", |b| b.iter(|| ours.get_cached(SCOPE).unwrap()));
        g.bench_function("TokenCache as TokenCredential::get_token", |b| {
            b.to_async(&rt)
                .iter(|| async { ours.get_token(&[SCOPE], None).await.unwrap() })
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("cached_token/4_tasks");
        g.bench_function("azure_identity ManagedIdentityCredential::get_token", |b| {
            b.iter_custom(|iters| rt.block_on(four_tasks_sdk(&sdk, iters)))
        });
        g.bench_function("TokenCache::get", |b| {
            b.iter_custom(|iters| rt.block_on(four_tasks_ours(&ours, iters)))
        });
        g.finish();
    }
    c.final_summary();

    // Side by side, same method for both: per-call wall time over 2 M calls.
    let n = 2_000_000;
    let sdk1 = rt.block_on(async {
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(sdk.get_token(&[SCOPE], None).await.unwrap());
        }
        t.elapsed()
    });
    let ours1 = rt.block_on(async {
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(ours.get(SCOPE).await.unwrap());
        }
        t.elapsed()
    });
    let sdk4 = rt.block_on(four_tasks_sdk(&sdk, n));
    let ours4 = rt.block_on(four_tasks_ours(&ours, n));
    let per = |d: Duration, calls: u64| d.as_nanos() as f64 / calls as f64;
    println!("\nsummary (ns per call; 4 tasks: wall time / calls of all tasks)");
    println!(
        "{:<10} {:>14} {:>14} {:>8}",
        "tasks", "azure_identity", "TokenCache", "ratio"
    );
    for (label, s, o, calls) in [("1", sdk1, ours1, n), ("4", sdk4, ours4, n)] {
        let (s, o) = (per(s, calls), per(o, calls));
        println!("{label:<10} {s:>14.1} {o:>14.1} {:>7.1}x", s / o);
    }
    println!("endpoint requests: {}", endpoint.request_count());
}

async fn four_tasks_sdk(sdk: &Sdk, iters: u64) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let sdk = sdk.clone();
            tokio::spawn(async move {
                for _ in 0..iters / 4 {
                    std::hint::black_box(sdk.get_token(&[SCOPE], None).await.unwrap());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

async fn four_tasks_ours(ours: &TokenCache, iters: u64) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let ours = ours.clone();
            tokio::spawn(async move {
                for _ in 0..iters / 4 {
                    std::hint::black_box(ours.get(SCOPE).await.unwrap());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}
