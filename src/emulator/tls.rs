//! A throwaway certificate authority and a leaf for `localhost`/`127.0.0.1`.
//!
//! A CA plus a CA-signed leaf (`CA:FALSE`, `serverAuth`, SAN `DNS:localhost, IP:127.0.0.1`)
//! is what strict clients accept; a single self-signed `CA:TRUE` certificate is rejected as an
//! end entity by some TLS stacks.

use crate::{Error, Result, error::ErrorKind};
use openssl::{
    asn1::Asn1Time,
    bn::{BigNum, MsbOption},
    ec::{EcGroup, EcKey},
    hash::MessageDigest,
    nid::Nid,
    pkey::{PKey, Private},
    x509::{
        X509, X509NameBuilder,
        extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName},
    },
};
use std::fmt;

/// A certificate authority and one server certificate it signed, all PEM-encoded.
#[derive(Clone)]
pub struct TestCertificates {
    ca_pem: String,
    leaf_pem: String,
    leaf_key_pem: String,
}

impl fmt::Debug for TestCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCertificates").finish_non_exhaustive()
    }
}

fn tls_err(e: openssl::error::ErrorStack) -> Error {
    Error::new(ErrorKind::Emulator, "could not generate test certificates").with_source(e)
}

fn key() -> Result<PKey<Private>> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(tls_err)?;
    PKey::from_ec_key(EcKey::generate(&group).map_err(tls_err)?).map_err(tls_err)
}

fn serial() -> Result<openssl::asn1::Asn1Integer> {
    let mut bn = BigNum::new().map_err(tls_err)?;
    bn.rand(120, MsbOption::MAYBE_ZERO, false).map_err(tls_err)?;
    bn.to_asn1_integer().map_err(tls_err)
}

fn validity() -> Result<(Asn1Time, Asn1Time)> {
    Ok((
        Asn1Time::days_from_now(0).map_err(tls_err)?,
        Asn1Time::days_from_now(30).map_err(tls_err)?,
    ))
}

impl TestCertificates {
    /// Generates a fresh CA and a leaf for `localhost` and `127.0.0.1`, valid for 30 days.
    ///
    /// # Errors
    /// [`ErrorKind::Emulator`] if OpenSSL fails.
    pub fn generate() -> Result<Self> {
        let ca_key = key()?;
        let mut name = X509NameBuilder::new().map_err(tls_err)?;
        name.append_entry_by_text("CN", "azure_passwordless test CA")
            .map_err(tls_err)?;
        let ca_name = name.build();
        let mut ca = X509::builder().map_err(tls_err)?;
        ca.set_version(2).map_err(tls_err)?;
        let serial_number = serial()?;
        ca.set_serial_number(&serial_number).map_err(tls_err)?;
        ca.set_subject_name(&ca_name).map_err(tls_err)?;
        ca.set_issuer_name(&ca_name).map_err(tls_err)?;
        ca.set_pubkey(&ca_key).map_err(tls_err)?;
        let (not_before, not_after) = validity()?;
        ca.set_not_before(&not_before).map_err(tls_err)?;
        ca.set_not_after(&not_after).map_err(tls_err)?;
        ca.append_extension(BasicConstraints::new().critical().ca().build().map_err(tls_err)?)
            .map_err(tls_err)?;
        ca.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .map_err(tls_err)?,
        )
        .map_err(tls_err)?;
        ca.sign(&ca_key, MessageDigest::sha256()).map_err(tls_err)?;
        let ca = ca.build();

        let leaf_key = key()?;
        let mut name = X509NameBuilder::new().map_err(tls_err)?;
        name.append_entry_by_text("CN", "localhost").map_err(tls_err)?;
        let leaf_name = name.build();
        let mut leaf = X509::builder().map_err(tls_err)?;
        leaf.set_version(2).map_err(tls_err)?;
        let serial_number = serial()?;
        leaf.set_serial_number(&serial_number).map_err(tls_err)?;
        leaf.set_subject_name(&leaf_name).map_err(tls_err)?;
        leaf.set_issuer_name(ca.subject_name()).map_err(tls_err)?;
        leaf.set_pubkey(&leaf_key).map_err(tls_err)?;
        let (not_before, not_after) = validity()?;
        leaf.set_not_before(&not_before).map_err(tls_err)?;
        leaf.set_not_after(&not_after).map_err(tls_err)?;
        leaf.append_extension(BasicConstraints::new().build().map_err(tls_err)?)
            .map_err(tls_err)?;
        leaf.append_extension(
            KeyUsage::new()
                .critical()
                .digital_signature()
                .key_agreement()
                .build()
                .map_err(tls_err)?,
        )
        .map_err(tls_err)?;
        leaf.append_extension(ExtendedKeyUsage::new().server_auth().build().map_err(tls_err)?)
            .map_err(tls_err)?;
        let san = SubjectAlternativeName::new()
            .dns("localhost")
            .ip("127.0.0.1")
            .build(&leaf.x509v3_context(Some(&ca), None))
            .map_err(tls_err)?;
        leaf.append_extension(san).map_err(tls_err)?;
        leaf.sign(&ca_key, MessageDigest::sha256()).map_err(tls_err)?;
        let leaf = leaf.build();

        let pem = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap_or_default();
        Ok(Self {
            ca_pem: pem(ca.to_pem().map_err(tls_err)?),
            leaf_pem: pem(leaf.to_pem().map_err(tls_err)?),
            leaf_key_pem: pem(leaf_key.private_key_to_pem_pkcs8().map_err(tls_err)?),
        })
    }

    /// The CA certificate, to trust in clients.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The server certificate.
    pub fn leaf_pem(&self) -> &str {
        &self.leaf_pem
    }

    /// The server certificate followed by the CA: the chain a server presents.
    pub fn leaf_chain_pem(&self) -> String {
        format!("{}{}", self.leaf_pem, self.ca_pem)
    }

    /// The server's private key (PKCS#8).
    pub fn leaf_key_pem(&self) -> &str {
        &self.leaf_key_pem
    }
}
