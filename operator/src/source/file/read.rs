//! Reading the config directory's files, one at a time: a file that cannot be used (not UTF-8, too large, no
//! permission) is reported by name and skipped; it never hides the other files.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use prometheus_client::metrics::counter::Counter;

/// Largest config file read. Kubernetes keeps objects (and whole ConfigMaps) under ~1.5 MiB; anything far larger
/// is a mistake, and reading it whole would cost the operator its memory.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// What reading one file gave.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FileRead {
    Text(String),
    /// The file is there but cannot be used; why.
    Unreadable(String),
}

/// The name of Kubernetes' atomic-writer symlink in a mounted ConfigMap or Secret volume: swapping it replaces
/// every file of the volume at once.
pub const CONFIGMAP_DATA_LINK: &str = "..data";

/// Whether `path`, directly in the config directory, is a config file by its name: `*.yaml` / `*.yml`, not
/// hidden (editors' swap files and half-written `.name.tmp` files are hidden).
pub fn is_config_name(path: &Path) -> bool {
    let hidden = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
    let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
    yaml && !hidden
}

/// Reads one file; `None` when it is gone (or is not a regular file, or a dangling link). Counts the read.
pub fn read_file(path: &Path, reads: &Counter) -> Option<FileRead> {
    if !path.is_file() {
        return None;
    }
    reads.inc();
    let mut bytes = Vec::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes));
    match read {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => Some(FileRead::Unreadable(format!("cannot read the file: {err}"))),
        Ok(_) if bytes.len() as u64 > MAX_FILE_BYTES => {
            Some(FileRead::Unreadable(format!("larger than {} MiB; not read", MAX_FILE_BYTES / (1024 * 1024))))
        }
        Ok(_) => Some(decode(bytes)),
    }
}

fn decode(bytes: Vec<u8>) -> FileRead {
    match String::from_utf8(bytes) {
        Ok(text) => FileRead::Text(text),
        Err(err) => FileRead::Unreadable(format!(
            "not UTF-8 text (invalid byte at offset {}); is it a YAML file?",
            err.utf8_error().valid_up_to()
        )),
    }
}

/// Reads every config file directly in `dir`.
pub fn read_dir(dir: &Path, reads: &Counter) -> std::io::Result<BTreeMap<PathBuf, FileRead>> {
    let mut contents = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if is_config_name(&path)
            && let Some(read) = read_file(&path, reads)
        {
            contents.insert(path, read);
        }
    }
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_random_bytes_is_unreadable_and_does_not_hide_the_others() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("good.yaml"), "kind: Service\n").unwrap();
        std::fs::write(dir.path().join("noise.yaml"), [0x4b, 0x69, 0xff, 0xfe, 0x00, 0x80]).unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "x").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let reads = Counter::default();
        let contents = read_dir(dir.path(), &reads).unwrap();
        assert_eq!(contents.len(), 2);
        assert_eq!(contents[&dir.path().join("good.yaml")], FileRead::Text("kind: Service\n".into()));
        let FileRead::Unreadable(why) = &contents[&dir.path().join("noise.yaml")] else { panic!("read as text") };
        assert_eq!(why, "not UTF-8 text (invalid byte at offset 2); is it a YAML file?");
        assert_eq!(reads.get(), 2, "only config files are read");
    }
}
