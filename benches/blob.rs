//! BlobUploader vs the raw azure_storage_blob client on the same Azurite (HTTPS, OAuth), both
//! with bearer tokens from the local identity endpoint: 100 × 200 KB photos, and 1 × 64 MiB.
//!
//! `cargo bench --all-features --bench blob` — prints a side-by-side table with throughput
//! ratios (ours / raw; goal ≥ 0.95), over alternating rounds so machine drift hits both alike.
#![allow(clippy::disallowed_methods, reason = "a benchmark measures real time")]

#[path = "../tests/common/mod.rs"]
mod common;

use azure_core::http::{ClientOptions, Transport};
use azure_passwordless::TokenCache;
use azure_passwordless::blob::BlobUploader;
use azure_passwordless::emulator::{Azurite, IdentityEndpoint, TestCertificates};
use azure_storage_blob::models::BlobClientUploadOptions;
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use std::num::NonZero;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PHOTOS: usize = 100;
const PHOTO: usize = 200 * 1024;
const LARGE: usize = 64 * 1024 * 1024;
const ROUNDS: usize = 3;

fn png(len: usize, seed: usize) -> azure_core::Bytes {
    let mut data = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    data.extend((0..len - data.len()).map(|i| ((i + seed) * 31 % 251) as u8));
    data.into()
}

fn main() {
    let rt = common::runtime();
    rt.block_on(async {
        let endpoint = IdentityEndpoint::builder().start().await.unwrap();
        let azurite = Azurite::start(&TestCertificates::generate().unwrap()).await.unwrap();
        let cache = TokenCache::new(endpoint.credential(None));

        let ours = BlobUploader::builder(&azurite.account_url(), "bench")
            .token_cache(cache.clone())
            .root_certificate_pem(azurite.ca_pem().as_bytes().to_vec())
            .create_container_if_missing(true)
            .max_size(LARGE as u64)
            .build()
            .unwrap();
        // The raw SDK client, with the same transport settings and the same token source.
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(azurite.ca_pem().as_bytes()).unwrap())
            .build()
            .unwrap();
        let raw = BlobContainerClient::new(
            format!("{}/bench", azurite.account_url()).parse().unwrap(),
            Some(Arc::new(cache.clone())),
            Some(BlobContainerClientOptions {
                client_options: ClientOptions {
                    transport: Some(Transport::new(Arc::new(http))),
                    ..Default::default()
                },
                ..Default::default()
            }),
        )
        .unwrap();
        let photos: Vec<_> = (0..PHOTOS).map(|i| png(PHOTO, i)).collect();
        let large = png(LARGE, 7);
        // Warm up both (container creation, token, connections).
        ours.upload_bytes(photos[0].clone(), None).await.unwrap();
        raw.blob_client("warm.png")
            .upload(photos[0].clone().into(), None)
            .await
            .unwrap();

        let (mut ours_photos, mut raw_photos, mut ours_large, mut raw_large) =
            (Duration::ZERO, Duration::ZERO, Duration::ZERO, Duration::ZERO);
        for round in 0..ROUNDS {
            let t = Instant::now();
            let uploads: Vec<_> = photos.iter().map(|p| ours.upload_bytes(p.clone(), None)).collect();
            for r in futures_util::future::join_all(uploads).await {
                r.unwrap();
            }
            ours_photos += t.elapsed();

            let t = Instant::now();
            let uploads: Vec<_> = photos
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let blob = raw.blob_client(&format!("raw-{round}-{i}.png"));
                    let content = p.clone().into();
                    async move {
                        let options = BlobClientUploadOptions {
                            blob_content_type: Some("image/png".into()),
                            ..Default::default()
                        };
                        blob.upload(content, Some(options)).await
                    }
                })
                .collect();
            for r in futures_util::future::join_all(uploads).await {
                r.unwrap();
            }
            raw_photos += t.elapsed();

            let t = Instant::now();
            ours.upload_bytes(large.clone(), None).await.unwrap();
            ours_large += t.elapsed();

            let t = Instant::now();
            let options = BlobClientUploadOptions {
                blob_content_type: Some("image/png".into()),
                parallel: NonZero::new(azure_passwordless::blob::DEFAULT_PARALLEL),
                ..Default::default()
            };
            raw.blob_client(&format!("raw-large-{round}.png"))
                .upload(large.clone().into(), Some(options))
                .await
                .unwrap();
            raw_large += t.elapsed();
        }

        let mib = |bytes: usize, d: Duration| (bytes * ROUNDS) as f64 / (1024.0 * 1024.0) / d.as_secs_f64();
        println!("\nthroughput, MiB/s ({ROUNDS} alternating rounds; ratio = BlobUploader / raw, goal ≥ 0.95)");
        println!(
            "{:<26} {:>10} {:>13} {:>7}",
            "workload", "raw SDK", "BlobUploader", "ratio"
        );
        for (name, bytes, raw_t, ours_t) in [
            ("100 × 200 KB, concurrent", PHOTOS * PHOTO, raw_photos, ours_photos),
            ("1 × 64 MiB", LARGE, raw_large, ours_large),
        ] {
            let (r, o) = (mib(bytes, raw_t), mib(bytes, ours_t));
            println!("{name:<26} {r:>10.1} {o:>13.1} {:>7.3}", o / r);
        }
        println!("token fetches: {}", cache.stats().fetches);
    });
}
