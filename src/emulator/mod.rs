//! A local emulated Azure stack for tests, benchmarks and the example (feature `emulator`).
//!
//! - [`IdentityEndpoint`]: App Service's managed identity endpoint, issuing JWT-shaped tokens.
//! - [`PostgresServer`] (with feature `postgres`): a throwaway TLS PostgreSQL cluster that takes
//!   tokens as passwords, like Azure Database for PostgreSQL with Entra authentication.
//! - [`Azurite`]: Microsoft's Blob Storage emulator over HTTPS, accepting the endpoint's tokens.
//! - [`TestCertificates`]: a CA and a `localhost` leaf for the TLS servers.

mod azurite;
mod identity;
#[cfg(feature = "postgres")]
mod postgres;
mod tls;

pub use azurite::{AZURITE_ACCOUNT, AZURITE_VERSION, Azurite};
pub use identity::{
    DEFAULT_TOKEN_LIFETIME, EMULATOR_TENANT_ID, EndpointCredential, IdentityEndpoint, IdentityEndpointBuilder,
};
#[cfg(feature = "postgres")]
pub use postgres::PostgresServer;
pub use tls::TestCertificates;
