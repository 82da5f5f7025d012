//! DefaultAzureCredential against real components: azure_identity's own ManagedIdentityCredential
//! talking to the local identity endpoint over a socket, `az`/`azd` run as real child processes
//! (small scripts standing in for the tools, found on PATH), and an IMDS address that accepts
//! connections but never answers.
//!
//! azure_identity reads IDENTITY_ENDPOINT, IDENTITY_HEADER and PATH from the process
//! environment, so this binary has its own `main` (harness = false): it sets them before any
//! thread starts, then runs each test in order on one runtime.

mod common;

use azure_core::credentials::TokenCredential;
use azure_passwordless::emulator::IdentityEndpoint;
use azure_passwordless::{CredentialKind, DefaultAzureCredential, Env};
use base64::Engine;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const PG_SCOPE: &str = "https://ossrdbms-aad.database.windows.net/.default";
const HEADER_SECRET: &str = "test-identity-header-3f9a1c";

struct Ctx {
    endpoint: IdentityEndpoint,
    tools: PathBuf,
    imds: Blackhole,
    logs: common::LogBuffer,
}

impl Ctx {
    /// An Env holding the endpoint's two variables plus `extra`.
    fn env(&self, extra: &[(&str, &str)]) -> Env {
        let url = self.endpoint.url();
        let mut pairs = vec![("IDENTITY_ENDPOINT", url.as_str()), ("IDENTITY_HEADER", HEADER_SECRET)];
        pairs.extend_from_slice(extra);
        Env::from_slice(&pairs)
    }

    fn set_tool(&self, tool: &str, mode: &str) {
        std::fs::write(self.tools.join(format!("{tool}.mode")), mode).unwrap();
    }

    fn tool_calls(&self, tool: &str) -> usize {
        std::fs::read_to_string(self.tools.join(format!("{tool}.calls")))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    fn reset_tools(&self) {
        for tool in ["az", "azd"] {
            let _ = std::fs::remove_file(self.tools.join(format!("{tool}.calls")));
            self.set_tool(tool, "ok");
        }
    }
}

fn claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("JWT-shaped token");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn managed_identity_via_app_service(ctx: &Ctx) {
    let before = ctx.endpoint.request_count();
    let cred = DefaultAzureCredential::builder().env(ctx.env(&[])).build().unwrap();
    let token = cred.get_token(&[PG_SCOPE], None).await.unwrap();
    assert_eq!(cred.chosen(), Some(CredentialKind::ManagedIdentity));
    assert_eq!(ctx.endpoint.request_count(), before + 1);
    let claims = claims(token.token.secret());
    assert_eq!(claims["aud"], "https://ossrdbms-aad.database.windows.net");
    assert!(claims["iss"].as_str().unwrap().starts_with("https://sts.windows.net/"));
    assert_eq!(
        ctx.endpoint.client_ids().last().unwrap(),
        &None,
        "system-assigned by default"
    );
    assert_eq!(ctx.tool_calls("az"), 0, "developer tools never ran");
}

async fn client_id_selects_user_assigned_identity(ctx: &Ctx) {
    let cred = DefaultAzureCredential::builder()
        .env(ctx.env(&[("AZURE_CLIENT_ID", "11111111-2222-4333-8444-555555555555")]))
        .build()
        .unwrap();
    let token = cred
        .get_token(&["https://storage.azure.com/.default"], None)
        .await
        .unwrap();
    assert_eq!(
        ctx.endpoint.client_ids().last().unwrap().as_deref(),
        Some("11111111-2222-4333-8444-555555555555")
    );
    let mirid = claims(token.token.secret())["xms_mirid"].as_str().unwrap().to_owned();
    assert!(mirid.contains("userAssignedIdentities/"), "{mirid}");
}

async fn environment_link_comes_first_and_its_failure_stops_the_chain(ctx: &Ctx) {
    let closed = closed_port();
    let authority = format!("https://127.0.0.1:{closed}");
    let before = ctx.endpoint.request_count();
    let cred = DefaultAzureCredential::builder()
        .env(ctx.env(&[
            ("AZURE_TENANT_ID", "00000000-0000-4000-8000-000000000001"),
            ("AZURE_CLIENT_ID", "00000000-0000-4000-8000-000000000002"),
            ("AZURE_CLIENT_SECRET", "not-a-real-secret-value"),
            ("AZURE_AUTHORITY_HOST", &authority),
        ]))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let err = cred.get_token(&[PG_SCOPE], None).await.unwrap_err();
    let text = azure_passwordless_report(&err);
    assert!(text.starts_with("EnvironmentCredential failed"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "failure took {:?}",
        started.elapsed()
    );
    assert_eq!(ctx.endpoint.request_count(), before, "managed identity was not tried");
    assert!(!text.contains("not-a-real-secret-value"), "secret in error: {text}");
}

async fn workload_identity_comes_before_managed_identity(ctx: &Ctx) {
    let token_file = ctx.tools.join("federated-token");
    std::fs::write(&token_file, "federated.jwt.assertion").unwrap();
    let authority = format!("https://127.0.0.1:{}", closed_port());
    let before = ctx.endpoint.request_count();
    let cred = DefaultAzureCredential::builder()
        .env(ctx.env(&[
            ("AZURE_TENANT_ID", "00000000-0000-4000-8000-000000000001"),
            ("AZURE_CLIENT_ID", "00000000-0000-4000-8000-000000000002"),
            ("AZURE_FEDERATED_TOKEN_FILE", token_file.to_str().unwrap()),
            ("AZURE_AUTHORITY_HOST", &authority),
        ]))
        .build()
        .unwrap();
    let text = azure_passwordless_report(&cred.get_token(&[PG_SCOPE], None).await.unwrap_err());
    assert!(text.starts_with("WorkloadIdentityCredential failed"), "{text}");
    assert!(
        text.contains(
            "EnvironmentCredential: not configured: AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH not set"
        ),
        "{text}"
    );
    assert_eq!(ctx.endpoint.request_count(), before);
}

async fn dev_selects_developer_tools(ctx: &Ctx) {
    let before = ctx.endpoint.request_count();
    let cred = DefaultAzureCredential::builder()
        .env(ctx.env(&[("AZURE_TOKEN_CREDENTIALS", "dev")]))
        .build()
        .unwrap();
    assert_eq!(
        cred.links(),
        vec![CredentialKind::AzureCli, CredentialKind::AzureDeveloperCli]
    );
    let token = cred.get_token(&[PG_SCOPE], None).await.unwrap();
    assert!(token.token.secret().starts_with("fake-az-token-"));
    assert_eq!(cred.chosen(), Some(CredentialKind::AzureCli));
    assert_eq!(
        ctx.endpoint.request_count(),
        before,
        "managed identity is not part of 'dev'"
    );
    assert_eq!(ctx.tool_calls("az"), 1);
}

async fn dev_moves_on_to_azd_when_az_fails(ctx: &Ctx) {
    ctx.set_tool("az", "fail");
    let cred = DefaultAzureCredential::builder()
        .env(ctx.env(&[("AZURE_TOKEN_CREDENTIALS", "DEV")]))
        .build()
        .unwrap();
    let token = cred.get_token(&[PG_SCOPE], None).await.unwrap();
    assert!(token.token.secret().starts_with("fake-azd-token-"));
    assert_eq!(cred.chosen(), Some(CredentialKind::AzureDeveloperCli));
}

async fn prod_never_runs_developer_tools(ctx: &Ctx) {
    let cred = DefaultAzureCredential::builder()
        .env(ctx.env(&[("AZURE_TOKEN_CREDENTIALS", "prod")]))
        .build()
        .unwrap();
    cred.get_token(&[PG_SCOPE], None).await.unwrap();
    assert_eq!(cred.chosen(), Some(CredentialKind::ManagedIdentity));

    // Nothing production-grade configured: the chain fails rather than reach for `az`.
    let cred = DefaultAzureCredential::builder()
        .env(Env::from_slice(&[("AZURE_TOKEN_CREDENTIALS", "prod")]))
        .imds_probe_url(ctx.imds.url())
        .imds_probe_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let text = cred.get_token(&[PG_SCOPE], None).await.unwrap_err().to_string();
    for name in [
        "EnvironmentCredential",
        "WorkloadIdentityCredential",
        "ManagedIdentityCredential",
    ] {
        assert!(text.contains(name), "{name} missing: {text}");
    }
    assert!(!text.contains("AzureCli"), "{text}");
    assert_eq!(ctx.tool_calls("az"), 0);
}

async fn one_name_selects_exactly_that_link(ctx: &Ctx) {
    let cred = DefaultAzureCredential::builder()
        .env(ctx.env(&[("AZURE_TOKEN_CREDENTIALS", "azureclicredential")]))
        .build()
        .unwrap();
    assert_eq!(cred.links(), vec![CredentialKind::AzureCli]);
    assert!(
        cred.get_token(&[PG_SCOPE], None)
            .await
            .unwrap()
            .token
            .secret()
            .starts_with("fake-az-token-")
    );
}

async fn bad_selection_is_a_construction_error(ctx: &Ctx) {
    let err = DefaultAzureCredential::builder()
        .env(ctx.env(&[("AZURE_TOKEN_CREDENTIALS", "managed")]))
        .build()
        .unwrap_err();
    assert!(err.is_config());
    let text = err.to_string();
    assert!(
        text.contains("'managed'") && text.contains("ManagedIdentityCredential") && text.contains("'dev'"),
        "{text}"
    );
}

async fn imds_probe_times_out_fast(ctx: &Ctx) {
    // No IDENTITY_ENDPOINT: managed identity must probe IMDS, which here accepts the
    // connection and never answers, as a firewalled link-local address does.
    let accepted = ctx.imds.accepted();
    let cred = DefaultAzureCredential::builder()
        .env(Env::from_slice(&[]))
        .links([CredentialKind::ManagedIdentity, CredentialKind::AzureCli])
        .imds_probe_url(ctx.imds.url())
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let token = cred.get_token(&[PG_SCOPE], None).await.unwrap();
    let took = started.elapsed();
    assert!(token.token.secret().starts_with("fake-az-token-"));
    assert_eq!(cred.chosen(), Some(CredentialKind::AzureCli));
    assert!(took < Duration::from_secs(3), "probe held the chain for {took:?}");
    assert_eq!(ctx.imds.accepted(), accepted + 1, "exactly one probe, no retries");

    ctx.set_tool("az", "fail");
    let cred = DefaultAzureCredential::builder()
        .env(Env::from_slice(&[]))
        .links([CredentialKind::ManagedIdentity, CredentialKind::AzureCli])
        .imds_probe_url(ctx.imds.url())
        .build()
        .unwrap();
    let text = cred.get_token(&[PG_SCOPE], None).await.unwrap_err().to_string();
    assert!(
        text.contains("ManagedIdentityCredential: no IDENTITY_ENDPOINT set, and IMDS at"),
        "{text}"
    );
    assert!(text.contains("did not answer within 1000 ms"), "{text}");
}

async fn naming_managed_identity_skips_the_probe(ctx: &Ctx) {
    let accepted = ctx.imds.accepted();
    let cred = DefaultAzureCredential::builder()
        .env(Env::from_slice(&[(
            "AZURE_TOKEN_CREDENTIALS",
            "ManagedIdentityCredential",
        )]))
        .imds_probe_url(ctx.imds.url())
        .build()
        .unwrap();
    cred.get_token(&[PG_SCOPE], None).await.unwrap();
    assert_eq!(ctx.imds.accepted(), accepted, "no probe when managed identity is named");
}

async fn hard_error_stops_chain(ctx: &Ctx) {
    ctx.endpoint
        .reject_identity(Some("99999999-0000-4000-8000-000000000009"));
    let cred = DefaultAzureCredential::builder()
        .env(ctx.env(&[("AZURE_CLIENT_ID", "99999999-0000-4000-8000-000000000009")]))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let err = cred.get_token(&[PG_SCOPE], None).await.unwrap_err();
    let text = azure_passwordless_report(&err);
    assert!(
        text.starts_with("ManagedIdentityCredential failed, so the credential chain stopped"),
        "{text}"
    );
    assert!(text.contains("has not been assigned to this resource"), "{text}");
    assert_eq!(ctx.tool_calls("az"), 0, "the chain must not fall back to the Azure CLI");
    assert!(started.elapsed() < Duration::from_secs(10));
}

async fn chain_sticks_to_its_chosen_link(ctx: &Ctx) {
    let cred = DefaultAzureCredential::builder().env(ctx.env(&[])).build().unwrap();
    cred.get_token(&["https://sticky.example/.default"], None)
        .await
        .unwrap();
    assert_eq!(cred.chosen(), Some(CredentialKind::ManagedIdentity));
    ctx.endpoint.fail_with(500, "managed identity endpoint is down");
    let started = tokio::time::Instant::now();
    // A new scope, so azure_identity's own cache cannot answer.
    let err = cred
        .get_token(&["https://sticky-two.example/.default"], None)
        .await
        .unwrap_err();
    ctx.endpoint.recover();
    let text = azure_passwordless_report(&err);
    assert!(text.starts_with("ManagedIdentityCredential failed"), "{text}");
    assert!(text.contains("managed identity endpoint is down"), "{text}");
    assert_eq!(ctx.tool_calls("az"), 0);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "retries took {:?}",
        started.elapsed()
    );
    assert_eq!(cred.chosen(), Some(CredentialKind::ManagedIdentity));
}

async fn all_unavailable_lists_each_link(ctx: &Ctx) {
    ctx.set_tool("az", "fail");
    ctx.set_tool("azd", "fail");
    let cred = DefaultAzureCredential::builder()
        .env(Env::from_slice(&[]))
        .imds_probe_url(ctx.imds.url())
        .imds_probe_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let text = cred.get_token(&[PG_SCOPE], None).await.unwrap_err().to_string();
    let expected = [
        "EnvironmentCredential: not configured: AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET or AZURE_CLIENT_CERTIFICATE_PATH not set",
        "WorkloadIdentityCredential: not configured: AZURE_FEDERATED_TOKEN_FILE, AZURE_TENANT_ID, AZURE_CLIENT_ID not set",
        "ManagedIdentityCredential: no IDENTITY_ENDPOINT set",
        "AzureCliCredential:",
        "Please run 'az login'",
        "AzureDeveloperCliCredential:",
        "not logged in, run `azd auth login`",
    ];
    let mut at = 0;
    for part in expected {
        let found = text[at..]
            .find(part)
            .unwrap_or_else(|| panic!("{part:?} missing or out of order in {text}"));
        at += found + part.len();
    }
    assert_eq!(cred.chosen(), None);
}

async fn no_secret_in_logs_or_debug(ctx: &Ctx) {
    let cred = DefaultAzureCredential::builder().env(ctx.env(&[])).build().unwrap();
    let token = cred.get_token(&[PG_SCOPE], None).await.unwrap();
    let debug = format!("{cred:?} {:?} {:?}", ctx.env(&[]), token);
    assert!(
        ctx.logs.text().contains("DefaultAzureCredential chose"),
        "the choice must be logged"
    );
    let mut secrets = ctx.endpoint.issued_tokens();
    secrets.push(HEADER_SECRET.to_owned());
    secrets.push("fake-az-token-".to_owned());
    secrets.push("fake-azd-token-".to_owned());
    ctx.logs.assert_secrets_absent(&secrets, &debug);
}

fn azure_passwordless_report(err: &azure_core::Error) -> String {
    let mut out = err.to_string();
    let mut next = std::error::Error::source(err);
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Accepts TCP connections and never answers.
struct Blackhole {
    addr: std::net::SocketAddr,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl Blackhole {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(socket);
            }
        });
        Self { addr, accepted }
    }

    fn url(&self) -> String {
        format!("http://{}/metadata/identity/oauth2/token", self.addr)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Writes `az` and `azd` stand-ins: each appends a line to `<tool>.calls` and answers as the
/// real tool does when logged in (`<tool>.mode` = ok) or logged out (fail).
fn write_tools(dir: &Path) {
    let az = format!(
        r#"#!/bin/sh
echo "$@" >> {dir}/az.calls
case "$(cat {dir}/az.mode)" in
  fail) echo "ERROR: Please run 'az login' to setup account." >&2; exit 1 ;;
esac
exp=$(( $(date +%s) + 3600 ))
echo "{{\"accessToken\": \"fake-az-token-$$\", \"expires_on\": $exp, \"tokenType\": \"Bearer\"}}"
"#,
        dir = dir.display()
    );
    let azd = format!(
        r#"#!/bin/sh
echo "$@" >> {dir}/azd.calls
case "$(cat {dir}/azd.mode)" in
  fail) echo '{{"type":"consoleMessage","data":{{"message":"ERROR: not logged in, run `azd auth login` to login"}}}}' >&2; exit 1 ;;
esac
exp=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
echo "{{\"token\": \"fake-azd-token-$$\", \"expiresOn\": \"$exp\"}}"
"#,
        dir = dir.display()
    );
    for (name, body) in [("az", az), ("azd", azd)] {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        let mut perms = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&path, perms).unwrap();
    }
}

fn main() {
    let tools = std::env::temp_dir().join(format!("azure_passwordless_tools_{}", std::process::id()));
    std::fs::create_dir_all(&tools).unwrap();
    write_tools(&tools);
    let path = format!("{}:{}", tools.display(), std::env::var("PATH").unwrap_or_default());
    let listener = common::identity_env(HEADER_SECRET, &[("PATH", &path)]);
    let logs = common::capture_logs();
    let failed = common::runtime().block_on(async {
        let endpoint = common::identity_endpoint(listener, HEADER_SECRET, "restaurant-review-identity").await;
        let ctx = Ctx {
            endpoint,
            tools: tools.clone(),
            imds: Blackhole::start().await,
            logs,
        };
        let all = tests![Ctx:
            managed_identity_via_app_service,
            client_id_selects_user_assigned_identity,
            environment_link_comes_first_and_its_failure_stops_the_chain,
            workload_identity_comes_before_managed_identity,
            dev_selects_developer_tools,
            dev_moves_on_to_azd_when_az_fails,
            prod_never_runs_developer_tools,
            one_name_selects_exactly_that_link,
            bad_selection_is_a_construction_error,
            imds_probe_times_out_fast,
            naming_managed_identity_skips_the_probe,
            hard_error_stops_chain,
            chain_sticks_to_its_chosen_link,
            all_unavailable_lists_each_link,
            no_secret_in_logs_or_debug,
        ];
        // Each test starts with both tools logged in and no calls recorded.
        let mut failed = Vec::new();
        for one in all {
            ctx.reset_tools();
            failed.extend(common::run(&ctx, &[one]).await);
        }
        failed
    });
    let _ = std::fs::remove_dir_all(&tools);
    common::finish(failed);
}
