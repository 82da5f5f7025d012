//! Read URLs: the plain blob URL, or a short-lived user-delegation SAS.
//!
//! A user-delegation SAS is signed with a key the service hands to the (Entra-authenticated)
//! identity, so a private container can serve photos without any account key.
//! Format: <https://learn.microsoft.com/rest/api/storageservices/create-user-delegation-sas>
//! (string-to-sign of version 2020-12-06 and later).

use crate::{Clock, Error, Result, error::ErrorKind};
use azure_core::{
    credentials::Secret,
    time::{Duration, OffsetDateTime},
};
use azure_storage_blob::{BlobServiceClient, models::KeyInfo};
use tokio::sync::Mutex;

/// The SAS version we sign with.
const SAS_VERSION: &str = "2022-11-02";
/// How long a fetched delegation key is asked to live.
const KEY_LIFETIME: Duration = Duration::hours(6);
/// Start times are backdated this much against clock skew between us and the service.
const CLOCK_SKEW: Duration = Duration::minutes(5);

/// How [`BlobUploader::read_url`](super::BlobUploader::read_url) makes URLs to read a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReadUrls {
    /// The plain blob URL: readable only when the container allows public blob access (as the
    /// seed's does). The default.
    #[default]
    Public,
    /// A read-only user-delegation SAS URL valid for `lifetime`: works on a private container.
    /// The identity needs a role that allows `generateUserDelegationKey` (Storage Blob Data
    /// Contributor/Reader/Delegator).
    UserDelegationSas {
        /// How long each URL stays valid.
        lifetime: Duration,
    },
}

struct CachedKey {
    oid: String,
    tid: String,
    start: String,
    expiry: String,
    expires_at: OffsetDateTime,
    service: String,
    version: String,
    value: Secret,
}

pub(crate) struct KeyCache(Mutex<Option<CachedKey>>);

impl KeyCache {
    pub(crate) fn new() -> Self {
        Self(Mutex::new(None))
    }
}

/// `2026-11-26T19:50:00Z`: RFC 3339 in whole seconds, as SAS fields are written.
fn sas_time(t: OffsetDateTime) -> String {
    // Re-based on the Unix epoch, so the fields below are UTC whatever offset `t` carried.
    let t = OffsetDateTime::from_unix_timestamp(t.unix_timestamp()).unwrap_or(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn sas_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Auth, message.into())
}

/// Everything needed to sign one blob's read URL.
pub(crate) struct SasRequest<'a> {
    pub(crate) account: &'a str,
    pub(crate) container: &'a str,
    pub(crate) blob: &'a str,
    pub(crate) lifetime: Duration,
}

impl KeyCache {
    /// Query pairs of a read-only SAS for the blob, signed with a (cached) delegation key.
    pub(crate) async fn sign(
        &self,
        service: &BlobServiceClient,
        clock: &dyn Clock,
        req: SasRequest<'_>,
    ) -> Result<Vec<(&'static str, String)>> {
        let now = clock.now();
        let mut guard = self.0.lock().await;
        let fresh_enough = guard
            .as_ref()
            .is_some_and(|k| k.expires_at - now > req.lifetime + CLOCK_SKEW);
        if !fresh_enough {
            *guard = Some(fetch_key(service, now, req.lifetime).await?);
        }
        let key = guard.as_ref().ok_or_else(|| sas_error("no user delegation key"))?;
        let start = sas_time(now - CLOCK_SKEW);
        let expiry = sas_time((now + req.lifetime).min(key.expires_at));
        let resource = format!("/blob/{}/{}/{}", req.account, req.container, req.blob);
        let string_to_sign = [
            "r",
            &start,
            &expiry,
            &resource,
            &key.oid,
            &key.tid,
            &key.start,
            &key.expiry,
            &key.service,
            &key.version,
            "",
            "",
            "",
            "",
            "https",
            SAS_VERSION,
            "b",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
        ]
        .join("\n");
        let signature = azure_core::hmac::hmac_sha256(&string_to_sign, &key.value)
            .map_err(|e| sas_error("could not sign the SAS").with_source(e))?;
        Ok(vec![
            ("sv", SAS_VERSION.to_owned()),
            ("sr", "b".to_owned()),
            ("sp", "r".to_owned()),
            ("st", start),
            ("se", expiry),
            ("skoid", key.oid.clone()),
            ("sktid", key.tid.clone()),
            ("skt", key.start.clone()),
            ("ske", key.expiry.clone()),
            ("sks", key.service.clone()),
            ("skv", key.version.clone()),
            ("spr", "https".to_owned()),
            ("sig", signature),
        ])
    }
}

async fn fetch_key(service: &BlobServiceClient, now: OffsetDateTime, lifetime: Duration) -> Result<CachedKey> {
    let start = now - CLOCK_SKEW;
    let expiry = now + KEY_LIFETIME.max(lifetime + CLOCK_SKEW * 2);
    let info = KeyInfo {
        start: Some(start),
        expiry: Some(expiry),
        ..Default::default()
    };
    let content = info
        .try_into()
        .map_err(|e: azure_core::Error| sas_error("could not encode the key request").with_source(e))?;
    let response = service.get_user_delegation_key(content, None).await.map_err(|e| {
        Error::new(
            ErrorKind::Auth,
            "could not get a user delegation key: the identity needs a role allowing \
             Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey \
             (for example Storage Blob Data Contributor)",
        )
        .with_source(e)
    })?;
    let key = response
        .into_model()
        .map_err(|e| sas_error("the user delegation key answer could not be read").with_source(e))?;
    let missing = || sas_error("the user delegation key answer is incomplete");
    let value = key.value.ok_or_else(missing)?;
    use base64::{Engine, engine::general_purpose::STANDARD};
    let key_start = key.signed_start.ok_or_else(missing)?;
    let key_expiry = key.signed_expiry.ok_or_else(missing)?;
    Ok(CachedKey {
        oid: key.signed_oid.ok_or_else(missing)?,
        tid: key.signed_tid.ok_or_else(missing)?,
        start: sas_time(key_start),
        expiry: sas_time(key_expiry),
        expires_at: key_expiry,
        service: key.signed_service.unwrap_or_else(|| "b".into()),
        version: key.signed_version.ok_or_else(missing)?,
        value: Secret::new(STANDARD.encode(value)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sas_times_are_whole_seconds_in_utc() {
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap() + Duration::milliseconds(999);
        assert_eq!(sas_time(t), "2027-01-15T08:00:00Z");
    }
}
