//! Where the CA's key and certificates live. A directory with Istio's plug-in CA names (`ca-cert.pem`,
//! `ca-key.pem`, `root-cert.pem`, `cert-chain.pem`): the user's own intermediate when `ca-key.pem` is there,
//! otherwise a new self-signed root written there once (the key readable by the owner only) and reused on every
//! later start. On Kubernetes that directory can be a mounted Secret.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::authority::{Authority, CaError, CaFiles};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("CA in {0}: {1}")]
    Ca(PathBuf, CaError),
}

pub const CA_CERT: &str = "ca-cert.pem";
pub const CA_KEY: &str = "ca-key.pem";
pub const ROOT_CERT: &str = "root-cert.pem";
pub const CERT_CHAIN: &str = "cert-chain.pem";

/// The CA of `dir`, created there first when it holds no key.
pub fn load_or_create(dir: &Path, trust_domain: &str) -> Result<Authority, StoreError> {
    let ca_error = |e| StoreError::Ca(dir.to_path_buf(), e);
    if !dir.join(CA_KEY).exists() {
        let files = Authority::generate(trust_domain, SystemTime::now()).map_err(ca_error)?;
        write(dir, &files)?;
        tracing::info!(dir = %dir.display(), trust_domain, "created a new self-signed root CA");
    }
    let files = read(dir)?;
    Authority::from_files(files).map_err(ca_error)
}

fn read(dir: &Path) -> Result<CaFiles, StoreError> {
    let text = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| StoreError::Io(path, e))
    };
    let optional = |name: &str| std::fs::read_to_string(dir.join(name)).ok();
    let ca_cert = text(CA_CERT)?;
    Ok(CaFiles {
        ca_key: text(CA_KEY)?,
        root_cert: optional(ROOT_CERT).unwrap_or_else(|| ca_cert.clone()),
        cert_chain: optional(CERT_CHAIN).unwrap_or_default(),
        ca_cert,
    })
}

fn write(dir: &Path, files: &CaFiles) -> Result<(), StoreError> {
    let io = |path: PathBuf| move |e| StoreError::Io(path, e);
    std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
    for (name, text, private) in
        [(CA_CERT, &files.ca_cert, false), (ROOT_CERT, &files.root_cert, false), (CA_KEY, &files.ca_key, true)]
    {
        let path = dir.join(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        if private {
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        }
        let mut file = options.open(&path).map_err(io(path.clone()))?;
        file.write_all(text.as_bytes()).map_err(io(path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_ca_is_written_once_and_read_back_on_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        let first = load_or_create(&ca_dir, "cluster.local").unwrap();
        let mode = std::fs::metadata(ca_dir.join(CA_KEY)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the key is private: {mode:o}");
        let second = load_or_create(&ca_dir, "cluster.local").unwrap();
        assert_eq!(first.roots_pem(), second.roots_pem(), "the same root after a restart");
    }

    #[test]
    fn a_directory_with_a_broken_key_is_an_error_not_a_new_ca() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CA_KEY), "not a key").unwrap();
        std::fs::write(dir.path().join(CA_CERT), "not a cert").unwrap();
        let err = load_or_create(dir.path(), "cluster.local").unwrap_err().to_string();
        assert!(err.contains("CA key does not parse"), "{err}");
    }
}
