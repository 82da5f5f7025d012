//! The chain: try named links in order, stop on a hard error, stick to the first that works.

use crate::{Error, error::ErrorKind};
use azure_core::credentials::AccessToken;
use std::{fmt, sync::OnceLock};
use tracing::{Instrument, info, info_span};

use super::CredentialKind;

/// Why a link did not give a token.
#[derive(Debug)]
pub(crate) enum LinkError {
    /// Not configured or not reachable: the chain moves on.
    Unavailable(String),
    /// Configured and failed: the chain stops here.
    Failed(azure_core::Error),
}

#[async_trait::async_trait]
pub(crate) trait Link: Send + Sync + fmt::Debug {
    fn kind(&self) -> CredentialKind;
    /// Drops anything the link cached, so its next token is fetched anew.
    fn forget(&self) {}
    async fn get_token(&self, scopes: &[&str]) -> Result<AccessToken, LinkError>;
}

#[derive(Debug)]
pub(crate) struct Chain {
    links: Vec<Box<dyn Link>>,
    chosen: OnceLock<usize>,
}

impl Chain {
    pub(crate) fn new(links: Vec<Box<dyn Link>>) -> Self {
        Self {
            links,
            chosen: OnceLock::new(),
        }
    }

    pub(crate) fn kinds(&self) -> Vec<CredentialKind> {
        self.links.iter().map(|l| l.kind()).collect()
    }

    pub(crate) fn forget(&self) {
        for link in &self.links {
            link.forget();
        }
    }

    pub(crate) fn chosen(&self) -> Option<CredentialKind> {
        self.chosen.get().map(|&i| self.links[i].kind())
    }

    pub(crate) async fn get_token(&self, scopes: &[&str]) -> Result<AccessToken, Error> {
        if let Some(&i) = self.chosen.get() {
            let link = &self.links[i];
            return link.get_token(scopes).await.map_err(|err| match err {
                LinkError::Unavailable(reason) => Error::new(
                    ErrorKind::Credential,
                    format!("{} (chosen earlier) is no longer available: {reason}", link.kind()),
                ),
                LinkError::Failed(source) => {
                    Error::new(ErrorKind::Credential, format!("{} failed", link.kind())).with_source(source)
                }
            });
        }

        let mut unavailable: Vec<(CredentialKind, String)> = Vec::new();
        for (i, link) in self.links.iter().enumerate() {
            let kind = link.kind();
            let span = info_span!("credential_link", link = %kind);
            match link.get_token(scopes).instrument(span).await {
                Ok(token) => {
                    if self.chosen.set(i).is_ok() {
                        info!(link = %kind, "DefaultAzureCredential chose {kind}; it will use it from now on");
                    }
                    return Ok(token);
                }
                Err(LinkError::Unavailable(reason)) => {
                    tracing::debug!(link = %kind, %reason, "credential unavailable; trying the next one");
                    unavailable.push((kind, reason));
                }
                Err(LinkError::Failed(source)) => {
                    let mut message = format!("{kind} failed, so the credential chain stopped");
                    if !unavailable.is_empty() {
                        message.push_str(" (");
                        message.push_str(&list(&unavailable, "; "));
                        message.push(')');
                    }
                    return Err(Error::new(ErrorKind::Credential, message).with_source(source));
                }
            }
        }
        Err(Error::new(
            ErrorKind::Credential,
            format!(
                "DefaultAzureCredential found no usable credential; tried in order: {}. \
                 See https://aka.ms/azsdk/rust/identity/troubleshoot",
                if unavailable.is_empty() {
                    "nothing".to_owned()
                } else {
                    list(&unavailable, "; ")
                }
            ),
        ))
    }
}

fn list(items: &[(CredentialKind, String)], sep: &str) -> String {
    items
        .iter()
        .map(|(kind, reason)| format!("{kind}: {reason}"))
        .collect::<Vec<_>>()
        .join(sep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::time::OffsetDateTime;
    use parking_lot::Mutex;
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    /// A scripted link: answers from a queue of outcomes, counting calls.
    #[derive(Debug)]
    struct Scripted {
        kind: CredentialKind,
        outcomes: Mutex<Vec<Outcome>>,
        calls: Arc<AtomicUsize>,
    }

    #[derive(Debug, Clone)]
    enum Outcome {
        Token(&'static str),
        Unavailable(&'static str),
        Failed(&'static str),
    }

    impl Scripted {
        fn link(kind: CredentialKind, outcomes: &[Outcome]) -> (Box<dyn Link>, Arc<AtomicUsize>) {
            let calls = Arc::new(AtomicUsize::new(0));
            let mut queue = outcomes.to_vec();
            queue.reverse();
            (
                Box::new(Self {
                    kind,
                    outcomes: Mutex::new(queue),
                    calls: calls.clone(),
                }),
                calls,
            )
        }
    }

    #[async_trait::async_trait]
    impl Link for Scripted {
        fn kind(&self) -> CredentialKind {
            self.kind
        }
        async fn get_token(&self, _: &[&str]) -> Result<AccessToken, LinkError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mut q = self.outcomes.lock();
            let outcome = if q.len() > 1 { q.pop().unwrap() } else { q[0].clone() };
            match outcome {
                Outcome::Token(t) => Ok(AccessToken::new(t, OffsetDateTime::UNIX_EPOCH)),
                Outcome::Unavailable(r) => Err(LinkError::Unavailable(r.into())),
                Outcome::Failed(m) => Err(LinkError::Failed(azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Credential,
                    m,
                ))),
            }
        }
    }

    use CredentialKind::*;
    use Outcome::*;

    #[tokio::test]
    async fn unavailable_links_are_skipped_in_order() {
        let (env, env_calls) = Scripted::link(Environment, &[Unavailable("AZURE_TENANT_ID not set")]);
        let (mi, _) = Scripted::link(ManagedIdentity, &[Token("mi")]);
        let (cli, cli_calls) = Scripted::link(AzureCli, &[Token("cli")]);
        let chain = Chain::new(vec![env, mi, cli]);
        let token = chain.get_token(&["s"]).await.unwrap();
        assert_eq!(token.token.secret(), "mi");
        assert_eq!(env_calls.load(Ordering::SeqCst), 1);
        assert_eq!(cli_calls.load(Ordering::SeqCst), 0);
        assert_eq!(chain.chosen(), Some(ManagedIdentity));
    }

    #[tokio::test]
    async fn hard_error_stops_chain() {
        let (env, _) = Scripted::link(Environment, &[Unavailable("not configured")]);
        let (mi, _) = Scripted::link(ManagedIdentity, &[Failed("identity not assigned")]);
        let (cli, cli_calls) = Scripted::link(AzureCli, &[Token("cli")]);
        let chain = Chain::new(vec![env, mi, cli]);
        let err = chain.get_token(&["s"]).await.unwrap_err();
        assert_eq!(cli_calls.load(Ordering::SeqCst), 0);
        assert!(err.is_credential());
        let text = err.report();
        assert!(text.starts_with("ManagedIdentityCredential failed"), "{text}");
        assert!(text.contains("EnvironmentCredential: not configured"), "{text}");
        assert!(text.contains("identity not assigned"), "{text}");
        assert_eq!(chain.chosen(), None);
    }

    #[tokio::test]
    async fn chain_sticks_to_the_first_link_that_worked() {
        let (mi, mi_calls) = Scripted::link(ManagedIdentity, &[Unavailable("probe failed"), Failed("boom")]);
        let (cli, cli_calls) = Scripted::link(AzureCli, &[Token("cli"), Unavailable("az logged out")]);
        let chain = Chain::new(vec![mi, cli]);
        assert_eq!(chain.get_token(&["s"]).await.unwrap().token.secret(), "cli");
        // The chosen link now fails; the chain must not wander back to managed identity.
        let err = chain.get_token(&["s"]).await.unwrap_err();
        assert_eq!(mi_calls.load(Ordering::SeqCst), 1);
        assert_eq!(cli_calls.load(Ordering::SeqCst), 2);
        assert!(err.to_string().contains("AzureCliCredential (chosen earlier)"), "{err}");
        assert_eq!(chain.chosen(), Some(AzureCli));
    }

    #[tokio::test]
    async fn all_unavailable_lists_every_link_and_reason() {
        let (env, _) = Scripted::link(Environment, &[Unavailable("AZURE_TENANT_ID not set")]);
        let (wi, _) = Scripted::link(WorkloadIdentity, &[Unavailable("AZURE_FEDERATED_TOKEN_FILE not set")]);
        let (mi, _) = Scripted::link(ManagedIdentity, &[Unavailable("IMDS did not answer")]);
        let (cli, _) = Scripted::link(AzureCli, &[Unavailable("az not found on PATH")]);
        let (azd, _) = Scripted::link(AzureDeveloperCli, &[Unavailable("azd not found on PATH")]);
        let chain = Chain::new(vec![env, wi, mi, cli, azd]);
        let text = chain.get_token(&["s"]).await.unwrap_err().to_string();
        let expected = [
            "EnvironmentCredential: AZURE_TENANT_ID not set",
            "WorkloadIdentityCredential: AZURE_FEDERATED_TOKEN_FILE not set",
            "ManagedIdentityCredential: IMDS did not answer",
            "AzureCliCredential: az not found on PATH",
            "AzureDeveloperCliCredential: azd not found on PATH",
        ];
        let mut at = 0;
        for part in expected {
            let found = text[at..]
                .find(part)
                .unwrap_or_else(|| panic!("{part} missing or out of order in {text}"));
            at += found + part.len();
        }
    }
}
