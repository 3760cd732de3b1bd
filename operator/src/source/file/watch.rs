//! Following the config directory: inotify (through `notify`) says what changed, and only that is read again.
//!
//! - An edit, creation or removal of a config file re-reads that file alone; the operator's own reads (open and
//!   access events) wake nothing, so an idle directory costs nothing, whatever its size.
//! - Kubernetes updates a mounted ConfigMap or Secret by swapping the `..data` symlink to a new folder; that, an
//!   inotify queue overflow, or an event without a path re-reads the whole directory.
//! - The directory itself being replaced (`mv cfg cfg.old && mkdir cfg`, or a swapped symlink) is seen through a
//!   watch on its parent: the watch moves to the new directory and everything is read again. While no directory
//!   is there, the last state stays in force.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::read::{CONFIGMAP_DATA_LINK, Reader, is_config_name};
use super::{DirectoryState, FileSourceError, Update, as_events};
use crate::source::Event;

/// Bursts of file-system events closer together than this are read as one change (editors write in steps).
const SETTLE: Duration = Duration::from_millis(30);
/// A burst that never pauses is still read this often.
const MAX_SETTLE: Duration = Duration::from_secs(1);
/// Whole-directory reads asked for by lost events come at most this often. A directory of more files than the
/// inotify queue holds (16384 events by default) overflows it with the open events of the operator's own read,
/// which would otherwise ask for the next read at once, forever.
const MIN_RESCAN_INTERVAL: Duration = Duration::from_secs(1);

/// What a burst of file-system events asks to read again.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The directory itself was created, removed, moved or replaced: watch it anew, read everything.
    pub replaced: bool,
    /// Read every file (ConfigMap `..data` swap, lost events).
    pub rescan: bool,
    /// Config files to read again.
    pub files: BTreeSet<PathBuf>,
}

impl Pending {
    fn everything() -> Self {
        Self { rescan: true, ..Self::default() }
    }

    pub fn is_empty(&self) -> bool {
        !self.replaced && !self.rescan && self.files.is_empty()
    }

    /// Folds one event (of the watch on `dir` or on its parent) in; whether it concerned the config. Pure.
    pub fn add(&mut self, dir: &Path, event: &notify::Event) -> bool {
        if !changes_content(&event.kind) {
            return false;
        }
        let mut relevant = false;
        if event.need_rescan() || event.paths.is_empty() {
            self.rescan = true;
            relevant = true;
        }
        for path in &event.paths {
            if path == dir {
                self.replaced = true;
            } else if path.parent() == Some(dir) && path.file_name().is_some_and(|n| n == CONFIGMAP_DATA_LINK) {
                self.rescan = true;
            } else if path.parent() == Some(dir) && is_config_name(path) {
                self.files.insert(path.clone());
            } else {
                continue;
            }
            relevant = true;
        }
        relevant
    }

    /// Only a whole-directory read because events were lost (no file named, no replacement).
    fn only_lost_events(&self) -> bool {
        self.rescan && !self.replaced && self.files.is_empty()
    }
}

/// Opening, reading and closing a file unchanged (the operator's own reads among them) change nothing.
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Watches `dir` and sends its whole state as [`Event`]s, then what each change changed, until `events` is
/// closed. Each file read is counted on `reads`.
pub async fn watch_dir(dir: PathBuf, events: mpsc::Sender<Vec<Event>>, reads: Counter) -> Result<(), FileSourceError> {
    // Absolute but not canonical: a symlinked directory must stay the symlink, which may be swapped.
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let (changed_tx, mut changed_rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let wakes = event.as_ref().map_or(true, |e| changes_content(&e.kind));
        if wakes {
            let _ = changed_tx.send(event);
        }
    })
    .map_err(|source| FileSourceError::Watch { dir: dir.clone(), source })?;
    if let Some(parent) = dir.parent()
        && let Err(err) = watcher.watch(parent, RecursiveMode::NonRecursive)
    {
        tracing::warn!(dir = %parent.display(), error = %err, "cannot watch the config directory's parent; replacing the directory will not be noticed");
    }
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|source| FileSourceError::Watch { dir: dir.clone(), source })?;
    let mut follower =
        Follower { dir: dir.clone(), watcher, state: DirectoryState::default(), reader: Reader::default(), reads };
    let mut first_read = true;
    let mut pending = Pending::everything();
    let mut last_full_read = Instant::now();
    loop {
        if pending.rescan || pending.replaced {
            last_full_read = Instant::now();
        }
        if let Some(update) = follower.read(&pending) {
            report(&update);
            // The first read is the whole state (even an empty one: the index then knows the source has spoken);
            // after it, only what changed, object by object.
            let batch = if first_read { as_events(&follower.state.resources()) } else { update.events };
            first_read = false;
            if !batch.is_empty() && events.send(batch).await.is_err() {
                return Ok(());
            }
        }
        match next_change(&mut changed_rx, &dir).await {
            Some(next) => pending = next,
            None => return Ok(()),
        }
        if pending.only_lost_events() {
            tokio::time::sleep_until(last_full_read + MIN_RESCAN_INTERVAL).await;
        }
    }
}

/// The directory being followed and what has been read of it.
struct Follower {
    dir: PathBuf,
    watcher: RecommendedWatcher,
    state: DirectoryState,
    reader: Reader,
    reads: Counter,
}

impl Follower {
    /// Reads what `pending` names; `None` when the directory cannot be read (the last state stays).
    fn read(&mut self, pending: &Pending) -> Option<Update> {
        let dir = &self.dir;
        if pending.replaced {
            // The old watch follows the old directory wherever it went; drop it and watch what is there now.
            let _ = self.watcher.unwatch(dir);
            if let Err(err) = self.watcher.watch(dir, RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), error = %err, "config directory replaced and not (yet) readable; keeping the last state");
                return None;
            }
            tracing::info!(dir = %dir.display(), "config directory replaced; reading it again");
        }
        let changes = if pending.replaced || pending.rescan {
            match self.reader.changed_in(dir, &self.reads) {
                Ok(changes) => changes,
                Err(err) => {
                    tracing::warn!(dir = %dir.display(), error = %err, "cannot read the config directory; keeping the last state");
                    return None;
                }
            }
        } else {
            self.reader.files(pending.files.iter().cloned(), &self.reads)
        };
        Some(self.state.update_files(&changes))
    }
}

/// Waits for the next burst of events that asks for a read; `None` once the watcher is gone.
async fn next_change(
    changed: &mut mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    dir: &Path,
) -> Option<Pending> {
    let mut pending = Pending::default();
    let add = |event: notify::Result<notify::Event>, pending: &mut Pending| match event {
        Ok(event) => pending.add(dir, &event),
        Err(err) => {
            tracing::warn!(error = %err, "file watch error; reading the whole config directory");
            pending.rescan = true;
            true
        }
    };
    loop {
        let first = changed.recv().await?;
        if !add(first, &mut pending) {
            continue;
        }
        // Let the rest of a burst arrive (events about other files of the parent do not prolong it), then read once.
        let give_up = Instant::now() + MAX_SETTLE;
        let mut quiet_until = Instant::now() + SETTLE;
        while let Ok(Some(event)) = tokio::time::timeout_at(quiet_until.min(give_up), changed.recv()).await {
            if add(event, &mut pending) {
                quiet_until = Instant::now() + SETTLE;
            }
        }
        return Some(pending);
    }
}

fn report(update: &Update) {
    for problem in &update.new_problems {
        tracing::error!(
            file = %problem.file.display(),
            document = problem.document,
            line = problem.line,
            "{problem}; the file's last good state (if any) stays in force"
        );
    }
    for note in &update.new_notes {
        tracing::info!(file = %note.file.display(), "{note}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RemoveKind, RenameMode};

    fn event(kind: EventKind, paths: &[&str]) -> notify::Event {
        paths.iter().fold(notify::Event::new(kind), |e, p| e.add_path(PathBuf::from(p)))
    }

    fn pending(events: &[notify::Event]) -> Pending {
        let mut pending = Pending::default();
        for event in events {
            pending.add(Path::new("/etc/mesh"), event);
        }
        pending
    }

    #[test]
    fn the_operators_own_reads_ask_for_nothing() {
        let opened = event(EventKind::Access(AccessKind::Open(notify::event::AccessMode::Any)), &["/etc/mesh/a.yaml"]);
        let closed = event(EventKind::Access(AccessKind::Close(AccessMode::Read)), &["/etc/mesh/a.yaml"]);
        assert!(pending(&[opened, closed]).is_empty());
    }

    #[test]
    fn an_edit_reads_that_file_alone() {
        let written = event(EventKind::Modify(ModifyKind::Data(notify::event::DataChange::Any)), &["/etc/mesh/a.yaml"]);
        let renamed = event(
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
            &["/etc/mesh/.b.yaml.tmp", "/etc/mesh/b.yaml"],
        );
        let sibling = event(EventKind::Create(CreateKind::File), &["/etc/other.yaml"]);
        let p = pending(&[written, renamed, sibling]);
        assert!(!p.rescan && !p.replaced);
        assert_eq!(p.files, ["/etc/mesh/a.yaml", "/etc/mesh/b.yaml"].map(PathBuf::from).into());
    }

    #[test]
    fn a_configmap_swap_or_a_replaced_directory_reads_everything() {
        let swap = event(EventKind::Modify(ModifyKind::Name(RenameMode::To)), &["/etc/mesh/..data"]);
        assert!(pending(&[swap]).rescan);
        let moved_away = event(EventKind::Modify(ModifyKind::Name(RenameMode::From)), &["/etc/mesh"]);
        let created = event(EventKind::Create(CreateKind::Folder), &["/etc/mesh"]);
        assert!(pending(&[moved_away]).replaced && pending(&[created]).replaced);
        let removed_self = event(EventKind::Remove(RemoveKind::Folder), &["/etc/mesh"]);
        assert!(pending(&[removed_self]).replaced);
        let overflow = notify::Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert!(pending(&[overflow]).rescan);
    }
}
