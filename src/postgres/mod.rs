//! A deadpool-postgres pool that logs in with Microsoft Entra tokens (feature `postgres`).

mod claims;
mod pool;
mod settings;

pub use pool::{
    AzurePgPool, AzurePgPoolBuilder, DEFAULT_CREATE_TIMEOUT, DEFAULT_MAX_LIFETIME, DEFAULT_MAX_SIZE,
    DEFAULT_RECYCLE_TIMEOUT, DEFAULT_WAIT_TIMEOUT, PoolStatus,
};
pub use settings::{DEFAULT_PORT, PgSettings, SslMode};
