//! Certificates for the TLS rows (and the TLS integration tests): a throwaway CA, a broker
//! keystore for 127.0.0.1 and localhost, and a client certificate `CN=client,O=ferry`, written as
//! PEM files; made with rcgen, so nothing outside the process is needed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// The PEM files of a throwaway PKI.
pub struct Pki {
    /// The CA certificate (`ssl.truststore.location`, and the clients' `ssl.ca.location`).
    pub ca: PathBuf,
    /// The broker's key, certificate and the CA, in one file (`ssl.keystore.location`).
    pub keystore: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    /// Makes the certificates and writes them into `dir`.
    pub fn generate(dir: &Path) -> Result<Pki> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name = DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ferry throwaway CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let server_key = KeyPair::generate()?;
        let mut server_params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
        server_params.distinguished_name = DistinguishedName::new();
        server_params
            .distinguished_name
            .push(DnType::CommonName, "ferry broker");
        let server = server_params.signed_by(&server_key, &ca)?;

        let client_key = KeyPair::generate()?;
        let mut client_params = CertificateParams::new(Vec::<String>::new())?;
        // In ASN.1 order, O first; printed last RDN first: CN=client,O=ferry.
        client_params.distinguished_name = DistinguishedName::new();
        client_params
            .distinguished_name
            .push(DnType::OrganizationName, "ferry");
        client_params
            .distinguished_name
            .push(DnType::CommonName, "client");
        let client = client_params.signed_by(&client_key, &ca)?;

        let pki = Pki {
            ca: dir.join("ca.pem"),
            keystore: dir.join("broker.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        };
        let keystore = format!("{}{}{}", server_key.serialize_pem(), server.pem(), ca.pem());
        for (path, text) in [
            (&pki.ca, ca.pem()),
            (&pki.keystore, keystore),
            (&pki.client_cert, client.pem()),
            (&pki.client_key, client_key.serialize_pem()),
        ] {
            std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
        }
        Ok(pki)
    }

    /// librdkafka's settings for SSL with this CA, and with the client certificate if asked.
    pub fn client_settings(&self, with_certificate: bool) -> Vec<(&'static str, String)> {
        let mut settings = vec![
            ("security.protocol", "SSL".to_string()),
            ("ssl.ca.location", self.ca.display().to_string()),
        ];
        if with_certificate {
            settings.push((
                "ssl.certificate.location",
                self.client_cert.display().to_string(),
            ));
            settings.push(("ssl.key.location", self.client_key.display().to_string()));
        }
        settings
    }
}
