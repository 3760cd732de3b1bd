//! Following the config directory: inotify (through `notify`) says what changed, and only that is read again.
//!
//! - An edit, creation or removal of a config file re-reads that file alone; the operator's own reads (open and
//!   access events) wake nothing, so an idle directory costs nothing, whatever its size.
//! - Kubernetes updates a mounted ConfigMap or Secret by swapping the `..data` symlink to a new folder; that, an
//!   inotify queue overflow, or an event without a path re-reads the whole directory.
//! - The directory itself being replaced (`mv cfg cfg.old && mkdir cfg`, or a swapped symlink) is seen through a
//!   watch on its parent: the watch moves to the new directory and everything is read again. While no directory
//!   is there, the last state stays in force.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::read::{CONFIGMAP_DATA_LINK, is_config_name, read_dir, read_file};
use super::{DirectoryState, FileSourceError, Update, as_events};
use crate::source::{Event, Resource};

/// Bursts of file-system events closer together than this are read as one change (editors write in steps).
const SETTLE: Duration = Duration::from_millis(30);
/// A burst that never pauses is still read this often.
const MAX_SETTLE: Duration = Duration::from_secs(1);

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

    /// Folds one event (of the watch on `dir` or on its parent) in. Pure.
    pub fn add(&mut self, dir: &Path, event: &notify::Event) {
        if !changes_content(&event.kind) {
            return;
        }
        if event.need_rescan() || event.paths.is_empty() {
            self.rescan = true;
        }
        for path in &event.paths {
            if path == dir {
                self.replaced = true;
            } else if path.parent() == Some(dir) {
                if path.file_name().is_some_and(|n| n == CONFIGMAP_DATA_LINK) {
                    self.rescan = true;
                } else if is_config_name(path) {
                    self.files.insert(path.clone());
                }
            }
        }
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

/// Watches `dir` and sends the whole state as [`Event`]s after every change, until `events` is closed. Each file
/// read is counted on `reads`.
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
    let mut state = DirectoryState::default();
    let mut last_sent: Option<Vec<Resource>> = None;
    let mut pending = Pending::everything();
    loop {
        if let Some(update) = read_pending(&dir, &pending, &mut watcher, &mut state, &reads) {
            report(&update);
            if last_sent.as_ref() != Some(&update.resources) {
                if events.send(as_events(&update.resources)).await.is_err() {
                    return Ok(());
                }
                last_sent = Some(update.resources);
            }
        }
        match next_change(&mut changed_rx, &dir).await {
            Some(next) => pending = next,
            None => return Ok(()),
        }
    }
}

/// Reads what `pending` names; `None` when the directory cannot be read (the last state stays).
fn read_pending(
    dir: &Path,
    pending: &Pending,
    watcher: &mut RecommendedWatcher,
    state: &mut DirectoryState,
    reads: &Counter,
) -> Option<Update> {
    if pending.replaced {
        // The old watch follows the old directory wherever it went; drop it and watch what is there now.
        let _ = watcher.unwatch(dir);
        if let Err(err) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %err, "config directory replaced and not (yet) readable; keeping the last state");
            return None;
        }
        tracing::info!(dir = %dir.display(), "config directory replaced; reading it again");
    }
    if pending.replaced || pending.rescan {
        return match read_dir(dir, reads) {
            Ok(contents) => Some(state.update(&contents)),
            Err(err) => {
                tracing::warn!(dir = %dir.display(), error = %err, "cannot read the config directory; keeping the last state");
                None
            }
        };
    }
    let changes: BTreeMap<PathBuf, _> = pending.files.iter().map(|p| (p.clone(), read_file(p, reads))).collect();
    Some(state.update_files(&changes))
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
        }
    };
    loop {
        let first = changed.recv().await?;
        add(first, &mut pending);
        // Let the rest of a burst arrive, then read once.
        let give_up = Instant::now() + MAX_SETTLE;
        while let Ok(Some(event)) =
            tokio::time::timeout(SETTLE.min(give_up.saturating_duration_since(Instant::now())), changed.recv()).await
        {
            add(event, &mut pending);
        }
        if !pending.is_empty() {
            return Some(pending);
        }
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
        events.iter().for_each(|e| pending.add(Path::new("/etc/mesh"), e));
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
