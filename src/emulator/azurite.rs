//! Azurite (Microsoft's Blob Storage emulator, from npm) over HTTPS with OAuth.
//!
//! Started with `--oauth basic`: Azurite then accepts only bearer tokens whose (unverified) JWT
//! has `iat`, `nbf`, `exp`, an `iss` starting `https://sts.windows.net/` and
//! `aud = https://storage.azure.com` — which is what the local identity endpoint issues.

use super::TestCertificates;
use crate::{Error, Result, error::ErrorKind};
use std::{fmt, path::PathBuf, process::Stdio, time::Duration};
use tokio::process::{Child, Command};

/// The pinned Azurite version; 3.37.0 accepts azure_storage_blob 1.1's `x-ms-version`.
pub const AZURITE_VERSION: &str = "3.37.0";
/// Azurite's well-known development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";

fn emu(what: impl Into<String>) -> Error {
    Error::new(ErrorKind::Emulator, what.into())
}

/// Where the test command installs Azurite: `AZURITE_DIR`, else `.cache/azurite-<version>` in
/// this crate's directory.
fn azurite_main() -> Result<PathBuf> {
    let base = match std::env::var_os("AZURITE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(".cache")
            .join(format!("azurite-{AZURITE_VERSION}")),
    };
    let main = base.join("node_modules/azurite/dist/src/blob/main.js");
    if main.exists() {
        Ok(main)
    } else {
        Err(emu(format!(
            "Azurite {AZURITE_VERSION} not found at {}: run `sh scripts/test.sh` (it installs it with npm) or set AZURITE_DIR",
            main.display()
        )))
    }
}

/// A running Azurite blob service on 127.0.0.1 over HTTPS, stopped when dropped.
///
/// # Examples
/// ```no_run
/// # async fn run() -> azure_passwordless::Result<()> {
/// use azure_passwordless::emulator::{Azurite, TestCertificates};
///
/// let azurite = Azurite::start(&TestCertificates::generate()?).await?;
/// println!("{}", azurite.account_url()); // https://127.0.0.1:<port>/devstoreaccount1
/// # Ok(()) }
/// ```
pub struct Azurite {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    ca_pem: String,
}

impl fmt::Debug for Azurite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Azurite")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Azurite {
    /// Starts Azurite with `--oauth basic`, HTTPS with `certs`' leaf, in-memory storage, on a
    /// free port, and waits until it accepts connections.
    ///
    /// # Errors
    /// [`ErrorKind::Emulator`] when Azurite is not installed, or exits or does not listen within
    /// 30 s (its output is in the message).
    pub async fn start(certs: &TestCertificates) -> Result<Self> {
        let main = azurite_main()?;
        let dir = std::env::temp_dir().join(format!(
            "azure_passwordless_azurite_{}_{:x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| emu("cannot create Azurite's directory").with_source(e))?;
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, certs.leaf_chain_pem())
            .map_err(|e| emu("cannot write the certificate").with_source(e))?;
        std::fs::write(&key, certs.leaf_key_pem()).map_err(|e| emu("cannot write the key").with_source(e))?;
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| emu("no free port").with_source(e))?;
            l.local_addr().map_err(|e| emu("no free port").with_source(e))?.port()
        };
        let log =
            std::fs::File::create(dir.join("azurite.log")).map_err(|e| emu("cannot create the log").with_source(e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| emu("cannot create the log").with_source(e))?;
        let child = Command::new("node")
            .arg(&main)
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &port.to_string(),
                "--oauth",
                "basic",
            ])
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .args(["--inMemoryPersistence", "--disableTelemetry"])
            // Anything Azurite writes lands in its own scratch directory.
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| emu("cannot run node (is Node.js installed?)").with_source(e))?;
        let mut azurite = Self {
            child: Some(child),
            port,
            dir,
            ca_pem: certs.ca_pem().to_owned(),
        };
        azurite.wait_until_listening().await?;
        Ok(azurite)
    }

    async fn wait_until_listening(&mut self) -> Result<()> {
        // Startup, not time passing: poll the port while Node.js boots (~2 s).
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(emu(format!(
                    "Azurite exited ({status}) before listening: {}",
                    self.log()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(emu(format!("Azurite did not listen within 30 s: {}", self.log())))
    }

    /// Azurite's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("azurite.log")).unwrap_or_default()
    }

    /// `https://127.0.0.1:<port>/devstoreaccount1`.
    pub fn account_url(&self) -> String {
        format!("https://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port)
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA to trust for Azurite's certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Stops Azurite now (a test of "storage is down"); dropping does the same.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
            let _ = child.wait().await;
        }
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
