//! A local emulated Azure stack for tests, benchmarks and the example (feature `emulator`).
//!
//! - [`IdentityEndpoint`]: App Service's managed identity endpoint, issuing JWT-shaped tokens.

mod identity;

pub use identity::{
    DEFAULT_TOKEN_LIFETIME, EMULATOR_TENANT_ID, EndpointCredential, IdentityEndpoint, IdentityEndpointBuilder,
};
