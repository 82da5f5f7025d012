//! Hit path of our TokenCache vs azure_identity's own cached ManagedIdentityCredential, both
//! against the local identity endpoint, with 1 task and with 4 concurrent tasks.
//!
//! `cargo bench --bench token_cache` — prints criterion's numbers, then a side-by-side summary
//! with the ratio.
#![allow(clippy::disallowed_methods, reason = "a benchmark measures real time")]

#[path = "../tests/common/mod.rs"]
mod common;

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
    let listener = common::identity_env(HEADER, &[]);
    let rt = common::runtime();
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
        let scoped = ours.scoped(SCOPE);
        g.bench_function("ScopedTokenCache::get", |b| {
            b.to_async(&rt).iter(|| async { scoped.get().await.unwrap() })
        });
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

    // Side by side in alternating rounds (so drift on a shared machine hits all alike); each
    // figure is the median over the rounds, per call (4 tasks: wall time / calls of all tasks).
    const ROUNDS: usize = 15;
    let n: u64 = 200_000;
    let scoped = ours.scoped(SCOPE);
    let mut one: [Vec<f64>; 3] = Default::default();
    let mut four: [Vec<f64>; 2] = Default::default();
    for _ in 0..ROUNDS {
        rt.block_on(async {
            let t = Instant::now();
            for _ in 0..n {
                std::hint::black_box(sdk.get_token(&[SCOPE], None).await.unwrap());
            }
            one[0].push(t.elapsed().as_nanos() as f64 / n as f64);
            let t = Instant::now();
            for _ in 0..n {
                std::hint::black_box(ours.get(SCOPE).await.unwrap());
            }
            one[1].push(t.elapsed().as_nanos() as f64 / n as f64);
            let t = Instant::now();
            for _ in 0..n {
                std::hint::black_box(scoped.get().await.unwrap());
            }
            one[2].push(t.elapsed().as_nanos() as f64 / n as f64);
        });
        four[0].push(rt.block_on(four_tasks_sdk(&sdk, n)).as_nanos() as f64 / n as f64);
        four[1].push(rt.block_on(four_tasks_ours(&ours, n)).as_nanos() as f64 / n as f64);
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("\nsummary: ns per call, medians of {ROUNDS} alternating rounds");
    println!(
        "{:<8} {:>15} {:>16} {:>8} {:>22} {:>8}",
        "tasks", "azure_identity", "TokenCache::get", "ratio", "ScopedTokenCache::get", "ratio"
    );
    let (s1, o1, c1) = (median(&one[0]), median(&one[1]), median(&one[2]));
    println!(
        "{:<8} {s1:>15.1} {o1:>16.1} {:>7.1}x {c1:>22.1} {:>7.1}x",
        "1",
        s1 / o1,
        s1 / c1
    );
    let (s4, o4) = (median(&four[0]), median(&four[1]));
    println!(
        "{:<8} {s4:>15.1} {o4:>16.1} {:>7.1}x {:>22} {:>8}",
        "4",
        s4 / o4,
        "-",
        "-"
    );
    println!("endpoint requests: {}", endpoint.request_count());
}

// Two near-identical functions on purpose: a generic version would have to clone the shared
// handle per call (its future cannot borrow the closure), adding a contended reference count to
// exactly the path being measured.
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
