//! A quick probe for the VM Instance Metadata Service before trusting the IMDS credential.
//!
//! azure_identity's IMDS credential retries 6 times over up to 72 s; on a laptop that is a
//! minute lost before the chain reaches the Azure CLI. One request with a short timeout and no
//! retries tells whether IMDS is there at all.

use std::time::Duration;
use tokio::sync::OnceCell;
use url::Url;

#[derive(Debug)]
pub(crate) struct Probe {
    url: Url,
    timeout: Duration,
    outcome: OnceCell<Result<(), String>>,
}

impl Probe {
    pub(crate) fn new(url: Url, timeout: Duration) -> Self {
        Self {
            url,
            timeout,
            outcome: OnceCell::new(),
        }
    }

    /// `Ok` when something answered HTTP at the probe URL. Probed once per credential.
    pub(crate) async fn check(&self) -> Result<(), String> {
        self.outcome.get_or_init(|| self.run()).await.clone()
    }

    async fn run(&self) -> Result<(), String> {
        let client = reqwest::Client::builder()
            // IMDS is link-local: a proxy can never reach it.
            .no_proxy()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .build()
            .map_err(|e| format!("could not build the IMDS probe client: {e}"))?;
        // Without the `Metadata: true` header IMDS answers 400 at once; any answer means present.
        match client.get(self.url.clone()).send().await {
            Ok(response) => {
                tracing::debug!(status = %response.status(), url = %self.url, "IMDS probe answered");
                Ok(())
            }
            Err(e) if e.is_timeout() => Err(format!(
                "no IDENTITY_ENDPOINT set, and IMDS at {} did not answer within {} ms",
                self.url,
                self.timeout.as_millis()
            )),
            Err(e) => Err(format!(
                "no IDENTITY_ENDPOINT set, and IMDS at {} is unreachable: {}",
                self.url,
                crate::error::report(&e)
            )),
        }
    }
}
