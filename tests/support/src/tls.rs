//! Certificates made at test time for the TLS tests: [`TestCerts`] writes a CA, the server
//! certificates a test serves (good, for the wrong host, expired), a CA that signed none of
//! them, and a client certificate, as PEM files into a temp dir it owns. The servers of
//! `ferry-local` take a [`TlsFiles`] from it and copy what they serve into their own dirs.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use tempfile::TempDir;

use crate::TlsFiles;

/// The name the wrong-host certificate is for (reserved: it never resolves).
pub const WRONG_HOST: &str = "db.example.invalid";

/// The client certificate's common name.
pub const CLIENT_NAME: &str = "ferry";

/// A set of test certificates in a temp dir, removed when dropped. All keys are EC P-256.
#[derive(Debug)]
pub struct TestCerts {
    dir: TempDir,
}

/// A CA to sign with: its certificate's parameters and its key.
type Authority = Issuer<'static, KeyPair>;

impl TestCerts {
    /// Makes the CA, the wrong CA and every certificate, and writes them (panics if it
    /// cannot: the harness is broken then, not the code under test).
    pub fn generate() -> TestCerts {
        let dir = tempfile::Builder::new()
            .prefix("ferry-certs-")
            .tempdir()
            .expect("a temp dir for the certificates");
        // Certificates are public: a client tool run as another user may read them.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .expect("open the certificates' dir");
        let certs = TestCerts { dir };
        let ca = certs.authority("ca", "ferry test CA");
        certs.authority("wrong-ca", "ferry test wrong CA");
        let localhost = [
            SanType::DnsName("localhost".try_into().expect("a DNS name")),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ];
        certs.leaf(&ca, "server", &localhost, Usage::Server, false);
        let wrong_host = [SanType::DnsName(WRONG_HOST.try_into().expect("a DNS name"))];
        certs.leaf(&ca, "wrong-host", &wrong_host, Usage::Server, false);
        certs.leaf(&ca, "expired", &localhost, Usage::Server, true);
        certs.leaf(&ca, "client", &[], Usage::Client, false);
        certs
    }

    /// The dir the files are in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA that signed every certificate here (`ca.crt`).
    pub fn ca(&self) -> PathBuf {
        self.path("ca.crt")
    }

    /// A CA that signed none of them (`wrong-ca.crt`): a client trusting only it must
    /// refuse every server here.
    pub fn wrong_ca(&self) -> PathBuf {
        self.path("wrong-ca.crt")
    }

    /// The good server certificate: for `localhost` and `127.0.0.1`, valid now.
    pub fn server(&self) -> TlsFiles {
        self.files("server")
    }

    /// A server certificate signed by the CA but only for [`WRONG_HOST`].
    pub fn wrong_host(&self) -> TlsFiles {
        self.files("wrong-host")
    }

    /// A server certificate signed by the CA for `localhost` and `127.0.0.1` that expired
    /// (valid in 2019 only).
    pub fn expired(&self) -> TlsFiles {
        self.files("expired")
    }

    /// The client certificate (common name [`CLIENT_NAME`], signed by the CA).
    pub fn client_cert(&self) -> PathBuf {
        self.path("client.crt")
    }

    /// The client certificate's key.
    pub fn client_key(&self) -> PathBuf {
        self.path("client.key")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `name`.crt and `name`.key, with the CA as the one client certificates are checked
    /// against.
    fn files(&self, name: &str) -> TlsFiles {
        TlsFiles {
            cert: self.path(&format!("{name}.crt")),
            key: self.path(&format!("{name}.key")),
            ca: self.ca(),
        }
    }

    /// Makes a self-signed CA called `common_name` and writes its certificate as `name`.crt.
    fn authority(&self, name: &str, common_name: &str) -> Authority {
        let mut params = CertificateParams::default();
        params.distinguished_name = named(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = new_key();
        let cert = params.self_signed(&key).expect("a self-signed CA");
        self.write(&format!("{name}.crt"), &cert.pem(), 0o644);
        Issuer::new(params, key)
    }

    /// Makes a certificate for `names` signed by `ca` and writes it as `name`.crt and its key
    /// as `name`.key; `expired` makes it valid in 2019 only.
    fn leaf(&self, ca: &Authority, name: &str, names: &[SanType], usage: Usage, expired: bool) {
        let mut params = CertificateParams::default();
        params.subject_alt_names = names.to_vec();
        params.distinguished_name = named(match usage {
            Usage::Client => CLIENT_NAME,
            Usage::Server => name,
        });
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let key = new_key();
        let cert = params
            .signed_by(&key, ca)
            .expect("a certificate signed by the CA");
        self.write(&format!("{name}.crt"), &cert.pem(), 0o644);
        self.write(&format!("{name}.key"), &key.serialize_pem(), 0o600);
    }

    /// Writes `name`, created with `mode` (a key is never readable by others).
    fn write(&self, name: &str, contents: &str, mode: u32) {
        let path = self.path(name);
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .and_then(|mut file| file.write_all(contents.as_bytes()))
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

/// What a leaf certificate is for.
#[derive(Clone, Copy)]
enum Usage {
    Server,
    Client,
}

fn new_key() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("an EC P-256 key")
}

fn named(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}
