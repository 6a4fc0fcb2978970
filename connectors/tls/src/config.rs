//! An endpoint's TLS settings, and the rustls configuration they make.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_engine::Error;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{self, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// Where Debian (and most Linux systems) keep the trusted public CAs, used by the verifying
/// modes when no `sslrootcert` is given (or `sslrootcert=system`).
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How much TLS an endpoint asks for, as libpq's `sslmode` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, plain otherwise; the certificate is not checked (the
    /// default for database URLs, as in libpq).
    Prefer,
    /// TLS or no connection; the certificate is not checked (unless `sslrootcert` is given,
    /// which makes it `verify-ca`, as in libpq).
    Require,
    /// TLS, and the server's certificate must chain to a trusted CA.
    VerifyCa,
    /// `verify-ca`, and the certificate must be for the host name the URL connects to.
    VerifyFull,
}

impl SslMode {
    /// The values `sslmode` takes.
    pub const CHOICES: &'static [&'static str] =
        &["disable", "prefer", "require", "verify-ca", "verify-full"];

    /// `sslmode=text`.
    pub fn parse(text: &str) -> Option<SslMode> {
        Some(match text {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// Its name in `sslmode`.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Whether a connection without TLS is refused.
    pub fn insists(self) -> bool {
        matches!(
            self,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
        )
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One endpoint's TLS settings, read by [`crate::prepare`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// The mode in force (after `require` with a CA file became `verify-ca`).
    pub mode: SslMode,
    /// `sslrootcert`: a PEM file of the CAs to trust; `None` (or `system`) for the system's.
    pub root_cert: Option<PathBuf>,
    /// `sslcert`: the client's certificate chain (PEM), shown to servers that ask.
    pub cert: Option<PathBuf>,
    /// `sslkey`: the client certificate's private key (PEM).
    pub key: Option<PathBuf>,
    /// The job field the settings came from (`source`), for messages.
    pub field: String,
}

impl TlsSettings {
    /// No TLS at all, for `field`.
    pub fn disabled(field: impl Into<String>) -> TlsSettings {
        TlsSettings {
            mode: SslMode::Disable,
            root_cert: None,
            cert: None,
            key: None,
            field: field.into(),
        }
    }

    /// Where the trusted CAs come from, in words (`sslrootcert /etc/ferry/ca.pem`).
    pub fn trust(&self) -> String {
        match &self.root_cert {
            Some(path) => format!("sslrootcert {}", path.display()),
            None => format!("the system's CAs ({SYSTEM_ROOTS})"),
        }
    }

    /// What a connection made with these settings proves, in words, after `negotiated` (the
    /// protocol and cipher suite, `None` for a plain connection): for `ferry check`.
    pub fn describe(&self, negotiated: Option<&str>) -> String {
        match negotiated {
            None if self.mode == SslMode::Disable => "not encrypted (sslmode=disable)".into(),
            None => format!(
                "NOT encrypted: the server offers no TLS (sslmode={}; set sslmode=verify-full to refuse that)",
                self.mode
            ),
            Some(how) => {
                let checked = match self.mode {
                    SslMode::VerifyFull => format!(
                        "the server's certificate checked against {} and the host name",
                        self.trust()
                    ),
                    SslMode::VerifyCa => format!(
                        "the server's certificate checked against {} (not the host name)",
                        self.trust()
                    ),
                    _ => format!(
                        "the server's certificate NOT checked (sslmode={}; set sslmode=verify-full and sslrootcert to check it)",
                        self.mode
                    ),
                };
                format!("encrypted ({how}); {checked}")
            }
        }
    }

    /// The rustls configuration for these settings, `None` under `disable`. Reads the CA,
    /// certificate and key files now, so a missing or unreadable one is an error before
    /// anything connects.
    pub fn client_config(&self) -> Result<Option<Arc<ClientConfig>>, Error> {
        if self.mode == SslMode::Disable {
            return Ok(None);
        }
        let provider = Arc::new(crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match self.mode {
            SslMode::Disable | SslMode::Prefer | SslMode::Require => Arc::new(AnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }),
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let roots = self.roots()?;
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| self.error("sslrootcert", format!("cannot be used: {e}")))?;
                Arc::new(TrustedCertificate {
                    webpki,
                    check_name: self.mode == SslMode::VerifyFull,
                })
            }
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Internal(format!("rustls refuses its own defaults: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = self.certificates(cert, "sslcert")?;
                let key = self.private_key(key)?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| self.error("sslkey", format!("does not fit sslcert: {e}")))?
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => {
                return Err(self.error(
                    "sslcert",
                    "is given without sslkey; give the client certificate's private key too",
                ))
            }
            (None, Some(_)) => {
                return Err(self.error(
                    "sslkey",
                    "is given without sslcert; give the client certificate too",
                ))
            }
        };
        Ok(Some(Arc::new(config)))
    }

    fn error(&self, key: &str, message: impl Into<String>) -> Error {
        Error::Config {
            field: format!("{}.{key}", self.field),
            message: message.into(),
        }
    }

    fn roots(&self) -> Result<RootCertStore, Error> {
        let (path, key) = match &self.root_cert {
            Some(path) => (path.as_path(), "sslrootcert"),
            None => (Path::new(SYSTEM_ROOTS), "sslrootcert"),
        };
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(self.certificates(path, key)?);
        if added == 0 {
            return Err(self.error(
                key,
                format!("{} holds no usable CA certificate", path.display()),
            ));
        }
        Ok(roots)
    }

    fn certificates(&self, path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
        let unreadable = |e: &dyn fmt::Display| {
            self.error(
                key,
                format!(
                    "cannot read {}: {e}; give the path of a PEM file{}",
                    path.display(),
                    if self.root_cert.is_none() && key == "sslrootcert" {
                        " (no sslrootcert was given, so the system's CAs were tried: set sslrootcert to the CA that signed the server's certificate)"
                    } else {
                        ""
                    }
                ),
            )
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| unreadable(&e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| unreadable(&e))?;
        if certs.is_empty() {
            return Err(self.error(key, format!("{} holds no PEM certificate", path.display())));
        }
        Ok(certs)
    }

    fn private_key(&self, path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            if let Ok(meta) = std::fs::metadata(path) {
                if meta.mode() & 0o077 != 0 && meta.uid() != 0 {
                    return Err(self.error(
                        "sslkey",
                        format!(
                            "{} can be read by others (mode {:o}); run chmod 600 {0}",
                            path.display(),
                            meta.mode() & 0o777
                        ),
                    ));
                }
            }
        }
        PrivateKeyDer::from_pem_file(path).map_err(|e| {
            self.error(
                "sslkey",
                format!(
                    "cannot read a private key from {}: {e}; give a PEM file (PKCS#8, PKCS#1 or SEC1)",
                    path.display()
                ),
            )
        })
    }
}

/// `prefer` and `require`: any certificate is taken (the connection is encrypted, not
/// authenticated), but the handshake's signatures are still checked against it, so the
/// session key is the one the certificate's holder agreed.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `verify-ca` and `verify-full`: the chain, validity dates and key usage checked by webpki;
/// under `verify-ca` a certificate for another name is taken once all of that has passed
/// (webpki checks the name last).
#[derive(Debug)]
struct TrustedCertificate {
    webpki: Arc<WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for TrustedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The provider every connector's rustls uses; installed as the process default so that a
/// driver building its own configuration (mysql_async) picks the same one.
pub(crate) fn install_provider() {
    let _ = CryptoProvider::install_default(crypto::ring::default_provider());
}
