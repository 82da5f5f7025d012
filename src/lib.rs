#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(rustdoc::broken_intra_doc_links)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod cache;
mod clock;
mod cloud;
mod credential;
mod env;
mod error;

#[cfg(feature = "blob")]
pub mod blob;
#[cfg(feature = "emulator")]
pub mod emulator;
#[cfg(feature = "postgres")]
pub mod postgres;

pub use cache::{
    CacheStats, DEFAULT_EXPIRY_MARGIN, DEFAULT_FAILURE_BACKOFF, DEFAULT_MAX_JITTER, Jitter, ScopedTokenCache, Token,
    TokenCache, TokenCacheBuilder,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use cloud::Cloud;
pub use credential::{
    AZURE_TOKEN_CREDENTIALS, CredentialKind, DEFAULT_DEVELOPER_TOOL_TIMEOUT, DEFAULT_IMDS_PROBE_TIMEOUT,
    DEFAULT_IMDS_PROBE_URL, DEFAULT_REQUEST_TIMEOUT, DefaultAzureCredential, DefaultAzureCredentialBuilder,
    UserAssignedId,
};
pub use env::Env;
pub use error::{Error, ErrorKind, Result};

pub use azure_core;
pub use azure_identity;
#[cfg(feature = "blob")]
pub use azure_storage_blob;
#[cfg(feature = "postgres")]
pub use deadpool_postgres;
#[cfg(feature = "postgres")]
pub use tokio_postgres;
