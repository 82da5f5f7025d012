//! BlobUploader against real Azurite (npm, pinned) over HTTPS with `--oauth basic`, with
//! bearer tokens from the local identity endpoint through the real azure_identity
//! ManagedIdentityCredential.
//!
//! azure_identity reads IDENTITY_ENDPOINT/IDENTITY_HEADER from the process environment, so this
//! binary has its own `main` (harness = false) and sets them before any thread starts.

mod common;

use azure_core::Bytes;
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_passwordless::blob::{BlobUploader, ContentType, ReadUrls};
use azure_passwordless::emulator::{Azurite, IdentityEndpoint, TestCertificates};
use azure_passwordless::{DefaultAzureCredential, Env, TokenCache};
use futures_util::TryStreamExt;
use std::sync::Arc;
use std::time::Duration;

const HEADER_SECRET: &str = "blob-test-identity-header-9d0e";

struct Ctx {
    endpoint: IdentityEndpoint,
    azurite: Azurite,
    logs: common::LogBuffer,
}

impl Ctx {
    fn env(&self, extra: &[(&str, &str)]) -> Env {
        let url = self.endpoint.url();
        let account = self.azurite.account_url();
        let pairs = vec![
            ("IDENTITY_ENDPOINT", url.as_str()),
            ("IDENTITY_HEADER", HEADER_SECRET),
            ("STORAGE_ACCOUNT_NAME", account.as_str()),
            ("STORAGE_CONTAINER_NAME", "photos"),
        ];
        common::env_with(pairs, extra)
    }

    fn cache(&self) -> TokenCache {
        TokenCache::for_default_credential(DefaultAzureCredential::builder().env(self.env(&[])).build().unwrap())
    }

    /// An uploader builder for Azurite (its CA trusted) with the settings in `env`; no token source yet.
    fn builder_for(&self, env: &Env) -> azure_passwordless::blob::BlobUploaderBuilder {
        BlobUploader::builder_from_env(env)
            .unwrap()
            .root_certificate_pem(self.azurite.ca_pem().as_bytes().to_vec())
    }

    fn uploader(&self) -> azure_passwordless::blob::BlobUploaderBuilder {
        self.builder_for(&self.env(&[]))
            .token_cache(self.cache())
            .create_container_if_missing(true)
    }
}

/// `len` bytes that start with the signature of `kind`.
fn image(kind: ContentType, len: usize) -> Vec<u8> {
    let head: &[u8] = match kind {
        ContentType::Png => b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
        ContentType::Jpeg => &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F', 0, 1],
        ContentType::Gif => b"GIF89a\x01\0\x01\0\0\0",
        _ => b"RIFF\x24\0\0\0WEBPVP8 ",
    };
    let mut data = head.to_vec();
    data.extend((0..len.saturating_sub(head.len())).map(|i| (i * 31 % 251) as u8));
    data
}

fn chunks(data: Vec<u8>, size: usize) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let parts: Vec<Result<Bytes, std::io::Error>> = data.chunks(size).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    futures_util::stream::iter(parts)
}

async fn download(uploader: &BlobUploader, name: &str) -> (Vec<u8>, Option<String>) {
    let result = uploader
        .container_client()
        .blob_client(name)
        .download(None)
        .await
        .unwrap();
    let content_type = result.properties.content_type.clone();
    (result.body.collect().await.unwrap().to_vec(), content_type)
}

async fn blob_count(uploader: &BlobUploader) -> usize {
    let items: Vec<_> = uploader
        .container_client()
        .list_blobs(None)
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    items.len()
}

async fn bytes_round_trip(ctx: &Ctx) {
    let uploader = ctx.uploader().build().unwrap();
    for kind in ContentType::ALL {
        let data = image(kind, 200 * 1024);
        let blob = uploader.upload_bytes(data.clone(), None).await.unwrap();
        assert!(blob.name.ends_with(&format!(".{}", kind.extension())), "{}", blob.name);
        assert_eq!(blob.content_type, kind);
        assert_eq!(blob.size, data.len() as u64);
        let (back, content_type) = download(&uploader, &blob.name).await;
        assert_eq!(back, data);
        assert_eq!(content_type.as_deref(), Some(kind.mime()));
    }
    // A caller-chosen name is kept.
    let blob = uploader
        .upload_bytes(image(ContentType::Png, 1000), Some("reviews/7/cover.png"))
        .await
        .unwrap();
    assert_eq!(blob.name, "reviews/7/cover.png");
    // azure_storage_blob escapes '/' inside a name as %2F; the service reads it as a '/'.
    assert!(
        blob.url.as_str().ends_with("/photos/reviews%2F7%2Fcover.png"),
        "{}",
        blob.url
    );
    assert_eq!(download(&uploader, "reviews/7/cover.png").await.0.len(), 1000);
}

async fn stream_round_trip_in_blocks(ctx: &Ctx) {
    let uploader = ctx
        .uploader()
        .max_size(16 * 1024 * 1024)
        .partition_size(1024 * 1024)
        .parallel(3)
        .build()
        .unwrap();
    let data = image(ContentType::Jpeg, 5 * 1024 * 1024 + 123);
    let blob = uploader
        .upload_stream(chunks(data.clone(), 64 * 1024), None)
        .await
        .unwrap();
    assert!(blob.name.ends_with(".jpg"));
    assert_eq!(blob.size, data.len() as u64);
    let (back, content_type) = download(&uploader, &blob.name).await;
    assert_eq!(back.len(), data.len());
    assert!(back == data, "content differs");
    assert_eq!(content_type.as_deref(), Some("image/jpeg"));

    // A small stream takes the one-request path.
    let small = image(ContentType::Gif, 10_000);
    let blob = uploader.upload_stream(chunks(small.clone(), 999), None).await.unwrap();
    assert_eq!(download(&uploader, &blob.name).await.0, small);
}

async fn large_upload_goes_through_the_partitioned_path(ctx: &Ctx) {
    let uploader = ctx
        .uploader()
        .max_size(64 * 1024 * 1024)
        .partition_size(8 * 1024 * 1024)
        .build()
        .unwrap();
    let data = image(ContentType::Png, 64 * 1024 * 1024);
    let blob = uploader.upload_bytes(data, None).await.unwrap();
    let blocks = uploader
        .container_client()
        .blob_client(&blob.name)
        .block_blob_client()
        .get_block_list(azure_storage_blob::models::BlockListType::Committed, None)
        .await
        .unwrap()
        .into_model()
        .unwrap();
    let committed = blocks.committed_blocks.map(|b| b.len()).unwrap_or(0);
    assert_eq!(committed, 8, "64 MiB in 8 MiB partitions");
    assert_eq!(blob.size, 64 * 1024 * 1024);
}

async fn over_cap_is_rejected_mid_stream_and_leaves_no_blob(ctx: &Ctx) {
    let uploader = ctx
        .uploader()
        .max_size(2 * 1024 * 1024)
        .partition_size(256 * 1024)
        .build()
        .unwrap();
    let before = blob_count(&uploader).await;
    let data = image(ContentType::Png, 6 * 1024 * 1024);
    let pulled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = pulled.clone();
    let stream = futures_util::StreamExt::inspect(chunks(data.clone(), 64 * 1024), move |_| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    let err = uploader.upload_stream(stream, None).await.unwrap_err();
    assert!(err.is_too_large(), "{err:?}");
    assert!(err.to_string().contains("2097152-byte limit"), "{err}");
    let pulled = pulled.load(std::sync::atomic::Ordering::SeqCst);
    assert!(pulled <= 33, "kept reading after the cap: {pulled} chunks");
    assert_eq!(blob_count(&uploader).await, before, "a partial upload was left behind");

    let err = uploader
        .upload_stream(chunks(data.clone(), 64 * 1024), Some("too-big.png"))
        .await
        .unwrap_err();
    assert!(err.is_too_large());
    assert!(
        !uploader
            .container_client()
            .blob_client("too-big.png")
            .exists()
            .await
            .unwrap()
    );
    let err = uploader.upload_bytes(data, None).await.unwrap_err();
    assert!(err.is_too_large());
}

async fn non_images_and_disallowed_types_are_refused(ctx: &Ctx) {
    let uploader = ctx.uploader().build().unwrap();
    let before = blob_count(&uploader).await;
    let err = uploader
        .upload_bytes(b"%PDF-1.7 not a photo at all".to_vec(), None)
        .await
        .unwrap_err();
    assert!(err.is_invalid_input(), "{err:?}");
    assert!(err.to_string().contains("PNG, JPEG, GIF, WebP"), "{err}");
    let err = uploader
        .upload_stream(chunks(b"<html>hello</html>".repeat(1000), 100), None)
        .await
        .unwrap_err();
    assert!(err.is_invalid_input());

    let png_only = ctx.uploader().allowed_types([ContentType::Png]).build().unwrap();
    let err = png_only
        .upload_bytes(image(ContentType::Jpeg, 5000), None)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("image/jpeg uploads are not allowed here; allowed: PNG"),
        "{err}"
    );
    assert_eq!(blob_count(&uploader).await, before);
}

async fn hostile_names_are_refused(ctx: &Ctx) {
    let uploader = ctx.uploader().build().unwrap();
    for name in ["../../etc/passwd.png", "", "a/./b.png", &"x".repeat(2000)] {
        let err = uploader
            .upload_bytes(image(ContentType::Png, 100), Some(name))
            .await
            .unwrap_err();
        assert!(err.is_invalid_input(), "{name:?}: {err:?}");
    }
}

async fn delete_undoes_an_upload(ctx: &Ctx) {
    let uploader = ctx.uploader().build().unwrap();
    let blob = uploader
        .upload_bytes(image(ContentType::Webp, 3000), None)
        .await
        .unwrap();
    let client = uploader.container_client().blob_client(&blob.name);
    assert!(client.exists().await.unwrap());
    uploader.delete(&blob.name).await.unwrap();
    assert!(!client.exists().await.unwrap());
    let err = uploader.delete(&blob.name).await.unwrap_err();
    assert_eq!(err.kind(), azure_passwordless::ErrorKind::NotFound, "{err:?}");
}

async fn missing_container_is_a_clear_error(ctx: &Ctx) {
    let uploader = ctx
        .builder_for(&ctx.env(&[("STORAGE_CONTAINER_NAME", "no-such-container")]))
        .token_cache(ctx.cache())
        .build()
        .unwrap();
    let err = uploader
        .upload_bytes(image(ContentType::Png, 100), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), azure_passwordless::ErrorKind::NotFound, "{err:?}");
    assert!(
        err.to_string().contains("container 'no-such-container' does not exist"),
        "{err}"
    );
}

/// Asks for a PostgreSQL token whatever scope it is asked for: the wrong audience for storage.
#[derive(Debug)]
struct WrongAudience(Arc<dyn TokenCredential>);

#[async_trait::async_trait]
impl TokenCredential for WrongAudience {
    async fn get_token(&self, _: &[&str], options: Option<TokenRequestOptions<'_>>) -> azure_core::Result<AccessToken> {
        self.0
            .get_token(&["https://ossrdbms-aad.database.windows.net/.default"], options)
            .await
    }
}

async fn wrong_audience_is_a_clear_auth_error(ctx: &Ctx) {
    let uploader = ctx
        .builder_for(&ctx.env(&[]))
        .credential(Arc::new(WrongAudience(ctx.endpoint.credential(None))))
        .build()
        .unwrap();
    let err = uploader
        .upload_bytes(image(ContentType::Png, 100), None)
        .await
        .unwrap_err();
    assert!(err.is_auth(), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("Storage Blob Data Contributor"), "{text}");
    assert!(text.contains("audience must be https://storage.azure.com"), "{text}");
}

async fn stopped_storage_fails_fast_and_clearly(ctx: &Ctx) {
    let mut down = Azurite::start(&TestCertificates::generate().unwrap()).await.unwrap();
    let uploader = BlobUploader::builder(&down.account_url(), "photos")
        .token_cache(ctx.cache())
        .root_certificate_pem(down.ca_pem().as_bytes().to_vec())
        .request_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    down.stop().await;
    let started = tokio::time::Instant::now();
    let err = uploader
        .upload_bytes(image(ContentType::Png, 100), None)
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.kind(), azure_passwordless::ErrorKind::Io, "{err:?}");
    assert!(
        err.to_string()
            .contains("cannot reach Blob Storage at https://127.0.0.1:"),
        "{err}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

async fn fifty_concurrent_uploads_share_one_token_fetch(ctx: &Ctx) {
    let cache = TokenCache::new(ctx.endpoint.credential(None));
    let uploader = ctx
        .builder_for(&ctx.env(&[]))
        .token_cache(cache.clone())
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let uploader = uploader.clone();
            tokio::spawn(async move { uploader.upload_bytes(image(ContentType::Png, 20_000 + i), None).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(cache.stats().fetches, 1, "{:?}", cache.stats());
}

async fn user_delegation_sas_reads_a_private_blob(ctx: &Ctx) {
    let lifetime = azure_core::time::Duration::minutes(15);
    let uploader = ctx
        .uploader()
        .read_urls(ReadUrls::UserDelegationSas { lifetime })
        .build()
        .unwrap();
    let data = image(ContentType::Png, 5000);
    let blob = uploader.upload_bytes(data.clone(), None).await.unwrap();
    let url = uploader.read_url(&blob.name).await.unwrap();
    let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query.get("sp").map(String::as_str), Some("r"), "read-only");
    assert_eq!(query.get("sr").map(String::as_str), Some("b"));
    assert!(query.contains_key("sig") && query.contains_key("skoid"));

    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ctx.azurite.ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let response = http.get(url.clone()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(
        response.bytes().await.unwrap().to_vec(),
        data,
        "anyone with the URL can read"
    );

    // Without the SAS the private container answers no.
    let plain = http.get(uploader.blob_url(&blob.name).unwrap()).send().await.unwrap();
    assert_ne!(plain.status(), 200);
    // A tampered SAS (write permission) is refused.
    let tampered = url.as_str().replace("sp=r", "sp=rw");
    assert_eq!(http.get(tampered).send().await.unwrap().status(), 403);

    // Time is injected: a clock two hours behind signs a URL that has already expired.
    let clock = azure_passwordless::ManualClock::new(
        azure_core::time::OffsetDateTime::from_unix_timestamp(
            azure_passwordless::Clock::now(&azure_passwordless::SystemClock).unix_timestamp() - 2 * 3600,
        )
        .unwrap(),
    );
    let stale = ctx
        .uploader()
        .read_urls(ReadUrls::UserDelegationSas { lifetime })
        .clock(Arc::new(clock))
        .build()
        .unwrap();
    let expired = stale.read_url(&blob.name).await.unwrap();
    assert_eq!(http.get(expired).send().await.unwrap().status(), 403);
}

async fn bad_settings_name_the_variable(ctx: &Ctx) {
    for (extra, expected) in [
        (&[("STORAGE_ACCOUNT_NAME", "")][..], "set STORAGE_ACCOUNT_NAME"),
        (
            &[("STORAGE_ACCOUNT_NAME", "http://127.0.0.1:1/devstoreaccount1")][..],
            "must be an https:// URL",
        ),
        (
            &[("STORAGE_CONTAINER_NAME", "Bad_Container")][..],
            "STORAGE_CONTAINER_NAME",
        ),
        (&[("STORAGE_CONTAINER_NAME", "")][..], "set STORAGE_CONTAINER_NAME"),
    ] {
        let err = BlobUploader::builder_from_env(&ctx.env(extra)).unwrap_err();
        assert!(err.is_config());
        assert!(err.to_string().contains(expected), "{expected:?} not in {err}");
    }
}

async fn no_token_in_logs_or_debug(ctx: &Ctx) {
    let uploader = ctx.uploader().build().unwrap();
    let blob = uploader.upload_bytes(image(ContentType::Png, 100), None).await.unwrap();
    let debug = format!("{uploader:?} {blob:?}");
    let mut secrets = ctx.endpoint.issued_tokens();
    secrets.push(HEADER_SECRET.to_owned());
    ctx.logs.assert_secrets_absent(&secrets, &debug);
}

fn main() {
    let listener = common::identity_env(HEADER_SECRET, &[]);
    let logs = common::capture_logs();
    let failed = common::runtime().block_on(async {
        let endpoint = common::identity_endpoint(listener, HEADER_SECRET, "restaurant-review-identity").await;
        let azurite = Azurite::start(&TestCertificates::generate().unwrap()).await.unwrap();
        let ctx = Ctx {
            endpoint,
            azurite,
            logs,
        };
        let all = tests![Ctx:
            bytes_round_trip,
            stream_round_trip_in_blocks,
            large_upload_goes_through_the_partitioned_path,
            over_cap_is_rejected_mid_stream_and_leaves_no_blob,
            non_images_and_disallowed_types_are_refused,
            hostile_names_are_refused,
            delete_undoes_an_upload,
            missing_container_is_a_clear_error,
            wrong_audience_is_a_clear_auth_error,
            stopped_storage_fails_fast_and_clearly,
            fifty_concurrent_uploads_share_one_token_fetch,
            user_delegation_sas_reads_a_private_blob,
            bad_settings_name_the_variable,
            no_token_in_logs_or_debug,
        ];
        let failed = common::run(&ctx, &all).await;
        if !failed.is_empty() {
            eprintln!("--- Azurite log ---\n{}", ctx.azurite.log());
        }
        failed
    });
    common::finish(failed);
}
