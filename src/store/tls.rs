//! TLS to Cassandra, with rustls: the CA that signed the nodes'
//! certificates, and optionally a client certificate (mutual TLS).
//!
//! The driver checks each node's certificate against the node's IP address
//! (it connects by the addresses the cluster reports), so node certificates
//! need IP subject alternative names.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "cannot read the CA certificates in {path}: {reason}; give a PEM file with the CA \
         that signed the nodes' certificates (--cql-tls-ca)"
    )]
    Ca { path: PathBuf, reason: String },
    #[error("{path} holds no certificate; it must be PEM (-----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: PathBuf },
    #[error("cannot read the client certificate or key ({path}): {reason}")]
    ClientIdentity { path: PathBuf, reason: String },
    #[error("the TLS settings are refused: {0}")]
    Config(#[from] rustls::Error),
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<_, _>>())
        .map_err(|error| TlsError::Ca {
            path: path.to_owned(),
            reason: error.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certificates)
}

/// A client configuration that trusts the CAs in `ca` and, when given,
/// presents `client` (certificate chain, private key) to the nodes.
pub fn client_config(
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates(ca)? {
        roots.add(certificate).map_err(|error| TlsError::Ca {
            path: ca.to_owned(),
            reason: error.to_string(),
        })?;
    }
    // An explicit provider: several crates in a build may enable different
    // rustls backends, and then no process-wide default exists.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => {
            let chain = certificates(chain).map_err(|error| TlsError::ClientIdentity {
                path: chain.to_owned(),
                reason: error.to_string(),
            })?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|error| TlsError::ClientIdentity {
                    path: key.to_owned(),
                    reason: error.to_string(),
                })?;
            builder.with_client_auth_cert(chain, key)?
        }
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_ca_files_say_what_to_give() {
        let missing = client_config(Path::new("/nonexistent/ca.pem"), None).unwrap_err();
        assert!(missing.to_string().contains("--cql-tls-ca"), "{missing}");
        let empty = std::env::temp_dir().join(format!("dedupd-empty-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = client_config(&empty, None).unwrap_err();
        assert!(matches!(error, TlsError::NoCertificate { .. }), "{error}");
        std::fs::remove_file(empty).unwrap();
    }
}
