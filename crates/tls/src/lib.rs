//! TLS for Writ: a development CA and server certificate generated with rcgen into the data
//! directory on first start (so TLS is on by default with nothing to install), and rustls
//! configurations (ring provider) for servers and clients that trust that CA.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, date_time_ymd,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("could not read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("invalid PEM in {0}")]
    Pem(String),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A server's certificate chain and key, and the CA that clients should trust, all PEM.
#[derive(Clone)]
pub struct TlsMaterial {
    pub cert_pem: String,
    pub key_pem: String,
    /// The CA that issued `cert_pem`, when Writ generated it.
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial").finish_non_exhaustive()
    }
}

/// File names inside the data directory.
pub const CA_CERT_FILE: &str = "ca.pem";
const CA_KEY_FILE: &str = "ca-key.pem";
pub const SERVER_CERT_FILE: &str = "server.pem";
pub const SERVER_KEY_FILE: &str = "server-key.pem";
const SERVER_HOSTS_FILE: &str = "server-hosts";

/// The names every development certificate covers.
pub const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Loads the development CA and server certificate from `dir`, generating whatever is missing.
/// The server certificate covers the loopback names plus `extra_hosts`; it is reissued when that
/// list changes. Private keys are written with mode 0600.
pub fn ensure_dev_pki(dir: &Path, extra_hosts: &[String]) -> Result<TlsMaterial, TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| io(dir, source))?;
    let year = current_year();

    let (ca_key, ca_pem) = match (read(dir, CA_KEY_FILE)?, read(dir, CA_CERT_FILE)?) {
        (Some(key), Some(cert)) => (
            KeyPair::from_pem(&key).map_err(|_| TlsError::Pem(CA_KEY_FILE.into()))?,
            cert,
        ),
        _ => {
            let key = KeyPair::generate()?;
            let mut params = ca_params();
            params.not_before = date_time_ymd(year - 1, 1, 1);
            params.not_after = date_time_ymd(year + 10, 1, 1);
            let cert = params.self_signed(&key)?;
            write(dir, CA_KEY_FILE, &key.serialize_pem(), true)?;
            write(dir, CA_CERT_FILE, &cert.pem(), false)?;
            // A new CA invalidates any old server certificate.
            let _ = std::fs::remove_file(dir.join(SERVER_CERT_FILE));
            tracing::info!(path = %dir.join(CA_CERT_FILE).display(), "generated a development CA");
            (key, cert.pem())
        }
    };

    let mut hosts: Vec<String> = LOOPBACK_NAMES.iter().map(|s| (*s).to_owned()).collect();
    hosts.extend(extra_hosts.iter().cloned());
    hosts.sort();
    hosts.dedup();
    let wanted = hosts.join("\n");
    let existing = (
        read(dir, SERVER_CERT_FILE)?,
        read(dir, SERVER_KEY_FILE)?,
        read(dir, SERVER_HOSTS_FILE)?,
    );
    if let (Some(cert_pem), Some(key_pem), Some(h)) = existing
        && h == wanted
    {
        return Ok(TlsMaterial {
            cert_pem,
            key_pem,
            ca_pem: Some(ca_pem),
        });
    }

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(hosts)?;
    params.distinguished_name = dn("Writ development server");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = date_time_ymd(year - 1, 1, 1);
    params.not_after = date_time_ymd(year + 2, 1, 1);
    let cert = params.signed_by(&key, &Issuer::new(ca_params(), &ca_key))?;
    write(dir, SERVER_KEY_FILE, &key.serialize_pem(), true)?;
    write(dir, SERVER_CERT_FILE, &cert.pem(), false)?;
    write(dir, SERVER_HOSTS_FILE, &wanted, false)?;
    Ok(TlsMaterial {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        ca_pem: Some(ca_pem),
    })
}

/// Reads a certificate chain and key from PEM files (production certificates).
pub fn load_pem_files(cert: &Path, key: &Path) -> Result<TlsMaterial, TlsError> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|source| io(p, source));
    Ok(TlsMaterial {
        cert_pem: read(cert)?,
        key_pem: read(key)?,
        ca_pem: None,
    })
}

/// The CA's identity. Rebuilt identically each time, so a stored CA key can sign again.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn("Writ development CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "Writ");
    dn
}

fn current_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    1970 + (secs / 31_556_952) as i32
}

fn io(path: &Path, source: std::io::Error) -> TlsError {
    TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read(dir: &Path, name: &str) -> Result<Option<String>, TlsError> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(io(&path, source)),
    }
}

/// Writes a file atomically (temp file, then rename); secrets get mode 0600 from the start.
pub fn write(dir: &Path, name: &str, contents: &str, secret: bool) -> Result<(), TlsError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut f = options.open(&tmp).map_err(|source| io(&tmp, source))?;
    f.write_all(contents.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|source| io(&tmp, source))?;
    std::fs::rename(&tmp, &path).map_err(|source| io(&path, source))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls server configuration for `material`, offering the given ALPN protocols.
pub fn server_config(
    material: &TlsMaterial,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    server_config_with(material, alpn, false)
}

/// [`server_config`] that also asks clients for a certificate, without requiring one: for the
/// endpoints where clients may authenticate, or bind their tokens, with TLS client certificates
/// (RFC 8705). Any certificate whose private key the client proves it holds (the handshake's
/// signature) is taken; what it is good for is decided by the authorization server against the
/// client's registration, not here.
pub fn server_config_asking_client_certificates(
    material: &TlsMaterial,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    server_config_with(material, alpn, true)
}

fn server_config_with(
    material: &TlsMaterial,
    alpn: &[&[u8]],
    client_certificates: bool,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(material.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::Pem("certificate".into()))?;
    let key = PrivateKeyDer::from_pem_slice(material.key_pem.as_bytes())
        .map_err(|_| TlsError::Pem("private key".into()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = if client_certificates {
        builder.with_client_cert_verifier(Arc::new(AnyClientCertificate(provider())))
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Asks for a client certificate, requires none, takes any the client signs the handshake
/// with (rustls checks that signature with the certificate's key through these methods).
#[derive(Debug)]
struct AnyClientCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::server::danger::ClientCertVerifier for AnyClientCertificate {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The certificates (DER) in `pem`, in order.
pub fn certificates_der(pem: &str) -> Result<Vec<Vec<u8>>, TlsError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.map(|c| c.as_ref().to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::Pem("certificate".into()))
}

/// [`client_config`] that presents the certificate chain `cert_pem` with the key `key_pem`
/// (TLS client authentication).
pub fn client_config_with_identity(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::Pem("client certificate".into()))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| TlsError::Pem("client key".into()))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_pem)?)
        .with_client_auth_cert(certs, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The CA certificates in `ca_pem`, as trust anchors.
fn roots(ca_pem: &str) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|_| TlsError::Pem("CA certificate".into()))?)
            .map_err(TlsError::Config)?;
    }
    Ok(roots)
}

/// A rustls client configuration trusting exactly the CA in `ca_pem`.
pub fn client_config(ca_pem: &str, alpn: &[&[u8]]) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let roots = roots(ca_pem)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_reuses_and_keeps_keys_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure_dev_pki(dir.path(), &[]).unwrap();
        let again = ensure_dev_pki(dir.path(), &[]).unwrap();
        assert_eq!(first.cert_pem, again.cert_pem);
        assert_eq!(first.ca_pem, again.ca_pem);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in [CA_KEY_FILE, SERVER_KEY_FILE] {
                let mode = std::fs::metadata(dir.path().join(f))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{f}");
            }
        }
    }

    #[test]
    fn new_hosts_reissue_the_server_certificate_under_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure_dev_pki(dir.path(), &[]).unwrap();
        let second = ensure_dev_pki(dir.path(), &["writ.internal".into()]).unwrap();
        assert_ne!(first.cert_pem, second.cert_pem);
        assert_eq!(first.ca_pem, second.ca_pem);
        server_config(&second, &[b"h2"]).unwrap();
        client_config(second.ca_pem.as_deref().unwrap(), &[b"h2"]).unwrap();
    }
}
