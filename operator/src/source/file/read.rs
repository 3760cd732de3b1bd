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

/// What a file looks like from outside: when it changes, so does its stamp (a rename into place or a ConfigMap
/// swap gives it a new inode; a write in place a new size or modification time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    // Follows symlinks: a ConfigMap's files are links through `..data`.
    let metadata = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
    Some(Stamp { len: metadata.len(), modified: metadata.modified().ok(), inode: metadata.ino() })
}

/// The config files read so far, by stamp, so that reading "the whole directory" opens only what changed. A
/// whole-directory read then costs one `stat` per unchanged file, and opens (which inotify reports, and which
/// would flood its queue in a huge directory) only changed ones.
#[derive(Debug, Default)]
pub struct Reader {
    stamps: BTreeMap<PathBuf, Stamp>,
}

/// Fresh reads of files: `None` for a file that is gone.
pub type Changes = BTreeMap<PathBuf, Option<FileRead>>;

impl Reader {
    /// Every config file of `dir` that is new or changed since it was last read, and those that are gone.
    pub fn changed_in(&mut self, dir: &Path, reads: &Counter) -> std::io::Result<Changes> {
        let mut present = std::collections::BTreeSet::new();
        let mut changes = Changes::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if !is_config_name(&path) {
                continue;
            }
            let Some(now) = stamp(&path) else { continue };
            present.insert(path.clone());
            if self.stamps.get(&path) != Some(&now) {
                changes.insert(path.clone(), self.read(&path, reads));
            }
        }
        let gone: Vec<PathBuf> = self.stamps.keys().filter(|p| !present.contains(*p)).cloned().collect();
        for path in gone {
            self.stamps.remove(&path);
            changes.insert(path, None);
        }
        Ok(changes)
    }

    /// Reads `paths` again (inotify said they changed).
    pub fn files(&mut self, paths: impl IntoIterator<Item = PathBuf>, reads: &Counter) -> Changes {
        paths.into_iter().map(|path| (path.clone(), self.read(&path, reads))).collect()
    }

    fn read(&mut self, path: &Path, reads: &Counter) -> Option<FileRead> {
        // Stamp first: a change while reading then shows as a newer stamp next time.
        match stamp(path) {
            Some(now) => self.stamps.insert(path.to_path_buf(), now),
            None => self.stamps.remove(path),
        };
        read_file(path, reads)
    }
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
        let mut reader = Reader::default();
        let contents = reader.changed_in(dir.path(), &reads).unwrap();
        assert_eq!(contents.len(), 2);
        assert_eq!(contents[&dir.path().join("good.yaml")], Some(FileRead::Text("kind: Service\n".into())));
        let Some(FileRead::Unreadable(why)) = &contents[&dir.path().join("noise.yaml")] else { panic!("read as text") };
        assert_eq!(why, "not UTF-8 text (invalid byte at offset 2); is it a YAML file?");
        assert_eq!(reads.get(), 2, "only config files are read");
    }

    #[test]
    fn reading_the_directory_again_opens_only_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.yaml", "b.yaml", "c.yaml"] {
            std::fs::write(dir.path().join(name), "kind: Service\n").unwrap();
        }
        let (reads, mut reader) = (Counter::default(), Reader::default());
        assert_eq!(reader.changed_in(dir.path(), &reads).unwrap().len(), 3);
        assert!(reader.changed_in(dir.path(), &reads).unwrap().is_empty());
        std::fs::write(dir.path().join(".b.tmp"), "kind: Pod\n").unwrap();
        std::fs::rename(dir.path().join(".b.tmp"), dir.path().join("b.yaml")).unwrap();
        std::fs::remove_file(dir.path().join("c.yaml")).unwrap();
        let changes = reader.changed_in(dir.path(), &reads).unwrap();
        assert_eq!(changes.get(&dir.path().join("b.yaml")), Some(&Some(FileRead::Text("kind: Pod\n".into()))));
        assert_eq!(changes.get(&dir.path().join("c.yaml")), Some(&None));
        assert_eq!((changes.len(), reads.get()), (2, 4), "only b.yaml was opened again");
    }
}
