//! A throwaway PostgreSQL cluster configured like Azure Database for PostgreSQL with Entra
//! authentication: TLS required, and the password checked in cleartext over TLS (the `password`
//! method, which is how Azure receives Entra tokens). A role's password is set to the token the
//! local identity endpoint issues, so rotating it behaves like an expired token.

use super::TestCertificates;
use crate::{Error, Result, error::ErrorKind};
use std::{
    fmt,
    path::{Path, PathBuf},
    process::Stdio,
    sync::atomic::{AtomicU64, Ordering},
};
use tokio::process::Command;

/// Where Debian puts PostgreSQL's server binaries (`/usr/lib/postgresql/<version>/bin`).
const DEBIAN_PG_ROOT: &str = "/usr/lib/postgresql";

/// A running PostgreSQL cluster on 127.0.0.1, removed when dropped (also on panic).
///
/// Needs the server binaries from Debian's `postgresql` package (the README's test command
/// installs it). Run as root, it runs the server as the `postgres` OS user, as `initdb` refuses
/// root.
///
/// # Examples
/// ```no_run
/// # async fn run() -> azure_passwordless::Result<()> {
/// use azure_passwordless::emulator::PostgresServer;
///
/// let server = PostgresServer::start("restaurants").await?;
/// server.create_login_role("my-identity", "the-current-token").await?;
/// println!("postgres on port {}", server.port());
/// # Ok(()) }
/// ```
pub struct PostgresServer {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    database: String,
    certs: TestCertificates,
    run_as_postgres: bool,
}

impl fmt::Debug for PostgresServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresServer")
            .field("dir", &self.dir)
            .field("port", &self.port)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

fn emu(what: impl Into<String>) -> Error {
    Error::new(ErrorKind::Emulator, what.into())
}

/// The newest `bin` directory under Debian's PostgreSQL root that has `initdb`.
fn find_binaries() -> Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(DEBIAN_PG_ROOT)
        .map_err(|e| {
            emu(format!(
                "PostgreSQL server binaries not found under {DEBIAN_PG_ROOT}: install the Debian package \
                 'postgresql' (sh scripts/test.sh does)"
            ))
            .with_source(e)
        })?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        emu(format!(
            "no initdb under {DEBIAN_PG_ROOT}/*/bin: install the Debian package 'postgresql'"
        ))
    })
}

fn is_root() -> bool {
    // Reading our own uid needs no unsafe code: /proc/self/status has it.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn free_port() -> Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| emu("cannot find a free port").with_source(e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| emu("cannot find a free port").with_source(e))
}

/// The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802, RFC 7677).
///
/// Roles are given verifiers rather than passwords so that the token never appears in SQL text,
/// which tokio-postgres logs at debug level.
///
/// One PBKDF2 iteration instead of PostgreSQL's default 4096: PostgreSQL re-keys HMAC with the
/// whole password on every iteration, so a ~1 KB token would cost ~4 ms more per login than a
/// short password. Azure validates the token's signature instead; this keeps the emulator from
/// charging tokens a cost the real service does not have.
fn scram_verifier(password: &str) -> Result<String> {
    use base64::{Engine, engine::general_purpose::STANDARD};
    use openssl::{hash::MessageDigest, pkey::PKey, sign::Signer};
    const ITERATIONS: usize = 1;
    let hmac = |key: &[u8], data: &[u8]| -> Result<Vec<u8>> {
        let key = PKey::hmac(key).map_err(|e| emu("HMAC failed").with_source(e))?;
        let mut signer = Signer::new(MessageDigest::sha256(), &key).map_err(|e| emu("HMAC failed").with_source(e))?;
        signer.update(data).map_err(|e| emu("HMAC failed").with_source(e))?;
        signer.sign_to_vec().map_err(|e| emu("HMAC failed").with_source(e))
    };
    let salt: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
    let mut salted = [0u8; 32];
    openssl::pkcs5::pbkdf2_hmac(
        password.as_bytes(),
        &salt,
        ITERATIONS,
        MessageDigest::sha256(),
        &mut salted,
    )
    .map_err(|e| emu("PBKDF2 failed").with_source(e))?;
    let client_key = hmac(&salted, b"Client Key")?;
    let stored_key = openssl::sha::sha256(&client_key);
    let server_key = hmac(&salted, b"Server Key")?;
    Ok(format!(
        "SCRAM-SHA-256${ITERATIONS}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    ))
}

/// Quotes an SQL literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Quotes an SQL identifier.
fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

impl PostgresServer {
    /// Creates and starts a cluster with one database, `database`, on a free port.
    ///
    /// # Errors
    /// [`ErrorKind::Emulator`] when the binaries are missing or initdb/pg_ctl fail; the message
    /// carries their output.
    pub async fn start(database: &str) -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let bin = find_binaries()?;
        let dir = std::env::temp_dir().join(format!(
            "azure_passwordless_pg_{}_{}_{:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| emu(format!("cannot create {}", dir.display())).with_source(e))?;
        let server = Self {
            dir,
            bin,
            port: free_port()?,
            database: database.to_owned(),
            certs: TestCertificates::generate()?,
            run_as_postgres: is_root(),
        };
        server.init().await?;
        Ok(server)
    }

    async fn init(&self) -> Result<()> {
        let write = |name: &str, text: &str| {
            std::fs::write(self.dir.join(name), text).map_err(|e| emu(format!("cannot write {name}")).with_source(e))
        };
        write("server.crt", &self.certs.leaf_chain_pem())?;
        write("server.key", self.certs.leaf_key_pem())?;
        write("ca.crt", self.certs.ca_pem())?;
        set_mode(&self.dir.join("server.key"), 0o600)?;
        if self.run_as_postgres {
            self.run("chown", &["-R", "postgres:postgres", path_str(&self.dir)?], false)
                .await?;
        }
        let data = self.data_dir();
        self.run(
            "initdb",
            &[
                "-D",
                path_str(&data)?,
                "--no-sync",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--auth-local=trust",
                "--auth-host=reject",
            ],
            true,
        )
        .await?;
        let conf = format!(
            "\n# azure_passwordless emulator\nlisten_addresses = '127.0.0.1'\nport = {port}\n\
             unix_socket_directories = '{dir}'\nssl = on\nssl_cert_file = '{dir}/server.crt'\n\
             ssl_key_file = '{dir}/server.key'\nfsync = off\nsynchronous_commit = off\n\
             full_page_writes = off\nmax_connections = 200\n",
            port = self.port,
            dir = self.dir.display()
        );
        append(&data.join("postgresql.conf"), &conf)?;
        // Azure: TLS only, password sent in cleartext inside TLS (Entra tokens), plain TCP refused.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 password\n\
             hostnossl all all 127.0.0.1/32 reject\n\
             host all all ::1/128 reject\n",
        )
        .map_err(|e| emu("cannot write pg_hba.conf").with_source(e))?;
        self.pg_ctl(&["start"]).await?;
        let admin = self.admin().await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {}", ident(&self.database)))
            .await
            .map_err(|e| emu(format!("cannot create database {}", self.database)).with_source(e))?;
        Ok(())
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    async fn pg_ctl(&self, action: &[&str]) -> Result<()> {
        let data = self.data_dir();
        let log = self.dir.join("server.log");
        let mut args = vec![
            "-D",
            path_str(&data)?,
            "-l",
            path_str(&log)?,
            "-w",
            "-t",
            "60",
            "-m",
            "fast",
        ];
        args.extend_from_slice(action);
        self.run("pg_ctl", &args, true).await
    }

    /// Runs a server binary (or `chown`), as `postgres` when we are root.
    async fn run(&self, program: &str, args: &[&str], server_binary: bool) -> Result<()> {
        let exe = if server_binary {
            self.bin.join(program)
        } else {
            PathBuf::from(program)
        };
        let mut command = if self.run_as_postgres && server_binary {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let output = command
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| emu(format!("cannot run {}", exe.display())).with_source(e))?;
        if output.status.success() {
            Ok(())
        } else {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            Err(emu(format!(
                "{program} failed ({}): {}{}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
                log.lines()
                    .rev()
                    .take(20)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n")
            )))
        }
    }

    /// A superuser connection over the cluster's Unix socket (trusted, no TLS, no password).
    ///
    /// # Errors
    /// [`ErrorKind::Emulator`] when the server does not accept it.
    pub async fn admin(&self) -> Result<tokio_postgres::Client> {
        self.admin_to("postgres").await
    }

    async fn admin_to(&self, database: &str) -> Result<tokio_postgres::Client> {
        let (client, connection) = tokio_postgres::Config::new()
            .host_path(&self.dir)
            .port(self.port)
            .user("postgres")
            .dbname(database)
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| emu("cannot open the admin connection").with_source(e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Creates a login role whose password is `password` (for Entra: the current token) and
    /// lets it use the database.
    ///
    /// # Errors
    /// [`ErrorKind::Emulator`] when the SQL fails.
    pub async fn create_login_role(&self, role: &str, password: &str) -> Result<()> {
        let admin = self.admin().await?;
        admin
            .batch_execute(&format!(
                "CREATE ROLE {r} LOGIN PASSWORD {p}; GRANT ALL ON DATABASE {d} TO {r};",
                r = ident(role),
                p = literal(&scram_verifier(password)?),
                d = ident(&self.database)
            ))
            .await
            .map_err(|e| emu(format!("cannot create role {role}")).with_source(e))?;
        let db = self.admin_to(&self.database).await?;
        db.batch_execute(&format!("GRANT ALL ON SCHEMA public TO {}", ident(role)))
            .await
            .map_err(|e| emu(format!("cannot grant schema public to {role}")).with_source(e))?;
        Ok(())
    }

    /// Changes a role's password: open connections stay, new logins with the old one fail
    /// with SQLSTATE 28P01, exactly like an expired Entra token.
    ///
    /// # Errors
    /// [`ErrorKind::Emulator`] when the SQL fails.
    pub async fn set_password(&self, role: &str, password: &str) -> Result<()> {
        self.admin()
            .await?
            .batch_execute(&format!(
                "ALTER ROLE {} PASSWORD {}",
                ident(role),
                literal(&scram_verifier(password)?)
            ))
            .await
            .map_err(|e| emu(format!("cannot change the password of {role}")).with_source(e))
    }

    /// Restarts the server (fast shutdown: open connections are closed).
    ///
    /// # Errors
    /// [`ErrorKind::Emulator`] when pg_ctl fails.
    pub async fn restart(&self) -> Result<()> {
        self.pg_ctl(&["restart"]).await
    }

    /// The cluster's directory (data, socket, certificates, log); removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database created at start.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The CA that signed the server certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        self.certs.ca_pem()
    }

    /// A file holding [`ca_pem`](Self::ca_pem), for `PGSSLROOTCERT`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // Blocking on purpose: this must finish even while a panicking test unwinds.
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data_dir();
        let mut command = if self.run_as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&pg_ctl);
            c
        } else {
            std::process::Command::new(&pg_ctl)
        };
        let _ = command
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| emu(format!("path {} is not UTF-8", path.display())))
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| emu(format!("cannot write {}", path.display())).with_source(e))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| emu(format!("cannot chmod {}", path.display())).with_source(e))
}
