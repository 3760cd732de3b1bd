//! The standalone file source on a real directory with real inotify: what it reads, when, and that it keeps
//! following edits through unreadable files, a replaced directory and Kubernetes' ConfigMap volume layout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use weft_operator::source::file::watch_dir;
use weft_operator::source::{Event, Kind, Resource, ResourceKey};

const DEADLINE: Duration = Duration::from_secs(10);

fn service(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{ports: [{{port: 80}}]}}\n"
    )
}

fn virtual_service(name: &str, timeout: &str) -> String {
    format!(
        "apiVersion: networking.weft.dev/v1alpha1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: shop}}\n\
         spec:\n  hosts: [{name}]\n  http:\n  - route:\n    - destination: {{host: {name}}}\n    timeout: {timeout}\n"
    )
}

/// Writes the way editors and kubectl-like tools do: a hidden file aside, renamed into place.
fn replace(path: &Path, content: &str) {
    let aside = path.with_file_name(format!(".{}.tmp", path.file_name().unwrap().to_string_lossy()));
    std::fs::write(&aside, content).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// A running file source and what it has sent.
struct Source {
    events: mpsc::Receiver<Vec<Event>>,
    reads: Counter,
    task: tokio::task::JoinHandle<()>,
    /// The state the events so far describe.
    state: BTreeMap<ResourceKey, Resource>,
    /// How many objects the last batch named.
    last_batch: usize,
}

impl Source {
    fn start(dir: &Path) -> Self {
        let (tx, events) = mpsc::channel(64);
        let reads = Counter::default();
        let watched = dir.to_path_buf();
        let counter = reads.clone();
        let task = tokio::spawn(async move {
            watch_dir(watched, tx, counter).await.unwrap();
        });
        Self { events, reads, task, state: BTreeMap::new(), last_batch: 0 }
    }

    /// Waits for a state that satisfies `wanted`; returns its resources.
    async fn wait_for(&mut self, what: &str, wanted: impl Fn(&[Resource]) -> bool) -> Vec<Resource> {
        let until = tokio::time::Instant::now() + DEADLINE;
        loop {
            let batch = tokio::time::timeout_at(until, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no state with {what} within {DEADLINE:?}"))
                .expect("the source stopped");
            self.last_batch = 0;
            for event in batch {
                self.apply(event);
            }
            let resources: Vec<Resource> = self.state.values().cloned().collect();
            if wanted(&resources) {
                return resources;
            }
        }
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::Restarted { kind, namespace: None, objects } => {
                self.state.retain(|key, _| key.kind != kind);
                self.last_batch += objects.len();
                self.state.extend(objects.into_iter().map(|r| (r.key(), r)));
            }
            Event::Applied(resource) => {
                self.last_batch += 1;
                self.state.insert(resource.key(), resource);
            }
            Event::Deleted(key) => {
                self.last_batch += 1;
                self.state.remove(&key);
            }
            other => panic!("a directory read does not send {other:?}"),
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn timeout_of(resources: &[Resource], name: &str) -> Option<String> {
    resources.iter().find_map(|r| match r {
        Resource::VirtualService(vs) if vs.metadata.name.as_deref() == Some(name) => vs.spec.http[0].timeout.clone(),
        _ => None,
    })
}

fn count(resources: &[Resource], kind: Kind) -> usize {
    resources.iter().filter(|r| r.kind() == kind).count()
}

/// Services and rules in `files` files, half of each.
fn fill(dir: &Path, files: usize) {
    for i in 0..files / 2 {
        std::fs::write(dir.join(format!("svc-{i}.yaml")), service(&format!("s{i}"))).unwrap();
        std::fs::write(dir.join(format!("vs-{i}.yaml")), virtual_service(&format!("s{i}"), "1s")).unwrap();
    }
}

async fn an_idle_directory_is_not_read_again(files: usize) {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), files);
    let mut source = Source::start(dir.path());
    source.wait_for("every file", |r| r.len() == files).await;
    assert_eq!(source.reads.get(), files as u64, "each file is read once at startup");
    // The observation itself: a quiet directory for a while.
    let idle = Duration::from_millis(1500);
    tokio::time::sleep(idle).await;
    assert_eq!(source.reads.get(), files as u64, "files were read again during {idle:?} without any change");
    replace(&dir.path().join("vs-0.yaml"), &virtual_service("s0", "2s"));
    source.wait_for("the edit", |r| timeout_of(r, "s0").as_deref() == Some("2s")).await;
    assert_eq!(source.reads.get(), files as u64 + 1, "an edit reads the edited file alone");
    assert_eq!(source.last_batch, 1, "and sends the one object it changed");
}

#[tokio::test]
async fn an_idle_directory_of_200_files_is_not_read_again() {
    an_idle_directory_is_not_read_again(200).await;
}

#[tokio::test]
async fn an_idle_directory_of_5000_files_is_not_read_again() {
    an_idle_directory_is_not_read_again(5000).await;
}

#[tokio::test]
async fn a_file_of_random_bytes_is_skipped_and_edits_of_the_others_are_followed() {
    let dir = tempfile::tempdir().unwrap();
    let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(dir.path().join("noise.yaml"), &noise).unwrap();
    std::fs::write(dir.path().join("svc.yaml"), service("reviews")).unwrap();
    std::fs::write(dir.path().join("vs.yaml"), virtual_service("reviews", "1s")).unwrap();
    let mut source = Source::start(dir.path());
    let first = source.wait_for("the readable files", |r| r.len() == 2).await;
    assert_eq!(timeout_of(&first, "reviews").as_deref(), Some("1s"));
    replace(&dir.path().join("vs.yaml"), &virtual_service("reviews", "3s"));
    source.wait_for("the edit", |r| timeout_of(r, "reviews").as_deref() == Some("3s")).await;
    std::fs::write(dir.path().join("more.yaml"), service("ratings")).unwrap();
    source.wait_for("a new file", |r| count(r, Kind::Service) == 2).await;
}

#[tokio::test]
async fn edits_are_followed_after_the_directory_is_replaced() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("cfg");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("svc.yaml"), service("reviews")).unwrap();
    std::fs::write(dir.join("vs.yaml"), virtual_service("reviews", "1s")).unwrap();
    let mut source = Source::start(&dir);
    source.wait_for("the files", |r| r.len() == 2).await;
    // mv cfg cfg.old && mkdir cfg && cp cfg.old/* cfg/
    let old = root.path().join("cfg.old");
    std::fs::rename(&dir, &old).unwrap();
    std::fs::create_dir(&dir).unwrap();
    for name in ["svc.yaml", "vs.yaml"] {
        std::fs::copy(old.join(name), dir.join(name)).unwrap();
    }
    replace(&dir.join("vs.yaml"), &virtual_service("reviews", "4s"));
    source.wait_for("an edit in the new directory", |r| timeout_of(r, "reviews").as_deref() == Some("4s")).await;
    // The old directory is no longer what the operator reads.
    replace(&old.join("vs.yaml"), &virtual_service("reviews", "9s"));
    replace(&dir.join("svc.yaml"), &service("reviews").replace("port: 80", "port: 81"));
    let port_81 = |r: &Resource| matches!(r, Resource::Service(s) if s.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port == 81);
    let latest = source.wait_for("the next edit", |r| r.iter().any(port_81)).await;
    assert_eq!(timeout_of(&latest, "reviews").as_deref(), Some("4s"), "an edit of the old directory was taken");
}

/// A ConfigMap volume as the kubelet lays it out: the files are symlinks through `..data`, which points at a
/// timestamped folder; an update writes a new folder and swaps `..data` atomically.
struct ConfigMapVolume {
    dir: PathBuf,
    generation: usize,
}

impl ConfigMapVolume {
    fn create(dir: &Path, files: &[(&str, String)]) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let mut volume = Self { dir: dir.to_path_buf(), generation: 0 };
        volume.update(files);
        for (name, _) in files {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
        }
        volume
    }

    fn update(&mut self, files: &[(&str, String)]) {
        self.generation += 1;
        let folder = format!("..2026_12_03_10_00_0{}.123456789", self.generation);
        std::fs::create_dir(self.dir.join(&folder)).unwrap();
        for (name, content) in files {
            std::fs::write(self.dir.join(&folder).join(name), content).unwrap();
        }
        let previous = std::fs::read_link(self.dir.join("..data")).ok();
        std::os::unix::fs::symlink(&folder, self.dir.join("..data_tmp")).unwrap();
        std::fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data")).unwrap();
        if let Some(previous) = previous {
            std::fs::remove_dir_all(self.dir.join(previous)).unwrap();
        }
    }
}

#[tokio::test]
async fn edits_are_followed_through_a_configmap_volume() {
    let root = tempfile::tempdir().unwrap();
    let mut volume = ConfigMapVolume::create(
        &root.path().join("mesh"),
        &[("svc.yaml", service("reviews")), ("vs.yaml", virtual_service("reviews", "1s"))],
    );
    let mut source = Source::start(&volume.dir);
    let first = source.wait_for("the mounted files", |r| r.len() == 2).await;
    assert_eq!(timeout_of(&first, "reviews").as_deref(), Some("1s"));
    for (generation, timeout) in ["5s", "6s"].iter().enumerate() {
        volume.update(&[("svc.yaml", service("reviews")), ("vs.yaml", virtual_service("reviews", timeout))]);
        let started = Instant::now();
        source
            .wait_for(&format!("update {generation}"), |r| timeout_of(r, "reviews").as_deref() == Some(*timeout))
            .await;
        println!("ConfigMap update {generation} seen after {:?}", started.elapsed());
    }
}
