//! The concrete links of the chain, each wrapping an azure_identity credential.

use super::{
    CredentialKind,
    chain::{Link, LinkError},
    imds::Probe,
};
use crate::{Cloud, Env};
use azure_core::{
    cloud::{CloudConfiguration, CustomConfiguration},
    credentials::{AccessToken, Secret, SecretBytes, TokenCredential},
    http::ClientOptions,
};
use azure_identity::{
    AzureCliCredential, AzureDeveloperCliCredential, ClientAssertionCredentialOptions, ClientCertificateCredential,
    ClientCertificateCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};
use std::{fmt, sync::Arc, time::Duration};

pub(crate) struct Settings {
    pub(crate) env: Env,
    pub(crate) cloud: Cloud,
    pub(crate) client_options: ClientOptions,
    pub(crate) user_assigned_id: Option<UserAssignedId>,
    pub(crate) probe: Probe,
    pub(crate) skip_probe: bool,
    pub(crate) developer_tool_timeout: Duration,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("env", &self.env)
            .field("cloud", &self.cloud)
            .field("user_assigned_id", &self.user_assigned_id)
            .field("probe", &self.probe)
            .field("skip_probe", &self.skip_probe)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Client options with the authority host from `AZURE_AUTHORITY_HOST`, else the cloud's.
    fn authority_options(&self) -> ClientOptions {
        let mut custom = CustomConfiguration::default();
        custom.authority_host = self
            .env
            .get("AZURE_AUTHORITY_HOST")
            .unwrap_or_else(|| self.cloud.authority_host().to_owned());
        let cloud: CloudConfiguration = custom.into();
        ClientOptions {
            cloud: Some(Arc::new(cloud)),
            ..self.client_options.clone()
        }
    }
}

pub(crate) fn make(kind: CredentialKind, settings: Arc<Settings>) -> Box<dyn Link> {
    Box::new(LazyLink {
        kind,
        settings,
        credential: parking_lot::Mutex::new(None),
    })
}

/// A link whose azure_identity credential is built on first use, once its settings are known
/// to be present.
struct LazyLink {
    kind: CredentialKind,
    settings: Arc<Settings>,
    /// Built on first use; dropped by `forget` so the next use builds a fresh one (azure_identity
    /// credentials keep private token caches that cannot be cleared any other way).
    credential: parking_lot::Mutex<Option<Arc<dyn TokenCredential>>>,
}

impl fmt::Debug for LazyLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link").field("kind", &self.kind).finish_non_exhaustive()
    }
}

fn missing(env: &Env, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .filter(|n| !env.is_set(n))
        .map(|n| (*n).to_owned())
        .collect()
}

impl LazyLink {
    /// `Ok(())` when this link's settings are present (and, for IMDS, the probe answered).
    async fn check_configured(&self) -> Result<(), String> {
        let s = &*self.settings;
        let env = &s.env;
        match self.kind {
            CredentialKind::Environment => {
                let mut absent = missing(env, &["AZURE_TENANT_ID", "AZURE_CLIENT_ID"]);
                if !env.is_set("AZURE_CLIENT_SECRET") && !env.is_set("AZURE_CLIENT_CERTIFICATE_PATH") {
                    absent.push("AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH".into());
                }
                if absent.is_empty() {
                    Ok(())
                } else {
                    Err(format!("not configured: {} not set", absent.join(", ")))
                }
            }
            CredentialKind::WorkloadIdentity => {
                let absent = missing(
                    env,
                    &["AZURE_FEDERATED_TOKEN_FILE", "AZURE_TENANT_ID", "AZURE_CLIENT_ID"],
                );
                if absent.is_empty() {
                    Ok(())
                } else {
                    Err(format!("not configured: {} not set", absent.join(", ")))
                }
            }
            CredentialKind::ManagedIdentity => {
                let app_service = env.is_set("IDENTITY_ENDPOINT") && env.is_set("IDENTITY_HEADER");
                if app_service || s.skip_probe {
                    Ok(())
                } else {
                    s.probe.check().await
                }
            }
            CredentialKind::AzureCli | CredentialKind::AzureDeveloperCli => Ok(()),
        }
    }

    fn build(&self) -> azure_core::Result<Arc<dyn TokenCredential>> {
        let s = &*self.settings;
        let env = &s.env;
        let var = |name: &str| env.get(name).unwrap_or_default();
        Ok(match self.kind {
            CredentialKind::Environment => {
                let options = s.authority_options();
                if let Some(secret) = env.get("AZURE_CLIENT_SECRET") {
                    ClientSecretCredential::new(
                        &var("AZURE_TENANT_ID"),
                        var("AZURE_CLIENT_ID"),
                        Secret::new(secret),
                        Some(ClientSecretCredentialOptions {
                            client_options: options,
                        }),
                    )?
                } else {
                    let path = var("AZURE_CLIENT_CERTIFICATE_PATH");
                    let bytes = std::fs::read(&path).map_err(|e| {
                        azure_core::Error::with_error(
                            azure_core::error::ErrorKind::Credential,
                            e,
                            format!("cannot read AZURE_CLIENT_CERTIFICATE_PATH '{path}' (expected a PKCS#12 file)"),
                        )
                    })?;
                    let cert_options = ClientCertificateCredentialOptions {
                        client_options: options,
                        password: env.get("AZURE_CLIENT_CERTIFICATE_PASSWORD").map(Secret::new),
                    };
                    ClientCertificateCredential::new(
                        var("AZURE_TENANT_ID"),
                        var("AZURE_CLIENT_ID"),
                        SecretBytes::new(bytes),
                        Some(cert_options),
                    )?
                }
            }
            CredentialKind::WorkloadIdentity => {
                WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                    credential_options: ClientAssertionCredentialOptions {
                        client_options: s.authority_options(),
                    },
                    client_id: Some(var("AZURE_CLIENT_ID")),
                    tenant_id: Some(var("AZURE_TENANT_ID")),
                    token_file_path: Some(var("AZURE_FEDERATED_TOKEN_FILE").into()),
                }))?
            }
            CredentialKind::ManagedIdentity => {
                warn_if_process_env_differs(env);
                ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                    user_assigned_id: s.user_assigned_id.clone(),
                    client_options: s.client_options.clone(),
                }))?
            }
            CredentialKind::AzureCli => AzureCliCredential::new(None)?,
            CredentialKind::AzureDeveloperCli => AzureDeveloperCliCredential::new(None)?,
        })
    }
}

/// azure_identity's managed identity credential reads `IDENTITY_ENDPOINT`/`IDENTITY_HEADER`
/// from the process, not from our `Env`: say so loudly when the two disagree.
fn warn_if_process_env_differs(env: &Env) {
    let process = Env::process();
    for name in ["IDENTITY_ENDPOINT", "IDENTITY_HEADER"] {
        if env.get(name) != process.get(name) {
            tracing::warn!(
                variable = name,
                "the credential's Env and the process environment disagree on {name}; \
                 azure_identity's ManagedIdentityCredential will use the process value"
            );
        }
    }
}

#[async_trait::async_trait]
impl Link for LazyLink {
    fn kind(&self) -> CredentialKind {
        self.kind
    }

    fn forget(&self) {
        *self.credential.lock() = None;
    }

    async fn get_token(&self, scopes: &[&str]) -> Result<AccessToken, LinkError> {
        let developer_tool = self.kind.is_developer_tool();
        let existing = self.credential.lock().clone();
        let credential = match existing {
            Some(credential) => credential,
            None => {
                self.check_configured().await.map_err(LinkError::Unavailable)?;
                let built = self.build().map_err(|e| {
                    if developer_tool {
                        LinkError::Unavailable(crate::error::report(&e))
                    } else {
                        LinkError::Failed(e)
                    }
                })?;
                self.credential.lock().get_or_insert(built).clone()
            }
        };
        if developer_tool {
            // A developer tool that hangs (waiting for a login prompt, say) must not hold the
            // chain forever.
            match tokio::time::timeout(self.settings.developer_tool_timeout, credential.get_token(scopes, None)).await {
                Ok(Ok(token)) => Ok(token),
                Ok(Err(e)) => Err(LinkError::Unavailable(crate::error::report(&e))),
                Err(_) => Err(LinkError::Unavailable(format!(
                    "gave no token within {} s",
                    self.settings.developer_tool_timeout.as_secs()
                ))),
            }
        } else {
            credential.get_token(scopes, None).await.map_err(LinkError::Failed)
        }
    }
}
