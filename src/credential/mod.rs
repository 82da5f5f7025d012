//! `DefaultAzureCredential`: a safe credential chain on azure_identity 1.x.

mod chain;
mod imds;
mod links;

use crate::{Cloud, Env, Error, Result};
use azure_core::{
    credentials::{AccessToken, TokenCredential, TokenRequestOptions},
    http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport},
    time::Duration,
};
pub use azure_identity::UserAssignedId;
use std::{fmt, sync::Arc};

/// The variable that narrows the chain: `dev`, `prod`, or one credential name.
pub const AZURE_TOKEN_CREDENTIALS: &str = "AZURE_TOKEN_CREDENTIALS";
/// Where the IMDS probe is sent. Defaults to Azure's fixed IMDS address.
pub const DEFAULT_IMDS_PROBE_URL: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
/// How long the IMDS probe waits for an answer. Defaults to 1 s, as the other Azure SDKs do.
pub const DEFAULT_IMDS_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// How long `az`/`azd` may run before the link counts as unavailable. Defaults to 15 s.
pub const DEFAULT_DEVELOPER_TOOL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
/// Time one HTTP attempt of a link may take. Retries stop once 5 s have passed, so a failing
/// token request returns within about 15 s at worst (a refused connection: well under 1 s).
/// Defaults to 10 s.
pub const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One link of the chain, named as in the other Azure SDKs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialKind {
    /// A service principal from `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and `AZURE_CLIENT_SECRET`
    /// or `AZURE_CLIENT_CERTIFICATE_PATH`.
    Environment,
    /// Kubernetes workload identity from `AZURE_FEDERATED_TOKEN_FILE`.
    WorkloadIdentity,
    /// Managed identity: App Service (`IDENTITY_ENDPOINT`) or a VM's IMDS.
    ManagedIdentity,
    /// `az account get-access-token`.
    AzureCli,
    /// `azd auth token`.
    AzureDeveloperCli,
}

impl CredentialKind {
    /// All links, in the order every Azure SDK tries them.
    pub const ALL: [CredentialKind; 5] = [
        CredentialKind::Environment,
        CredentialKind::WorkloadIdentity,
        CredentialKind::ManagedIdentity,
        CredentialKind::AzureCli,
        CredentialKind::AzureDeveloperCli,
    ];

    /// The name used in logs, errors and `AZURE_TOKEN_CREDENTIALS`.
    pub fn name(self) -> &'static str {
        match self {
            CredentialKind::Environment => "EnvironmentCredential",
            CredentialKind::WorkloadIdentity => "WorkloadIdentityCredential",
            CredentialKind::ManagedIdentity => "ManagedIdentityCredential",
            CredentialKind::AzureCli => "AzureCliCredential",
            CredentialKind::AzureDeveloperCli => "AzureDeveloperCliCredential",
        }
    }

    /// Developer tools only ever count as unavailable when they fail.
    pub fn is_developer_tool(self) -> bool {
        matches!(self, CredentialKind::AzureCli | CredentialKind::AzureDeveloperCli)
    }

    /// Parses an `AZURE_TOKEN_CREDENTIALS` value into the links it selects.
    ///
    /// # Errors
    /// Any value other than `dev`, `prod` or a credential name (case-insensitive); the message
    /// lists the valid values.
    pub fn parse_selection(value: &str) -> Result<Vec<CredentialKind>> {
        let v = value.trim();
        if v.eq_ignore_ascii_case("dev") {
            return Ok(vec![CredentialKind::AzureCli, CredentialKind::AzureDeveloperCli]);
        }
        if v.eq_ignore_ascii_case("prod") {
            return Ok(vec![
                CredentialKind::Environment,
                CredentialKind::WorkloadIdentity,
                CredentialKind::ManagedIdentity,
            ]);
        }
        if let Some(kind) = Self::ALL.into_iter().find(|k| k.name().eq_ignore_ascii_case(v)) {
            return Ok(vec![kind]);
        }
        let names: Vec<_> = Self::ALL.iter().map(|k| k.name()).collect();
        Err(Error::config(format!(
            "{AZURE_TOKEN_CREDENTIALS} has unsupported value '{v}'; expected 'dev', 'prod', or one of: {}",
            names.join(", ")
        )))
    }
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A credential chain that tries, in order: environment (service principal), workload identity,
/// managed identity, Azure CLI, Azure Developer CLI — and then sticks to the first that works.
///
/// azure_identity 1.0 dropped its `DefaultAzureCredential` because a silent fallback from one
/// identity to another can turn a configuration mistake into a security incident. This one is
/// the safe version:
/// - A link that is not configured (or, for IMDS, does not answer a 1-second probe) is skipped;
///   a configured link that fails **stops** the chain with its error. Developer tools (`az`,
///   `azd`) only ever count as unavailable.
/// - After the first success the chain uses that link for the life of the credential and logs
///   (at info) which one it chose.
/// - `AZURE_TOKEN_CREDENTIALS` narrows the chain: `dev` (Azure CLI, azd), `prod` (environment,
///   workload identity, managed identity), or one credential name such as
///   `ManagedIdentityCredential` (case-insensitive). Naming managed identity skips the probe.
/// - `AZURE_CLIENT_ID` selects the user-assigned managed identity.
/// - Every HTTP link uses short, bounded retries ([`DEFAULT_REQUEST_TIMEOUT`] in all), so a
///   failure comes back in seconds.
///
/// It fetches on every call; put a [`TokenCache`](crate::TokenCache) in front of it (the pool
/// and the uploader do).
///
/// Note: azure_identity reads `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` (and, for IMDS, nothing
/// else) from the *process* environment. The chain decides which links to try from its
/// [`Env`]; keep the two in agreement when you inject an `Env`.
///
/// # Examples
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use azure_passwordless::DefaultAzureCredential;
/// use azure_core::credentials::TokenCredential;
///
/// let credential = DefaultAzureCredential::new()?;
/// let token = credential.get_token(&["https://storage.azure.com/.default"], None).await?;
/// # Ok(()) }
/// ```
pub struct DefaultAzureCredential {
    chain: chain::Chain,
}

impl DefaultAzureCredential {
    /// A chain configured from the process environment.
    ///
    /// Reads `AZURE_TOKEN_CREDENTIALS`, `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
    /// `AZURE_CLIENT_SECRET`, `AZURE_CLIENT_CERTIFICATE_PATH`, `AZURE_CLIENT_CERTIFICATE_PASSWORD`,
    /// `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_AUTHORITY_HOST`, `AZURE_CLOUD`, `IDENTITY_ENDPOINT`,
    /// `IDENTITY_HEADER`.
    ///
    /// # Errors
    /// A bad `AZURE_TOKEN_CREDENTIALS` or `AZURE_CLOUD` value.
    pub fn new() -> Result<Arc<Self>> {
        Self::builder().build()
    }

    /// A builder, reading the process environment unless given an [`Env`].
    pub fn builder() -> DefaultAzureCredentialBuilder {
        DefaultAzureCredentialBuilder::default()
    }

    /// The links this chain will try, in order.
    pub fn links(&self) -> Vec<CredentialKind> {
        self.chain.kinds()
    }

    /// Drops the tokens the underlying azure_identity credentials cache privately, so the next
    /// request really asks the identity endpoint. The chosen link stays chosen.
    ///
    /// azure_identity's managed identity credential keeps each token until 5 minutes before it
    /// expires; after a server rejected a token, asking again would only return the same one.
    /// [`TokenCache::for_default_credential`](crate::TokenCache::for_default_credential) calls
    /// this on every [`invalidate`](crate::TokenCache::invalidate).
    pub fn forget_cached_tokens(&self) {
        self.chain.forget();
    }

    /// The link that gave the first token, if any has yet.
    pub fn chosen(&self) -> Option<CredentialKind> {
        self.chain.chosen()
    }
}

impl fmt::Debug for DefaultAzureCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefaultAzureCredential")
            .field("links", &self.links())
            .field("chosen", &self.chosen())
            .finish()
    }
}

#[async_trait::async_trait]
impl TokenCredential for DefaultAzureCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.chain.get_token(scopes).await.map_err(Into::into)
    }
}

/// Builder for [`DefaultAzureCredential`].
#[must_use]
#[derive(Default)]
pub struct DefaultAzureCredentialBuilder {
    env: Env,
    links: Option<Vec<CredentialKind>>,
    user_assigned_id: Option<UserAssignedId>,
    cloud: Option<Cloud>,
    client_options: Option<ClientOptions>,
    root_certificates: Vec<Vec<u8>>,
    imds_probe_url: Option<String>,
    imds_probe_timeout: Option<std::time::Duration>,
    developer_tool_timeout: Option<std::time::Duration>,
}

impl fmt::Debug for DefaultAzureCredentialBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefaultAzureCredentialBuilder")
            .field("env", &self.env)
            .field("links", &self.links)
            .field("user_assigned_id", &self.user_assigned_id)
            .field("cloud", &self.cloud)
            .field("imds_probe_url", &self.imds_probe_url)
            .finish_non_exhaustive()
    }
}

impl DefaultAzureCredentialBuilder {
    /// Where settings are read from. Defaults to the process environment.
    pub fn env(mut self, env: Env) -> Self {
        self.env = env;
        self
    }

    /// Exactly these links, in this order, overriding `AZURE_TOKEN_CREDENTIALS`.
    /// Defaults to [`CredentialKind::ALL`] narrowed by `AZURE_TOKEN_CREDENTIALS`.
    pub fn links(mut self, links: impl IntoIterator<Item = CredentialKind>) -> Self {
        self.links = Some(links.into_iter().collect());
        self
    }

    /// The user-assigned managed identity to use. Defaults to `AZURE_CLIENT_ID` as a client id,
    /// else the system-assigned identity.
    pub fn user_assigned_id(mut self, id: UserAssignedId) -> Self {
        self.user_assigned_id = Some(id);
        self
    }

    /// The cloud whose authority host the environment and workload links use.
    /// Defaults to `AZURE_CLOUD`, else [`Cloud::Public`]; `AZURE_AUTHORITY_HOST` wins over both.
    pub fn cloud(mut self, cloud: Cloud) -> Self {
        self.cloud = Some(cloud);
        self
    }

    /// Client options for every HTTP link: transport (custom CA, proxy), retries.
    /// Defaults to a native-tls client with a 3 s connect timeout, a 10 s request timeout and
    /// at most 2 retries within 5 s.
    pub fn client_options(mut self, options: ClientOptions) -> Self {
        self.client_options = Some(options);
        self
    }

    /// Trusts this PEM-encoded CA certificate (in addition to the system roots) on every HTTP
    /// link: for a TLS-inspecting proxy, a private endpoint, or a local emulator. Ignored when
    /// [`client_options`](Self::client_options) brings its own transport.
    pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates.push(pem.into());
        self
    }

    /// Where to probe for IMDS. Defaults to [`DEFAULT_IMDS_PROBE_URL`].
    pub fn imds_probe_url(mut self, url: impl Into<String>) -> Self {
        self.imds_probe_url = Some(url.into());
        self
    }

    /// How long the IMDS probe waits. Defaults to [`DEFAULT_IMDS_PROBE_TIMEOUT`].
    pub fn imds_probe_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.imds_probe_timeout = Some(timeout);
        self
    }

    /// How long `az`/`azd` may run. Defaults to [`DEFAULT_DEVELOPER_TOOL_TIMEOUT`].
    pub fn developer_tool_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.developer_tool_timeout = Some(timeout);
        self
    }

    /// Builds the chain. Nothing is contacted until the first token request.
    ///
    /// # Errors
    /// A bad `AZURE_TOKEN_CREDENTIALS`, `AZURE_CLOUD` or IMDS probe URL, a root certificate
    /// that is not PEM, or an empty link list.
    pub fn build(self) -> Result<Arc<DefaultAzureCredential>> {
        let env = self.env;
        let kinds = match self.links {
            Some(kinds) => kinds,
            None => match env.get(AZURE_TOKEN_CREDENTIALS) {
                Some(value) => CredentialKind::parse_selection(&value)?,
                None => CredentialKind::ALL.to_vec(),
            },
        };
        if kinds.is_empty() {
            return Err(Error::config(
                "DefaultAzureCredential needs at least one credential link",
            ));
        }
        // Naming exactly one link means "use this one": for managed identity, skip the probe.
        let explicit = kinds.len() == 1;
        let cloud = match self.cloud {
            Some(cloud) => cloud,
            None => Cloud::from_env(&env)?,
        };
        let probe_url = self.imds_probe_url.as_deref().unwrap_or(DEFAULT_IMDS_PROBE_URL);
        let probe_url = url::Url::parse(probe_url)
            .map_err(|e| Error::config(format!("IMDS probe URL '{probe_url}' is not a valid URL: {e}")))?;
        let user_assigned_id = self
            .user_assigned_id
            .or_else(|| env.get("AZURE_CLIENT_ID").map(UserAssignedId::ClientId));
        let settings = links::Settings {
            env,
            cloud,
            client_options: match self.client_options {
                Some(options) => options,
                None => default_client_options(&self.root_certificates)?,
            },
            user_assigned_id,
            probe: imds::Probe::new(probe_url, self.imds_probe_timeout.unwrap_or(DEFAULT_IMDS_PROBE_TIMEOUT)),
            skip_probe: explicit,
            developer_tool_timeout: self.developer_tool_timeout.unwrap_or(DEFAULT_DEVELOPER_TOOL_TIMEOUT),
        };
        let settings = Arc::new(settings);
        let links = kinds
            .into_iter()
            .map(|kind| links::make(kind, settings.clone()))
            .collect();
        Ok(Arc::new(DefaultAzureCredential {
            chain: chain::Chain::new(links),
        }))
    }
}

/// Short, bounded retries and timeouts, so a broken identity endpoint fails in seconds rather
/// than after azure_core's default 9 attempts over ~81 s.
pub(crate) fn default_client_options(root_certificates: &[Vec<u8>]) -> Result<ClientOptions> {
    // Building a native-tls client loads the system CA bundle (~45 ms here); credentials with no
    // extra roots share one client (reqwest clients are handles onto one connection pool).
    static SHARED: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = match SHARED.get() {
        Some(client) if root_certificates.is_empty() => client.clone(),
        _ => {
            let client = build_client(root_certificates)?;
            if root_certificates.is_empty() {
                let _ = SHARED.set(client.clone());
            }
            client
        }
    };
    Ok(ClientOptions {
        retry: short_retry(),
        transport: Some(Transport::new(Arc::new(client))),
        ..Default::default()
    })
}

fn build_client(root_certificates: &[Vec<u8>]) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .timeout(DEFAULT_REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    for (i, pem) in root_certificates.iter().enumerate() {
        let cert = reqwest::Certificate::from_pem(pem).map_err(|e| {
            Error::config(format!(
                "root certificate #{} is not a PEM-encoded X.509 certificate",
                i + 1
            ))
            .with_source(e)
        })?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build()
        .map_err(|e| Error::config("could not build the HTTP client for the credential chain").with_source(e))
}

/// At most 2 retries within 5 s.
pub(crate) fn short_retry() -> RetryOptions {
    RetryOptions::exponential(ExponentialRetryOptions {
        initial_delay: Duration::milliseconds(200),
        max_retries: 2,
        max_total_elapsed: Duration::seconds(5),
        max_delay: Duration::seconds(2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_values() {
        use CredentialKind::*;
        assert_eq!(
            CredentialKind::parse_selection("dev").unwrap(),
            vec![AzureCli, AzureDeveloperCli]
        );
        assert_eq!(
            CredentialKind::parse_selection("PROD").unwrap(),
            vec![Environment, WorkloadIdentity, ManagedIdentity]
        );
        assert_eq!(
            CredentialKind::parse_selection("managedidentitycredential").unwrap(),
            vec![ManagedIdentity]
        );
        for kind in CredentialKind::ALL {
            assert_eq!(CredentialKind::parse_selection(kind.name()).unwrap(), vec![kind]);
        }
    }

    #[test]
    fn bad_selection_lists_valid_values() {
        let err = CredentialKind::parse_selection("cli").unwrap_err();
        assert!(err.is_config());
        let text = err.to_string();
        for expected in [
            "AZURE_TOKEN_CREDENTIALS",
            "'cli'",
            "'dev'",
            "'prod'",
            "AzureDeveloperCliCredential",
        ] {
            assert!(text.contains(expected), "{expected} missing from {text}");
        }
    }

    #[test]
    fn builder_reads_selection_from_env() {
        let env = Env::from_slice(&[("AZURE_TOKEN_CREDENTIALS", "dev")]);
        let cred = DefaultAzureCredential::builder().env(env).build().unwrap();
        assert_eq!(
            cred.links(),
            vec![CredentialKind::AzureCli, CredentialKind::AzureDeveloperCli]
        );
        let env = Env::from_slice(&[("AZURE_TOKEN_CREDENTIALS", "bogus")]);
        assert!(
            DefaultAzureCredential::builder()
                .env(env)
                .build()
                .unwrap_err()
                .is_config()
        );
    }

    #[test]
    fn bad_root_certificate_is_a_config_error() {
        let err = DefaultAzureCredential::builder()
            .env(Env::from_slice(&[]))
            .root_certificate_pem(b"not a certificate".to_vec())
            .build()
            .unwrap_err();
        assert!(err.is_config());
        assert!(
            err.to_string()
                .contains("root certificate #1 is not a PEM-encoded X.509 certificate"),
            "{err}"
        );
    }

    #[test]
    fn default_chain_is_in_sdk_order() {
        let cred = DefaultAzureCredential::builder()
            .env(Env::from_slice(&[]))
            .build()
            .unwrap();
        assert_eq!(cred.links(), CredentialKind::ALL.to_vec());
    }
}
