//! Token-cache hit rates over simulated days, on the injected clock.
//!
//! Every fetch is a real HTTP request to the local identity endpoint, which stamps tokens with
//! the same manual clock, so a simulated day takes seconds. Prints one row per scenario and
//! writes the same rows to `target/hit_rates.json`.
//!
//! `cargo bench --bench hit_rates`
#![allow(clippy::disallowed_methods, reason = "reports real elapsed time of the simulation")]

#[path = "../tests/common/mod.rs"]
mod common;

use azure_core::credentials::TokenCredential;
use azure_core::time::{Duration, OffsetDateTime};
use azure_passwordless::emulator::IdentityEndpoint;
use azure_passwordless::{DefaultAzureCredential, ManualClock, TokenCache};
use std::sync::Arc;

const SCOPE: &str = "https://ossrdbms-aad.database.windows.net/.default";
const HEADER: &str = "hit-rates-identity-header";

#[derive(Debug)]
struct Row {
    name: &'static str,
    /// Real time the scenario took, filled in by `timed`.
    seconds: f64,
    requests: u64,
    fetches: u64,
    hit_rate: f64,
    waited: u64,
    failed: u64,
}

struct Sim {
    clock: ManualClock,
    endpoint: IdentityEndpoint,
    cache: TokenCache,
}

async fn sim(lifetime: Duration) -> Sim {
    let clock = ManualClock::new(OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap());
    let endpoint = IdentityEndpoint::builder()
        .clock(Arc::new(clock.clone()))
        .lifetime(lifetime)
        .start()
        .await
        .unwrap();
    let cache = TokenCache::builder(endpoint.credential(None))
        .clock(Arc::new(clock.clone()))
        // A fixed jitter keeps the report repeatable.
        .jitter(|_| Duration::seconds(30))
        .build();
    Sim { clock, endpoint, cache }
}

/// `rate` new connections a second for `length`; the endpoint is down during `outage`
/// (offsets from the start).
async fn steady(name: &'static str, s: &Sim, length: Duration, rate: i64, outage: Option<(Duration, Duration)>) -> Row {
    let step = Duration::seconds(1) / rate as i32;
    let steps = length.whole_seconds() * rate;
    let start = s.clock.now_for_sim();
    let (mut requests, mut failed) = (0, 0);
    let mut fetches_seen = 0;
    for _ in 0..steps {
        if let Some((down, up)) = outage {
            let offset = s.clock.now_for_sim() - start;
            if offset >= down && offset < up {
                s.endpoint.fail_with(503, "identity endpoint down");
            } else {
                s.endpoint.recover();
            }
        }
        requests += 1;
        if s.cache.get(SCOPE).await.is_err() {
            failed += 1;
        }
        let fetches = s.cache.stats().fetches;
        if fetches != fetches_seen {
            // Let a background refresh land before simulated time moves on.
            s.cache.settle().await;
            fetches_seen = fetches;
        }
        s.clock.advance(step);
    }
    let stats = s.cache.stats();
    Row {
        seconds: 0.0,
        name,
        requests,
        fetches: stats.fetches,
        hit_rate: stats.hit_rate(),
        waited: stats.waits,
        failed,
    }
}

trait NowForSim {
    fn now_for_sim(&self) -> OffsetDateTime;
}

impl NowForSim for ManualClock {
    fn now_for_sim(&self) -> OffsetDateTime {
        azure_passwordless::Clock::now(self)
    }
}

async fn cold_callers(name: &'static str, s: &Sim, callers: u64) -> Row {
    s.endpoint.hold();
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let cache = s.cache.clone();
            tokio::spawn(async move { cache.get(SCOPE).await.is_ok() })
        })
        .collect();
    while s.cache.stats().waits < callers {
        tokio::task::yield_now().await;
    }
    s.endpoint.release();
    let mut failed = 0;
    for t in tasks {
        if !t.await.unwrap() {
            failed += 1;
        }
    }
    let stats = s.cache.stats();
    Row {
        seconds: 0.0,
        name,
        requests: callers,
        fetches: stats.fetches,
        hit_rate: stats.hit_rate(),
        waited: stats.waits,
        failed,
    }
}

/// The seed app's pattern: a new DefaultAzureCredential, and so a fetch, for every request.
async fn credential_per_request(name: &'static str, s: &Sim, length: Duration, rate: i64) -> Row {
    let before = s.endpoint.request_count();
    let steps = length.whole_seconds() * rate;
    let (mut requests, mut failed) = (0, 0);
    for _ in 0..steps {
        requests += 1;
        let credential = DefaultAzureCredential::new().unwrap();
        if credential.get_token(&[SCOPE], None).await.is_err() {
            failed += 1;
        }
        s.clock.advance(Duration::seconds(1) / rate as i32);
    }
    let fetches = s.endpoint.request_count() - before;
    Row {
        seconds: 0.0,
        name,
        requests,
        fetches,
        hit_rate: 1.0 - fetches as f64 / requests as f64,
        waited: requests,
        failed,
    }
}

fn main() {
    let listener = common::identity_env(HEADER, &[("AZURE_TOKEN_CREDENTIALS", "ManagedIdentityCredential")]);
    let rt = common::runtime();
    let began = std::time::Instant::now();
    let rows = rt.block_on(async {
        let mut rows = Vec::new();
        let mut mark = std::time::Instant::now();
        let mut timed = move |mut row: Row| {
            row.seconds = mark.elapsed().as_secs_f64();
            mark = std::time::Instant::now();
            row
        };
        let s = sim(Duration::hours(24)).await;
        rows.push(timed(
            steady("1: 24 h, 10 conn/s, 24 h tokens", &s, Duration::hours(24), 10, None).await,
        ));
        let s = sim(Duration::hours(1)).await;
        rows.push(timed(
            steady("2: 8 h, 10 conn/s, 1 h tokens", &s, Duration::hours(8), 10, None).await,
        ));
        let s = sim(Duration::hours(24)).await;
        rows.push(timed(cold_callers("3: 1,000 concurrent cold callers", &s, 1000).await));
        let s = sim(Duration::hours(24)).await;
        // Refresh point: 12 h + 30 s jitter. Down from 11:55 to 12:05.
        let outage = (Duration::minutes(11 * 60 + 55), Duration::minutes(12 * 60 + 5));
        let row = steady(
            "4: endpoint down 10 min across refresh",
            &s,
            Duration::hours(13),
            10,
            Some(outage),
        )
        .await;
        rows.push(timed(row));
        // The baseline runs on its own endpoint, reached through the process environment.
        let clock = ManualClock::new(OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap());
        let endpoint = IdentityEndpoint::builder()
            .clock(Arc::new(clock.clone()))
            .listener(listener)
            .header_secret(HEADER)
            .start()
            .await
            .unwrap();
        let cache = TokenCache::new(endpoint.credential(None));
        let base = Sim { clock, endpoint, cache };
        let row = credential_per_request("5: seed: new credential per request", &base, Duration::minutes(1), 10).await;
        rows.push(timed(row));
        rows
    });

    println!(
        "\n{:<42} {:>9} {:>8} {:>10} {:>8} {:>7}",
        "scenario", "requests", "fetches", "hit rate", "waited", "failed"
    );
    for r in &rows {
        println!(
            "{:<42} {:>9} {:>8} {:>9.4}% {:>8} {:>7} {:>9.1}",
            r.name,
            r.requests,
            r.fetches,
            r.hit_rate * 100.0,
            r.waited,
            r.failed,
            r.seconds
        );
    }
    println!("(simulated in {:.1} s of real time)", began.elapsed().as_secs_f64());

    let json = serde_json::json!({
        "scenarios": rows.iter().map(|r| serde_json::json!({
            "name": r.name, "requests": r.requests, "fetches": r.fetches,
            "hit_rate": r.hit_rate, "waited": r.waited, "failed": r.failed,
        })).collect::<Vec<_>>()
    });
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hit_rates.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    println!("wrote {}", path.display());

    // The goals, checked so a regression fails the run loudly.
    let goals = [
        rows[0].hit_rate >= 0.99999 && rows[0].fetches <= 2,
        rows[2].fetches == 1,
        rows[3].failed == 0,
    ];
    if goals.contains(&false) {
        eprintln!("a hit-rate goal was missed: {goals:?}");
        std::process::exit(1);
    }
}
