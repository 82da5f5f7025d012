//! Connection settings for Azure Database for PostgreSQL, from the environment or a builder.

use crate::{Cloud, Env, Error, Result};
use azure_core::credentials::Secret;
use std::{fmt, path::PathBuf};

/// Default PostgreSQL port. Defaults to 5432.
pub const DEFAULT_PORT: u16 = 5432;

/// How TLS is used, with libpq's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// Plain TCP. Only for local servers; refused for Azure hosts.
    Disable,
    /// TLS, without checking the certificate (libpq's `require`).
    Require,
    /// TLS, certificate checked against the roots, host name not checked.
    VerifyCa,
    /// TLS, certificate and host name checked. The default.
    #[default]
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str, var: &str) -> Result<Self> {
        match value.to_ascii_lowercase().as_str() {
            "disable" => Ok(SslMode::Disable),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            _ => Err(Error::config(format!(
                "{var} has unknown sslmode '{value}'; expected one of: disable, require, verify-ca, verify-full"
            ))),
        }
    }
}

/// Where and how to connect: host, port, database, user, TLS, and (for local development only)
/// a static password.
///
/// Built by [`PgSettings::from_env`] or [`PgSettings::new`] plus setters.
#[derive(Clone)]
#[must_use]
pub struct PgSettings {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) dbname: String,
    pub(crate) user: Option<String>,
    pub(crate) ssl_mode: SslMode,
    pub(crate) root_cert: Option<RootCert>,
    pub(crate) password: Option<Secret>,
    pub(crate) cloud: Cloud,
    pub(crate) application_name: Option<String>,
    pub(crate) user_assigned_client_id: Option<String>,
}

#[derive(Clone)]
pub(crate) enum RootCert {
    File { path: PathBuf, var: Option<&'static str> },
    Pem(Vec<u8>),
}

impl fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field("ssl_mode", &self.ssl_mode)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("cloud", &self.cloud)
            .finish_non_exhaustive()
    }
}

/// The first set variable of `names`, with its name.
fn first(env: &Env, names: &[&'static str]) -> Option<(&'static str, String)> {
    names.iter().find_map(|n| env.get(n).map(|v| (*n, v)))
}

impl PgSettings {
    /// Settings for `host` and database `dbname`, with the defaults: port 5432, `verify-full`
    /// TLS against the system roots, the user derived from the token, public cloud.
    pub fn new(host: impl Into<String>, dbname: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            port: DEFAULT_PORT,
            dbname: dbname.into(),
            user: None,
            ssl_mode: SslMode::default(),
            root_cert: None,
            password: None,
            cloud: Cloud::Public,
            application_name: None,
            user_assigned_client_id: None,
        }
    }

    /// Reads the settings from the environment.
    ///
    /// | Setting | Variables, first set wins |
    /// |---|---|
    /// | host | `DBHOST`, `AZURE_POSTGRESQL_HOST`, `PGHOST` (a bare server name becomes `<name>.postgres.database.azure.com`, or the configured cloud's suffix) |
    /// | port | `DBPORT`, `AZURE_POSTGRESQL_PORT`, `PGPORT` (default 5432) |
    /// | database | `DBNAME`, `AZURE_POSTGRESQL_DATABASE`, `PGDATABASE` (required) |
    /// | user | `DBUSER`, `AZURE_POSTGRESQL_USER`, `PGUSER` (default: derived from the token) |
    /// | TLS | `PGSSLMODE` (`disable`, `require`, `verify-ca`, `verify-full`; default `verify-full`), `AZURE_POSTGRESQL_SSL` (`true`/`false`), `PGSSLROOTCERT` (CA file) |
    /// | static password (local development only) | `DBPASS`, `PGPASSWORD` |
    /// | user-assigned identity | `AZURE_POSTGRESQL_CLIENTID` |
    /// | cloud | `AZURE_CLOUD` |
    ///
    /// # Errors
    /// A missing host or database, a port that is not a number in 1–65535, an unknown sslmode,
    /// or plaintext to an Azure host; each message names the variable.
    pub fn from_env(env: &Env) -> Result<Self> {
        let cloud = Cloud::from_env(env)?;
        let (host_var, host) = first(env, &["DBHOST", "AZURE_POSTGRESQL_HOST", "PGHOST"])
            .ok_or_else(|| Error::config("missing PostgreSQL host: set DBHOST (or AZURE_POSTGRESQL_HOST or PGHOST)"))?;
        let (_, dbname) = first(env, &["DBNAME", "AZURE_POSTGRESQL_DATABASE", "PGDATABASE"]).ok_or_else(|| {
            Error::config("missing PostgreSQL database name: set DBNAME (or AZURE_POSTGRESQL_DATABASE or PGDATABASE)")
        })?;
        let mut settings = Self::new(expand_host(&host, cloud, host_var)?, dbname).cloud(cloud);
        if let Some((var, port)) = first(env, &["DBPORT", "AZURE_POSTGRESQL_PORT", "PGPORT"]) {
            settings.port = match port.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => {
                    return Err(Error::config(format!(
                        "{var} must be a port number between 1 and 65535, got '{port}'"
                    )));
                }
            };
        }
        if let Some((_, user)) = first(env, &["DBUSER", "AZURE_POSTGRESQL_USER", "PGUSER"]) {
            settings.user = Some(user);
        }
        if let Some(mode) = env.get("PGSSLMODE") {
            settings.ssl_mode = SslMode::parse(&mode, "PGSSLMODE")?;
        } else if let Some(ssl) = env.get("AZURE_POSTGRESQL_SSL") {
            settings.ssl_mode = match ssl.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => SslMode::VerifyFull,
                "false" | "0" | "no" => SslMode::Disable,
                _ => {
                    return Err(Error::config(format!(
                        "AZURE_POSTGRESQL_SSL must be 'true' or 'false', got '{ssl}'"
                    )));
                }
            };
        }
        if let Some(path) = env.get("PGSSLROOTCERT") {
            settings.root_cert = Some(RootCert::File {
                path: path.into(),
                var: Some("PGSSLROOTCERT"),
            });
        }
        if let Some((_, password)) = first(env, &["DBPASS", "PGPASSWORD"]) {
            settings.password = Some(Secret::new(password));
        }
        settings.user_assigned_client_id = env.get("AZURE_POSTGRESQL_CLIENTID");
        settings.validate()?;
        Ok(settings)
    }

    /// The port. Defaults to [`DEFAULT_PORT`].
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The database user. Defaults to the name in the token: a managed identity's name (from
    /// `xms_mirid`) or a person's `upn`/`preferred_username`.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// TLS mode. Defaults to [`SslMode::VerifyFull`].
    pub fn ssl_mode(mut self, mode: SslMode) -> Self {
        self.ssl_mode = mode;
        self
    }

    /// Trust this CA file (PEM) instead of the system roots.
    pub fn root_cert_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.root_cert = Some(RootCert::File {
            path: path.into(),
            var: None,
        });
        self
    }

    /// Trust this CA (PEM bytes) instead of the system roots.
    pub fn root_cert_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_cert = Some(RootCert::Pem(pem.into()));
        self
    }

    /// A static password instead of tokens: for local development against a server that has
    /// no Entra authentication. Defaults to none (tokens).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(Secret::new(password.into()));
        self
    }

    /// The cloud: token scope and host suffix. Defaults to [`Cloud::Public`].
    pub fn cloud(mut self, cloud: Cloud) -> Self {
        self.cloud = cloud;
        self
    }

    /// `application_name` reported to the server. Defaults to none.
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// The host, as it will be connected to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The database name.
    pub fn dbname(&self) -> &str {
        &self.dbname
    }

    /// `true` when this host is an Azure Database for PostgreSQL server in any cloud.
    pub fn is_azure_host(&self) -> bool {
        is_azure_host(&self.host)
    }

    /// Checks the settings hang together.
    ///
    /// # Errors
    /// An empty host or database, port 0, plaintext to an Azure host, or a static password
    /// without a user.
    pub fn validate(&self) -> Result<()> {
        if self.host.trim().is_empty() {
            return Err(Error::config("PostgreSQL host is empty"));
        }
        if self.dbname.trim().is_empty() {
            return Err(Error::config("PostgreSQL database name is empty"));
        }
        if self.port == 0 {
            return Err(Error::config("PostgreSQL port must be between 1 and 65535, got 0"));
        }
        if self.ssl_mode == SslMode::Disable && self.is_azure_host() {
            return Err(Error::config(format!(
                "sslmode 'disable' (PGSSLMODE/AZURE_POSTGRESQL_SSL) would send the token in plaintext to the Azure host {}; \
                 Azure Database for PostgreSQL requires TLS: use verify-full",
                self.host
            )));
        }
        if self.password.is_some() && self.user.is_none() {
            return Err(Error::config(
                "a static password (DBPASS/PGPASSWORD) needs a user: set DBUSER (or PGUSER)",
            ));
        }
        Ok(())
    }
}

fn is_azure_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    [Cloud::Public, Cloud::China, Cloud::UsGovernment]
        .iter()
        .any(|c| host.ends_with(&format!(".{}", c.postgres_host_suffix())))
}

/// A bare server name (as the seed's `DBHOST` holds) becomes the cloud's FQDN; a FQDN, an IP
/// address, `localhost` or a socket path is kept.
fn expand_host(host: &str, cloud: Cloud, var: &str) -> Result<String> {
    let host = host.trim();
    if host.contains(char::is_whitespace) || host.contains('/') && !host.starts_with('/') {
        return Err(Error::config(format!("{var} must be a host name, got '{host}'")));
    }
    let bare =
        !host.contains('.') && !host.contains(':') && !host.starts_with('/') && !host.eq_ignore_ascii_case("localhost");
    Ok(if bare {
        format!("{host}.{}", cloud.postgres_host_suffix())
    } else {
        host.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_slice(pairs)
    }

    #[test]
    fn bare_server_name_becomes_azure_fqdn_per_cloud() {
        let s = PgSettings::from_env(&env(&[("DBHOST", "myserver"), ("DBNAME", "db")])).unwrap();
        assert_eq!(s.host(), "myserver.postgres.database.azure.com");
        let s = PgSettings::from_env(&env(&[
            ("DBHOST", "myserver"),
            ("DBNAME", "db"),
            ("AZURE_CLOUD", "china"),
        ]))
        .unwrap();
        assert_eq!(s.host(), "myserver.postgres.database.chinacloudapi.cn");
        let s = PgSettings::from_env(&env(&[("DBHOST", "localhost"), ("DBNAME", "db")])).unwrap();
        assert_eq!(s.host(), "localhost");
        let s = PgSettings::from_env(&env(&[("DBHOST", "db.example.com"), ("DBNAME", "db")])).unwrap();
        assert_eq!(s.host(), "db.example.com");
    }

    #[test]
    fn precedence_is_seed_then_service_connector_then_libpq() {
        let s = PgSettings::from_env(&env(&[
            ("AZURE_POSTGRESQL_HOST", "sc.postgres.database.azure.com"),
            ("PGHOST", "pg.example.com"),
            ("PGDATABASE", "pgdb"),
            ("AZURE_POSTGRESQL_DATABASE", "scdb"),
            ("PGPORT", "6543"),
        ]))
        .unwrap();
        assert_eq!(
            (s.host(), s.dbname(), s.port),
            ("sc.postgres.database.azure.com", "scdb", 6543)
        );
    }

    #[test]
    fn errors_name_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("DBHOST", "h.example.com")], "DBNAME"),
            (&[("DBNAME", "d")], "DBHOST"),
            (
                &[("DBHOST", "h.example.com"), ("DBNAME", "d"), ("DBPORT", "abc")],
                "DBPORT must be a port number",
            ),
            (
                &[("DBHOST", "h.example.com"), ("DBNAME", "d"), ("PGPORT", "70000")],
                "PGPORT",
            ),
            (
                &[("DBHOST", "h.example.com"), ("DBNAME", "d"), ("PGSSLMODE", "sometimes")],
                "PGSSLMODE has unknown sslmode 'sometimes'",
            ),
            (
                &[("DBHOST", "srv"), ("DBNAME", "d"), ("PGSSLMODE", "disable")],
                "plaintext to the Azure host srv.postgres.database.azure.com",
            ),
            (
                &[("DBHOST", "h.example.com"), ("DBNAME", "d"), ("DBPASS", "pw")],
                "set DBUSER",
            ),
            (
                &[
                    ("DBHOST", "h.example.com"),
                    ("DBNAME", "d"),
                    ("AZURE_POSTGRESQL_SSL", "maybe"),
                ],
                "AZURE_POSTGRESQL_SSL",
            ),
        ];
        for (pairs, expected) in cases {
            let err = PgSettings::from_env(&env(pairs)).unwrap_err();
            assert!(err.is_config());
            assert!(err.to_string().contains(expected), "{expected:?} not in {err}");
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let s = PgSettings::new("localhost", "db").user("u").password("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
