//! TLS for the local servers: [`TlsFiles`] names the PEM files a server serves, and each
//! server's `start_with_tls` copies them into its own temp dir, owned and permissioned as that
//! server needs (PostgreSQL refuses a key that its own user cannot read or that others can).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::TestkitError;

/// The PEM files a server needs to serve TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate the server presents.
    pub cert: PathBuf,
    /// The certificate's private key.
    pub key: PathBuf,
    /// The CA the server checks client certificates against (a client without one is still
    /// let in).
    pub ca: PathBuf,
}

impl TlsFiles {
    /// Copies the three files into `dir/tls` (created) and returns the copies: the key
    /// readable by its owner only, the certificates by anyone, all owned by `owner` (uid, gid)
    /// when given (a server that runs as another user than this process).
    pub(crate) fn copy_into(
        &self,
        dir: &Path,
        owner: Option<(u32, u32)>,
    ) -> Result<TlsFiles, TestkitError> {
        let tls = dir.join("tls");
        fs::create_dir_all(&tls)?;
        let copies = TlsFiles {
            cert: tls.join("server.crt"),
            key: tls.join("server.key"),
            ca: tls.join("ca.crt"),
        };
        for (from, to, mode) in [
            (&self.cert, &copies.cert, 0o644),
            (&self.key, &copies.key, 0o600),
            (&self.ca, &copies.ca, 0o644),
        ] {
            let contents = fs::read(from).map_err(|error| TestkitError::Command {
                command: format!("read {}", from.display()),
                output: error.to_string(),
            })?;
            // Created with its mode: the key is never readable by others, not even briefly.
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(to)?
                .write_all(&contents)?;
        }
        if let Some((uid, gid)) = owner {
            for path in [&tls, &copies.cert, &copies.key, &copies.ca] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
            }
        }
        Ok(copies)
    }
}
