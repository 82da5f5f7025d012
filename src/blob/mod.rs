//! Photo uploads to Azure Blob Storage with bearer tokens (feature `blob`).

mod sas;
mod sniff;

pub use sas::ReadUrls;
pub use sniff::ContentType;

use crate::{Cloud, DefaultAzureCredential, Env, Error, Result, TokenCache, credential::short_retry, error::ErrorKind};
use azure_core::{
    Bytes,
    credentials::TokenCredential,
    http::{ClientOptions, NoFormat, RequestContent, StatusCode, Transport, Url},
};
use azure_storage_blob::{
    BlobClient, BlobContainerClient, BlobContainerClientOptions, BlobServiceClient, BlobServiceClientOptions,
    models::{BlobClientUploadOptions, BlockBlobClientCommitBlockListOptions, BlockLookupList},
};
use futures_util::{FutureExt, StreamExt, future::BoxFuture, stream::FuturesUnordered};
use std::{fmt, num::NonZero, pin::pin, sync::Arc};
use tokio::sync::OnceCell;
use tracing::{debug, info, warn};

/// Largest upload accepted. Defaults to 2 MiB, the seed app's limit.
pub const DEFAULT_MAX_SIZE: u64 = 2 * 1024 * 1024;
/// Size of each block of a partitioned upload. Defaults to 4 MiB, as azure_storage_blob.
pub const DEFAULT_PARTITION_SIZE: u64 = 4 * 1024 * 1024;
/// Blocks uploaded at once. Defaults to 4.
pub const DEFAULT_PARALLEL: usize = 4;
/// Time one HTTP request to Blob Storage may take. Defaults to 60 s.
pub const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Longest blob name Azure accepts.
const MAX_NAME_LEN: usize = 1024;
/// The role an identity needs to upload and delete blobs.
const CONTRIBUTOR_ROLE: &str = "Storage Blob Data Contributor";

/// A blob that was uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UploadedBlob {
    /// The blob's name in the container.
    pub name: String,
    /// The content type it was stored with (sniffed from its first bytes).
    pub content_type: ContentType,
    /// Its size in bytes.
    pub size: u64,
    /// Its plain URL (readable only if the container allows public access).
    pub url: Url,
}

/// Uploads photos to one container of an Azure Storage account with Entra bearer tokens.
///
/// - From bytes, or from a stream (an HTTP multipart field) without buffering the whole file:
///   the size cap is enforced while reading, and an upload over it stops, leaves nothing in the
///   container and returns [`Error::is_too_large`].
/// - The content type is sniffed from the first bytes (PNG, JPEG, GIF, WebP) and checked
///   against an allow-list; the blob is stored with it and generated names are
///   `<uuid>.<extension of the real type>`. Given names are validated.
/// - Uploads over one partition are staged as blocks, `parallel` at a time.
/// - Errors say what went wrong: a missing role (401/403) names the
///   `Storage Blob Data Contributor` role, a missing container says so, a network failure says
///   which endpoint could not be reached.
///
/// # Examples
/// ```no_run
/// # async fn run() -> azure_passwordless::Result<()> {
/// use azure_passwordless::blob::BlobUploader;
///
/// // STORAGE_ACCOUNT_NAME and STORAGE_CONTAINER_NAME from the environment.
/// let uploader = BlobUploader::from_env()?;
/// let png = std::fs::read("photo.png").unwrap_or_default();
/// let blob = uploader.upload_bytes(png, None).await?;
/// println!("stored {} as {}", blob.name, blob.content_type.mime());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct BlobUploader {
    inner: Arc<Inner>,
}

struct Inner {
    container: BlobContainerClient,
    service: BlobServiceClient,
    account: String,
    read_urls: ReadUrls,
    keys: sas::KeyCache,
    clock: crate::clock::SharedClock,
    container_name: String,
    cache: TokenCache,
    max_size: u64,
    allowed: Vec<ContentType>,
    partition_size: u64,
    parallel: usize,
    create_container: bool,
    container_ready: OnceCell<()>,
}

impl fmt::Debug for BlobUploader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobUploader")
            .field("container_url", &self.inner.container.url().as_str())
            .field("max_size", &self.inner.max_size)
            .field("allowed", &self.inner.allowed)
            .finish_non_exhaustive()
    }
}

/// Builder for [`BlobUploader`].
#[must_use]
pub struct BlobUploaderBuilder {
    account_url: Result<Url>,
    container: String,
    cache: Option<TokenCache>,
    max_size: u64,
    allowed: Vec<ContentType>,
    partition_size: u64,
    parallel: usize,
    create_container: bool,
    client_options: Option<ClientOptions>,
    root_certificates: Vec<Vec<u8>>,
    request_timeout: std::time::Duration,
    read_urls: ReadUrls,
    clock: crate::clock::SharedClock,
}

impl fmt::Debug for BlobUploaderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobUploaderBuilder")
            .field("container", &self.container)
            .field("max_size", &self.max_size)
            .finish_non_exhaustive()
    }
}

/// The account endpoint from `STORAGE_ACCOUNT_NAME` (a name, or a full URL as the seed accepts
/// for Azurite) or Service Connector's `AZURE_STORAGEBLOB_RESOURCEENDPOINT`.
fn account_url_from_env(env: &Env, cloud: Cloud) -> Result<Url> {
    let (var, value) = [("STORAGE_ACCOUNT_NAME"), ("AZURE_STORAGEBLOB_RESOURCEENDPOINT")]
        .iter()
        .find_map(|n| env.get(n).map(|v| (*n, v)))
        .ok_or_else(|| {
            Error::config("missing storage account: set STORAGE_ACCOUNT_NAME (or AZURE_STORAGEBLOB_RESOURCEENDPOINT)")
        })?;
    account_url(&value, cloud, var)
}

fn account_url(value: &str, cloud: Cloud, var: &str) -> Result<Url> {
    if value.contains("://") {
        let url = Url::parse(value)
            .map_err(|e| Error::config(format!("{var} is not a valid URL: '{value}'")).with_source(e))?;
        if url.scheme() != "https" {
            return Err(Error::config(format!(
                "{var} must be an https:// URL (bearer tokens are never sent over plain HTTP), got '{value}'"
            )));
        }
        return Ok(url);
    }
    let valid = (3..=24).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !valid {
        return Err(Error::config(format!(
            "{var} must be a storage account name (3-24 lowercase letters and digits) or an https:// URL, got '{value}'"
        )));
    }
    Url::parse(&format!("https://{value}.{}/", cloud.blob_host_suffix()))
        .map_err(|e| Error::config(format!("{var} gives an invalid URL")).with_source(e))
}

/// The account name: the first path segment for an emulator's path-style URL
/// (`https://127.0.0.1:10000/devstoreaccount1`), else the first label of the host.
fn account_name(url: &Url) -> Result<String> {
    let path_style =
        matches!(url.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_))) || url.host_str() == Some("localhost");
    let name = if path_style {
        url.path_segments()
            .and_then(|mut s| s.next())
            .unwrap_or_default()
            .to_owned()
    } else {
        url.host_str()
            .and_then(|h| h.split('.').next())
            .unwrap_or_default()
            .to_owned()
    };
    if name.is_empty() {
        return Err(Error::config(format!(
            "cannot tell the storage account name from {url}"
        )));
    }
    Ok(name)
}

/// Container names: 3-63 lowercase letters, digits and single hyphens, starting and ending
/// with a letter or digit.
fn validate_container(name: &str) -> Result<()> {
    let ok = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(Error::config(format!(
            "container name '{name}' is invalid: use 3-63 lowercase letters, digits and single hyphens"
        )))
    }
}

/// Checks a caller-given blob name: no path traversal, no empty or oversized names.
pub fn validate_blob_name(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::new(
            ErrorKind::InvalidInput,
            format!("blob name '{}' is refused: {why}", name.escape_debug()),
        ))
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("it is longer than 1024 characters");
    }
    if name.chars().any(|c| c.is_control() || c == '\\') {
        return bad("it contains a control character or a backslash");
    }
    if name.starts_with('/') || name.ends_with('/') {
        return bad("it starts or ends with '/'");
    }
    if name
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return bad("it has an empty, '.' or '..' path segment");
    }
    if name.ends_with('.') {
        return bad("it ends with '.'");
    }
    Ok(())
}

/// A random version-4 UUID, formatted.
fn uuid_v4() -> String {
    let mut b: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl BlobUploader {
    /// An uploader from the process environment: `STORAGE_ACCOUNT_NAME` (or
    /// `AZURE_STORAGEBLOB_RESOURCEENDPOINT`), `STORAGE_CONTAINER_NAME`, `AZURE_CLOUD`, with a
    /// [`DefaultAzureCredential`].
    ///
    /// # Errors
    /// A missing or malformed variable; the message names it.
    pub fn from_env() -> Result<Self> {
        let env = Env::process();
        let cache = TokenCache::for_default_credential(DefaultAzureCredential::builder().env(env.clone()).build()?);
        Self::builder_from_env(&env)?.token_cache(cache).build()
    }

    /// A builder with the account and container read from `env`; add a credential or cache.
    ///
    /// # Errors
    /// A missing or malformed variable; the message names it.
    pub fn builder_from_env(env: &Env) -> Result<BlobUploaderBuilder> {
        let cloud = Cloud::from_env(env)?;
        let account = account_url_from_env(env, cloud)?;
        let container = env
            .get("STORAGE_CONTAINER_NAME")
            .ok_or_else(|| Error::config("missing container: set STORAGE_CONTAINER_NAME"))?;
        validate_container(&container).map_err(|e| Error::config(format!("STORAGE_CONTAINER_NAME: {e}")))?;
        Ok(Self::builder(account.as_str(), container))
    }

    /// A builder for `container` in the account at `account_url`
    /// (`https://<account>.blob.core.windows.net` or an emulator's URL).
    pub fn builder(account_url: &str, container: impl Into<String>) -> BlobUploaderBuilder {
        BlobUploaderBuilder {
            account_url: account_url_str(account_url),
            container: container.into(),
            cache: None,
            max_size: DEFAULT_MAX_SIZE,
            allowed: ContentType::ALL.to_vec(),
            partition_size: DEFAULT_PARTITION_SIZE,
            parallel: DEFAULT_PARALLEL,
            create_container: false,
            client_options: None,
            root_certificates: Vec::new(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            read_urls: ReadUrls::default(),
            clock: Arc::new(crate::SystemClock),
        }
    }

    /// Uploads `data` as one blob, named `name` or `<uuid>.<ext>`.
    ///
    /// # Errors
    /// [`ErrorKind::TooLarge`] over the cap (nothing is sent), [`ErrorKind::InvalidInput`] for a
    /// type that is not allowed or a bad name, [`ErrorKind::Auth`], [`ErrorKind::NotFound`],
    /// [`ErrorKind::Io`] or [`ErrorKind::Credential`] from the service.
    pub async fn upload_bytes(&self, data: impl Into<Bytes>, name: Option<&str>) -> Result<UploadedBlob> {
        let data: Bytes = data.into();
        let i = &self.inner;
        if data.len() as u64 > i.max_size {
            return Err(too_large(i.max_size));
        }
        let content_type = i.sniff(&data, data.len() >= sniff::NEEDED)?;
        let name = i.name_for(name, content_type)?;
        i.ensure_container().await?;
        let blob = i.container.blob_client(&name);
        let size = data.len() as u64;
        let options = BlobClientUploadOptions {
            blob_content_type: Some(content_type.mime().to_owned()),
            partition_size: NonZero::new(i.partition_size),
            parallel: NonZero::new(i.parallel),
            ..Default::default()
        };
        blob.upload(content(data), Some(options))
            .await
            .map_err(|e| i.storage_error(e, Some(&name)))?;
        debug!(blob = %name, size, content_type = content_type.mime(), "uploaded");
        Ok(UploadedBlob {
            url: blob.url().clone(),
            name,
            content_type,
            size,
        })
    }

    /// Uploads a stream of chunks (for example an HTTP multipart field) without holding more
    /// than `parallel` partitions in memory. The type is checked on the first bytes and the cap
    /// while reading: an upload over it stops and leaves no blob.
    ///
    /// # Errors
    /// As [`BlobUploader::upload_bytes`], plus [`ErrorKind::Io`] when the stream itself fails.
    pub async fn upload_stream<S, E>(&self, stream: S, name: Option<&str>) -> Result<UploadedBlob>
    where
        S: futures_util::Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::error::Error + Send + Sync + 'static,
    {
        let i = &self.inner;
        let mut stream = pin!(stream);
        let partition = usize::try_from(i.partition_size).unwrap_or(usize::MAX);
        let mut buf: Vec<u8> = Vec::new();
        let mut total: u64 = 0;
        let mut sniffed: Option<ContentType> = None;

        // First partition: decide the type early, and take the one-request path for small files.
        let mut ended = false;
        while buf.len() < partition {
            if !pull(&mut stream, &mut buf, &mut total, i.max_size).await? {
                ended = true;
                break;
            }
            if sniffed.is_none() && buf.len() >= sniff::NEEDED {
                sniffed = Some(i.sniff(&buf, true)?);
            }
        }
        if ended {
            return self.upload_bytes(Bytes::from(buf), name).await;
        }
        let content_type = match sniffed {
            Some(t) => t,
            None => i.sniff(&buf, buf.len() >= sniff::NEEDED)?,
        };
        let generated = name.is_none();
        let name = i.name_for(name, content_type)?;
        i.ensure_container().await?;
        let blob = i.container.blob_client(&name);
        let block_blob = Arc::new(blob.block_blob_client());

        let mut ids: Vec<Vec<u8>> = Vec::new();
        let mut in_flight: FuturesUnordered<BoxFuture<'static, azure_core::Result<()>>> = FuturesUnordered::new();
        // Records the next block's id (fixed width, as the service requires) and stages it.
        let stage = |ids: &mut Vec<Vec<u8>>, data: Bytes| {
            let client = Arc::clone(&block_blob);
            let id = format!("block-{:010}", ids.len()).into_bytes();
            ids.push(id.clone());
            let len = data.len() as u64;
            async move { client.stage_block(&id, len, content(data), None).await.map(|_| ()) }.boxed()
        };
        let outcome: Result<()> = async {
            loop {
                while buf.len() >= partition {
                    let rest = buf.split_off(partition);
                    let block = Bytes::from(std::mem::replace(&mut buf, rest));
                    if in_flight.len() >= i.parallel
                        && let Some(done) = in_flight.next().await
                    {
                        done.map_err(|e| i.storage_error(e, Some(&name)))?;
                    }
                    in_flight.push(stage(&mut ids, block));
                }
                if ended {
                    break;
                }
                ended = !pull(&mut stream, &mut buf, &mut total, i.max_size).await?;
            }
            if !buf.is_empty() {
                in_flight.push(stage(&mut ids, Bytes::from(std::mem::take(&mut buf))));
            }
            while let Some(done) = in_flight.next().await {
                done.map_err(|e| i.storage_error(e, Some(&name)))?;
            }
            Ok(())
        }
        .await;
        if let Err(err) = outcome {
            drop(in_flight);
            if generated && !ids.is_empty() {
                i.discard_uncommitted(&blob).await;
            }
            return Err(err);
        }
        let blocks = BlockLookupList {
            latest: Some(ids),
            ..Default::default()
        };
        let options = BlockBlobClientCommitBlockListOptions {
            blob_content_type: Some(content_type.mime().to_owned()),
            ..Default::default()
        };
        block_blob
            .commit_block_list(
                blocks.try_into().map_err(|e| i.storage_error(e, Some(&name)))?,
                Some(options),
            )
            .await
            .map_err(|e| i.storage_error(e, Some(&name)))?;
        debug!(blob = %name, size = total, content_type = content_type.mime(), "uploaded in blocks");
        Ok(UploadedBlob {
            url: blob.url().clone(),
            name,
            content_type,
            size: total,
        })
    }

    /// Deletes a blob, for example to undo an upload when the database write that referenced
    /// it failed.
    ///
    /// # Errors
    /// [`ErrorKind::NotFound`] when it does not exist; otherwise as the uploads.
    pub async fn delete(&self, name: &str) -> Result<()> {
        validate_blob_name(name)?;
        self.inner
            .container
            .blob_client(name)
            .delete(None)
            .await
            .map(|_| ())
            .map_err(|e| self.inner.storage_error(e, Some(name)))
    }

    /// The plain URL of a blob in this container (readable by anyone only when the container
    /// allows public blob access, as the seed's does).
    ///
    /// # Errors
    /// A bad name.
    pub fn blob_url(&self, name: &str) -> Result<Url> {
        validate_blob_name(name)?;
        Ok(self.inner.container.blob_client(name).url().clone())
    }

    /// A URL to read the blob with, as configured by
    /// [`read_urls`](BlobUploaderBuilder::read_urls): the plain URL, or a read-only
    /// user-delegation SAS URL for a private container.
    ///
    /// # Errors
    /// A bad name; for SAS, [`ErrorKind::Auth`] when no user delegation key can be had.
    pub async fn read_url(&self, name: &str) -> Result<Url> {
        let mut url = self.blob_url(name)?;
        if let ReadUrls::UserDelegationSas { lifetime } = self.inner.read_urls {
            let i = &self.inner;
            let pairs = i
                .keys
                .sign(
                    &i.service,
                    &*i.clock,
                    sas::SasRequest {
                        account: &i.account,
                        container: &i.container_name,
                        blob: name,
                        lifetime,
                    },
                )
                .await?;
            url.query_pairs_mut().extend_pairs(pairs);
        }
        Ok(url)
    }

    /// The underlying container client, for what this type does not wrap.
    pub fn container_client(&self) -> &BlobContainerClient {
        &self.inner.container
    }

    /// The token cache the uploader authenticates with.
    pub fn token_cache(&self) -> &TokenCache {
        &self.inner.cache
    }

    /// The container name.
    pub fn container_name(&self) -> &str {
        &self.inner.container_name
    }
}

fn account_url_str(url: &str) -> Result<Url> {
    account_url(url, Cloud::Public, "account URL")
}

/// Appends the stream's next chunk to `buf`, counting it against `max`. `Ok(false)` at the end.
async fn pull<S, E>(stream: &mut std::pin::Pin<&mut S>, buf: &mut Vec<u8>, total: &mut u64, max: u64) -> Result<bool>
where
    S: futures_util::Stream<Item = std::result::Result<Bytes, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    match stream.next().await {
        Some(chunk) => {
            let chunk = chunk.map_err(|e| Error::new(ErrorKind::Io, "reading the upload failed").with_source(e))?;
            *total += chunk.len() as u64;
            if *total > max {
                return Err(too_large(max));
            }
            buf.extend_from_slice(&chunk);
            Ok(true)
        }
        None => Ok(false),
    }
}

fn content(data: Bytes) -> RequestContent<Bytes, NoFormat> {
    data.into()
}

fn too_large(max: u64) -> Error {
    Error::new(
        ErrorKind::TooLarge,
        format!("upload is larger than the {max}-byte limit"),
    )
}

impl Inner {
    fn sniff(&self, head: &[u8], complete: bool) -> Result<ContentType> {
        match ContentType::sniff(head) {
            Some(t) if self.allowed.contains(&t) => Ok(t),
            Some(t) => Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{} uploads are not allowed here; allowed: {}",
                    t.mime(),
                    allowed_list(&self.allowed)
                ),
            )),
            None => Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "upload is not an allowed image: its first bytes match none of {}{}",
                    allowed_list(&self.allowed),
                    if complete { "" } else { " (too short to tell)" }
                ),
            )),
        }
    }

    fn name_for(&self, given: Option<&str>, content_type: ContentType) -> Result<String> {
        match given {
            Some(name) => {
                validate_blob_name(name)?;
                Ok(name.to_owned())
            }
            None => Ok(format!("{}.{}", uuid_v4(), content_type.extension())),
        }
    }

    async fn ensure_container(&self) -> Result<()> {
        if !self.create_container {
            return Ok(());
        }
        self.container_ready
            .get_or_try_init(|| async {
                match self.container.create(None).await {
                    Ok(_) => {
                        info!(container = %self.container_name, "created the blob container");
                        Ok(())
                    }
                    Err(e) if e.http_status() == Some(StatusCode::Conflict) => Ok(()),
                    Err(e) => Err(self.storage_error(e, None)),
                }
            })
            .await
            .map(|_| ())
    }

    /// After a failed staged upload of a generated name: commit an empty block list and delete
    /// the blob, so the staged blocks do not linger for the service's 7-day clean-up.
    async fn discard_uncommitted(&self, blob: &BlobClient) {
        let empty = BlockLookupList {
            latest: Some(Vec::new()),
            ..Default::default()
        };
        let Ok(empty) = empty.try_into() else { return };
        if blob.block_blob_client().commit_block_list(empty, None).await.is_ok()
            && let Err(e) = blob.delete(None).await
        {
            warn!(error = %crate::error::report(&e), "could not remove a partial upload");
        }
    }

    fn storage_error(&self, err: azure_core::Error, blob: Option<&str>) -> Error {
        let status = err.http_status();
        let code = match err.kind() {
            azure_core::error::ErrorKind::HttpResponse { error_code, .. } => error_code.clone(),
            _ => None,
        };
        let what = match blob {
            Some(name) => format!("blob '{name}' in container '{}'", self.container_name),
            None => format!("container '{}'", self.container_name),
        };
        let code_text = code.as_deref().map(|c| format!(" {c}")).unwrap_or_default();
        let (kind, message) = match status {
            Some(StatusCode::Unauthorized) | Some(StatusCode::Forbidden) => (
                ErrorKind::Auth,
                format!(
                    "Blob Storage refused access to {what} (HTTP {}{code_text}): the identity needs the \
                     '{CONTRIBUTOR_ROLE}' role on the account or container, and the token's audience must be \
                     https://storage.azure.com",
                    u16::from(status.unwrap_or(StatusCode::Forbidden))
                ),
            ),
            Some(StatusCode::NotFound) if code.as_deref() == Some("ContainerNotFound") || blob.is_none() => (
                ErrorKind::NotFound,
                format!(
                    "container '{}' does not exist at {} (create it, or enable create_container_if_missing)",
                    self.container_name,
                    self.container.url()
                ),
            ),
            Some(StatusCode::NotFound) => (ErrorKind::NotFound, format!("{what} does not exist")),
            Some(other) => (
                ErrorKind::Io,
                format!("Blob Storage answered HTTP {}{code_text} for {what}", u16::from(other)),
            ),
            None if matches!(err.kind(), azure_core::error::ErrorKind::Credential) => (
                ErrorKind::Credential,
                format!("no Entra token for Blob Storage to write {what}"),
            ),
            None => (
                ErrorKind::Io,
                format!("cannot reach Blob Storage at {} for {what}", self.container.url()),
            ),
        };
        Error::new(kind, message).with_source(err)
    }
}

fn allowed_list(allowed: &[ContentType]) -> String {
    allowed.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
}

impl BlobUploaderBuilder {
    /// Tokens from this shared cache (the one the PostgreSQL pool uses, say).
    pub fn token_cache(mut self, cache: TokenCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Tokens from this credential, through a new [`TokenCache`].
    pub fn credential(mut self, credential: Arc<dyn TokenCredential>) -> Self {
        self.cache = Some(TokenCache::new(credential));
        self
    }

    /// Largest upload. Defaults to [`DEFAULT_MAX_SIZE`].
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes;
        self
    }

    /// The content types accepted. Defaults to [`ContentType::ALL`].
    pub fn allowed_types(mut self, types: impl IntoIterator<Item = ContentType>) -> Self {
        self.allowed = types.into_iter().collect();
        self
    }

    /// Block size of partitioned uploads. Defaults to [`DEFAULT_PARTITION_SIZE`].
    pub fn partition_size(mut self, bytes: u64) -> Self {
        self.partition_size = bytes;
        self
    }

    /// Blocks in flight at once. Defaults to [`DEFAULT_PARALLEL`].
    pub fn parallel(mut self, blocks: usize) -> Self {
        self.parallel = blocks;
        self
    }

    /// Create the container on first use when it does not exist. Defaults to `false`.
    pub fn create_container_if_missing(mut self, create: bool) -> Self {
        self.create_container = create;
        self
    }

    /// Trust this PEM CA in addition to the system roots (Azurite, a TLS-inspecting proxy, a
    /// private endpoint). Ignored when [`client_options`](Self::client_options) brings a transport.
    pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates.push(pem.into());
        self
    }

    /// How [`BlobUploader::read_url`] makes URLs. Defaults to [`ReadUrls::Public`].
    pub fn read_urls(mut self, read_urls: ReadUrls) -> Self {
        self.read_urls = read_urls;
        self
    }

    /// The clock SAS start and expiry times are taken from. Defaults to the system clock.
    pub fn clock(mut self, clock: Arc<dyn crate::Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Time one request may take. Defaults to [`DEFAULT_REQUEST_TIMEOUT`].
    pub fn request_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// azure_core client options (transport, retries) for the storage clients. Defaults to a
    /// native-tls client without automatic decompression and at most 2 retries within 5 s.
    pub fn client_options(mut self, options: ClientOptions) -> Self {
        self.client_options = Some(options);
        self
    }

    /// Builds the uploader. Nothing is contacted until the first upload.
    ///
    /// # Errors
    /// A bad account URL or container name, no credential, zero sizes, an invalid CA.
    pub fn build(self) -> Result<BlobUploader> {
        let account = self.account_url?;
        validate_container(&self.container)?;
        let cache = self
            .cache
            .ok_or_else(|| Error::config("the uploader needs a credential or a token cache"))?;
        if self.max_size == 0 || self.partition_size == 0 || self.parallel == 0 {
            return Err(Error::config(
                "max_size, partition_size and parallel must be at least 1",
            ));
        }
        if self.allowed.is_empty() {
            return Err(Error::config("allowed_types must name at least one content type"));
        }
        let client_options = match self.client_options {
            Some(options) => options,
            None => {
                let mut builder = reqwest::Client::builder()
                    .connect_timeout(std::time::Duration::from_secs(5))
                    .timeout(self.request_timeout)
                    .redirect(reqwest::redirect::Policy::none());
                for pem in &self.root_certificates {
                    let cert = reqwest::Certificate::from_pem(pem)
                        .map_err(|e| Error::config("root certificate is not PEM").with_source(e))?;
                    builder = builder.add_root_certificate(cert);
                }
                let client = builder
                    .build()
                    .map_err(|e| Error::config("could not build the HTTP client for Blob Storage").with_source(e))?;
                ClientOptions {
                    transport: Some(Transport::new(Arc::new(client))),
                    retry: short_retry(),
                    ..Default::default()
                }
            }
        };
        let mut container_url = account.clone();
        container_url
            .path_segments_mut()
            .map_err(|_| Error::config(format!("account URL {account} cannot hold a path")))?
            .pop_if_empty()
            .push(&self.container);
        let credential: Arc<dyn TokenCredential> = Arc::new(cache.clone());
        let container = BlobContainerClient::new(
            container_url,
            Some(credential.clone()),
            Some(BlobContainerClientOptions {
                client_options: client_options.clone(),
                ..Default::default()
            }),
        )
        .map_err(|e| Error::config("could not create the container client").with_source(e))?;
        let service = BlobServiceClient::new(
            account.clone(),
            Some(credential),
            Some(BlobServiceClientOptions {
                client_options,
                ..Default::default()
            }),
        )
        .map_err(|e| Error::config("could not create the service client").with_source(e))?;
        let account_name = account_name(&account)?;
        Ok(BlobUploader {
            inner: Arc::new(Inner {
                container,
                service,
                account: account_name,
                read_urls: self.read_urls,
                keys: sas::KeyCache::new(),
                clock: self.clock,
                container_name: self.container,
                cache,
                max_size: self.max_size,
                allowed: self.allowed,
                partition_size: self.partition_size,
                parallel: self.parallel,
                create_container: self.create_container,
                container_ready: OnceCell::new(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_expand_per_cloud_and_urls_must_be_https() {
        let env = Env::from_slice(&[("STORAGE_ACCOUNT_NAME", "photos123")]);
        assert_eq!(
            account_url_from_env(&env, Cloud::Public).unwrap().as_str(),
            "https://photos123.blob.core.windows.net/"
        );
        assert_eq!(
            account_url_from_env(&env, Cloud::China).unwrap().as_str(),
            "https://photos123.blob.core.chinacloudapi.cn/"
        );
        let env = Env::from_slice(&[("STORAGE_ACCOUNT_NAME", "http://127.0.0.1:10000/devstoreaccount1")]);
        let err = account_url_from_env(&env, Cloud::Public).unwrap_err();
        assert!(
            err.to_string().contains("STORAGE_ACCOUNT_NAME must be an https:// URL"),
            "{err}"
        );
        let env = Env::from_slice(&[("STORAGE_ACCOUNT_NAME", "Bad_Name")]);
        assert!(
            account_url_from_env(&env, Cloud::Public)
                .unwrap_err()
                .to_string()
                .contains("3-24 lowercase")
        );
        let env = Env::from_slice(&[(
            "AZURE_STORAGEBLOB_RESOURCEENDPOINT",
            "https://acct.blob.core.windows.net/",
        )]);
        assert_eq!(
            account_url_from_env(&env, Cloud::Public).unwrap().host_str(),
            Some("acct.blob.core.windows.net")
        );
        assert!(
            account_url_from_env(&Env::from_slice(&[]), Cloud::Public)
                .unwrap_err()
                .to_string()
                .contains("STORAGE_ACCOUNT_NAME")
        );
    }

    #[test]
    fn hostile_names_are_refused() {
        for name in [
            "",
            "../etc/passwd",
            "a/../b",
            "/abs",
            "dir/",
            "a//b",
            "back\\slash",
            "nul\0byte",
            "dot.",
            ".",
        ] {
            let err = validate_blob_name(name).unwrap_err();
            assert!(err.is_invalid_input(), "{name:?}");
        }
        assert!(validate_blob_name(&"x".repeat(1025)).is_err());
        for name in ["photo.png", "reviews/42/photo.jpg", "a-b_c.webp"] {
            validate_blob_name(name).unwrap();
        }
    }

    #[test]
    fn container_names_follow_azure_rules() {
        for bad in ["ab", "Photos", "-photos", "photos-", "pho--tos", "pho_tos"] {
            assert!(validate_container(bad).is_err(), "{bad}");
        }
        validate_container("photos").unwrap();
    }

    #[test]
    fn generated_uuids_are_v4() {
        let id = uuid_v4();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(id, uuid_v4());
    }
}
