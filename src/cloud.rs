//! Azure clouds: authority hosts, token scopes and host suffixes.

use crate::{Env, Error, Result};

/// An Azure cloud.
///
/// Values from Microsoft's documentation:
/// <https://learn.microsoft.com/entra/identity-platform/authentication-national-cloud>,
/// <https://learn.microsoft.com/azure/postgresql/flexible-server/how-to-configure-sign-in-azure-ad-authentication>.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Cloud {
    /// Azure public cloud.
    #[default]
    Public,
    /// Azure operated by 21Vianet (China).
    China,
    /// Azure US Government.
    UsGovernment,
}

impl Cloud {
    /// Environment variable naming the cloud: `public`, `china` or `usgov`.
    pub const ENV_VAR: &'static str = "AZURE_CLOUD";

    /// The Microsoft Entra authority host, for example `https://login.microsoftonline.com`.
    pub fn authority_host(self) -> &'static str {
        match self {
            Cloud::Public => "https://login.microsoftonline.com",
            Cloud::China => "https://login.chinacloudapi.cn",
            Cloud::UsGovernment => "https://login.microsoftonline.us",
        }
    }

    /// The token scope for Azure Database for PostgreSQL.
    pub fn postgres_scope(self) -> &'static str {
        match self {
            Cloud::Public => "https://ossrdbms-aad.database.windows.net/.default",
            Cloud::China => "https://ossrdbms-aad.database.chinacloudapi.cn/.default",
            Cloud::UsGovernment => "https://ossrdbms-aad.database.usgovcloudapi.net/.default",
        }
    }

    /// The host suffix of Azure Database for PostgreSQL flexible servers.
    pub fn postgres_host_suffix(self) -> &'static str {
        match self {
            Cloud::Public => "postgres.database.azure.com",
            Cloud::China => "postgres.database.chinacloudapi.cn",
            Cloud::UsGovernment => "postgres.database.usgovcloudapi.net",
        }
    }

    /// The token scope for Azure Storage (the same in every cloud).
    pub fn storage_scope(self) -> &'static str {
        "https://storage.azure.com/.default"
    }

    /// The host suffix of Blob Storage endpoints.
    pub fn blob_host_suffix(self) -> &'static str {
        match self {
            Cloud::Public => "blob.core.windows.net",
            Cloud::China => "blob.core.chinacloudapi.cn",
            Cloud::UsGovernment => "blob.core.usgovcloudapi.net",
        }
    }

    /// Reads [`Cloud::ENV_VAR`]; unset means [`Cloud::Public`].
    ///
    /// # Errors
    /// A value other than `public`, `china`, `usgov` (case-insensitive; `AzureCloud`,
    /// `AzureChinaCloud`, `AzureUSGovernment` as printed by `az cloud show` are accepted too).
    pub fn from_env(env: &Env) -> Result<Self> {
        match env.get(Self::ENV_VAR) {
            None => Ok(Cloud::Public),
            Some(value) => value.parse(),
        }
    }
}

impl std::str::FromStr for Cloud {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "public" | "azurecloud" => Ok(Cloud::Public),
            "china" | "azurechinacloud" => Ok(Cloud::China),
            "usgov" | "usgovernment" | "azureusgovernment" => Ok(Cloud::UsGovernment),
            _ => Err(Error::config(format!(
                "{} has unknown cloud '{s}'; expected one of: public, china, usgov",
                Cloud::ENV_VAR
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_cloud_is_a_config_error_listing_valid_values() {
        let err = Cloud::from_env(&Env::from_slice(&[("AZURE_CLOUD", "mars")])).unwrap_err();
        assert!(err.is_config());
        assert!(err.to_string().contains("public, china, usgov"), "{err}");
    }

    #[test]
    fn cloud_names_are_case_insensitive() {
        assert_eq!("AzureChinaCloud".parse::<Cloud>().unwrap(), Cloud::China);
        assert_eq!(Cloud::from_env(&Env::from_slice(&[])).unwrap(), Cloud::Public);
    }
}
