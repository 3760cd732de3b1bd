//! Network namespaces as pods, for tier-3 tests (root only). A [`Lab`] is a "node" namespace holding a bridge;
//! each [`Pod`] is a namespace attached to it by a veth pair, with an address in a private range
//! (`10.213.<lab>.0/24`). Nothing is created in the host's own namespace: links are made inside the node namespace
//! and their far ends moved straight into the pod, so all traffic stays between namespaces the test created.
//!
//! Processes run inside with `ip netns exec` (see [`Netns::spawn`]); the test process itself can open sockets in a
//! namespace ([`Netns::connect`], [`Netns::listen`]): a short-lived thread enters the namespace (`setns`), creates
//! the socket and hands it back, and the socket stays in that namespace wherever it is used. Namespaces are deleted
//! on drop, also when a test fails; processes are killed by their own [`Process`] guards.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use crate::process::Process;

/// Every namespace name starts with this, then the test process id: `weft-t<pid>-<n>-<role>`.
const PREFIX: &str = "weft-t";
/// The private range pods get addresses from: `10.213.<lab>.0/24`.
const RANGE: [u8; 2] = [10, 213];
const BRIDGE: &str = "br0";

static NAMESPACES: AtomicUsize = AtomicUsize::new(0);
static LABS: AtomicU8 = AtomicU8::new(0);

/// Why this machine cannot run namespace tests, if it cannot (not root, a tool missing).
pub fn preflight() -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err("network-namespace tests need root (ip netns, iptables, setpriv)".into());
    }
    let missing: Vec<&str> =
        ["ip", "iptables-save", "iptables-restore", "setpriv"].into_iter().filter(|tool| !on_path(tool)).collect();
    if !missing.is_empty() {
        return Err(format!("missing {} (apt-get install iproute2 iptables util-linux)", missing.join(", ")));
    }
    Ok(())
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// One network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// A new namespace with its loopback up.
    pub fn create(role: &str) -> anyhow::Result<Self> {
        let n = NAMESPACES.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}-{role}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<()> {
        run(Command::new("ip").args(["-n", &self.name]).args(args)).map(drop)
    }

    /// Runs `program args` inside the namespace to completion; its output, or an error with its stderr.
    pub fn exec(&self, program: &Path, args: &[&str]) -> anyhow::Result<Output> {
        run(Command::new("ip").args(["netns", "exec", &self.name]).arg(program).args(args))
    }

    /// Starts `command` (program and arguments) inside the namespace, output to `log`, killed when dropped.
    /// `ip netns exec` execs the program, so the [`Process`] is the program itself.
    pub fn spawn(&self, label: &str, command: &[String], log: &Path) -> anyhow::Result<Process> {
        let args: Vec<String> =
            ["netns", "exec", &self.name].iter().map(|s| s.to_string()).chain(command.iter().cloned()).collect();
        Process::spawn(label, Path::new("ip"), &args, log)
    }

    /// Runs `f` on a thread that has entered this namespace; sockets it creates belong to the namespace.
    pub fn enter<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> std::io::Result<T> + Send + 'static,
    {
        enter(&self.name, f)
    }

    /// A TCP connection from inside the namespace (made within `timeout`).
    pub async fn connect(&self, to: SocketAddr, timeout: Duration) -> anyhow::Result<tokio::net::TcpStream> {
        connect_from(&self.name, to, timeout).await
    }

    /// A TCP listener bound inside the namespace.
    pub fn listen(&self, at: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
        let listener = self.enter(move || {
            let listener = std::net::TcpListener::bind(at)?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })?;
        Ok(tokio::net::TcpListener::from_std(listener)?)
    }

    /// GET `path` on a new connection from inside the namespace; status, headers and body.
    pub async fn http_get(
        &self,
        to: SocketAddr,
        host: &str,
        path: &str,
        timeout: Duration,
    ) -> anyhow::Result<(StatusCode, http::HeaderMap, String)> {
        let stream = self.connect(to, timeout).await?;
        let exchange = async {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            let request = Request::get(path).header(http::header::HOST, host).body(Empty::<Bytes>::new())?;
            let response = sender.send_request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            anyhow::Ok((parts.status, parts.headers, String::from_utf8_lossy(&body).into_owned()))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .with_context(|| format!("GET {path} from {to}: no answer within {timeout:?}"))?
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// A "node": a namespace with a bridge that pods attach to.
#[derive(Debug)]
pub struct Lab {
    pub node: Netns,
    subnet: u8,
    next_host: AtomicU8,
}

/// A "pod": a namespace with `eth0` on the lab's bridge.
#[derive(Debug)]
pub struct Pod {
    pub name: String,
    pub ip: Ipv4Addr,
    pub ns: Netns,
}

impl Lab {
    /// A node namespace with bridge `br0` at `10.213.<n>.1/24`. Removes namespaces left by test processes that
    /// no longer exist (a run that was killed before it could clean up).
    pub fn new() -> anyhow::Result<Self> {
        remove_stale_namespaces();
        let subnet = LABS.fetch_add(1, Ordering::Relaxed);
        let node = Netns::create("node")?;
        let lab = Self { node, subnet, next_host: AtomicU8::new(2) };
        lab.node.ip(&["link", "add", BRIDGE, "type", "bridge"])?;
        lab.node.ip(&["addr", "add", &format!("{}/24", lab.node_ip()), "dev", BRIDGE])?;
        lab.node.ip(&["link", "set", BRIDGE, "up"])?;
        Ok(lab)
    }

    /// The node's address on the bridge, where node-level services (the operator) listen.
    pub fn node_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(RANGE[0], RANGE[1], self.subnet, 1)
    }

    /// Where the operator serves xDS on the node.
    pub fn xds_address(&self) -> SocketAddr {
        SocketAddr::new(std::net::IpAddr::V4(self.node_ip()), 15010)
    }

    /// The operator in standalone mode on the node, reading `config_dir`, serving xDS on [`Lab::xds_address`] and
    /// metrics on port 9090 of the node; output in `log`.
    pub fn start_operator(&self, config_dir: &Path, log: &Path) -> anyhow::Result<Process> {
        self.start_operator_with(config_dir, log, &[])
    }

    /// [`Lab::start_operator`] with `extra` flags.
    pub fn start_operator_with(&self, config_dir: &Path, log: &Path, extra: &[String]) -> anyhow::Result<Process> {
        let mut args = vec![
            crate::binaries::path("weft-operator")?.display().to_string(),
            "--config-dir".into(),
            config_dir.display().to_string(),
            "--xds-listen".into(),
            self.xds_address().to_string(),
            "--metrics-listen".into(),
            format!("{}:9090", self.node_ip()),
        ];
        args.extend(extra.iter().cloned());
        self.node.spawn("operator", &args, log)
    }

    /// Where the operator serves certificates (and ADS over TLS) on the node.
    pub fn secure_address(&self) -> SocketAddr {
        SocketAddr::new(std::net::IpAddr::V4(self.node_ip()), 15012)
    }

    /// A new pod namespace attached to the bridge, with the next free address and a default route via the node.
    pub fn pod(&self, name: &str) -> anyhow::Result<Pod> {
        let host = self.next_host.fetch_add(1, Ordering::Relaxed);
        if host > 250 {
            bail!("lab is full");
        }
        let ip = Ipv4Addr::new(RANGE[0], RANGE[1], self.subnet, host);
        let ns = Netns::create(name)?;
        let veth = format!("veth{host}");
        self.node.ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", ns.name()])?;
        self.node.ip(&["link", "set", &veth, "master", BRIDGE, "up"])?;
        ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        ns.ip(&["route", "add", "default", "via", &self.node_ip().to_string()])?;
        Ok(Pod { name: name.to_string(), ip, ns })
    }
}

/// A TCP connection from inside namespace `name` (made within `timeout`), with `TCP_NODELAY`; what
/// [`Netns::connect`] does, for callers that hold only the name (a connector that outlives a borrow).
pub async fn connect_from(name: &str, to: SocketAddr, timeout: Duration) -> anyhow::Result<tokio::net::TcpStream> {
    let name = name.to_string();
    let stream = tokio::task::spawn_blocking(move || {
        enter(&name, move || {
            let stream = std::net::TcpStream::connect_timeout(&to, timeout)?;
            stream.set_nonblocking(true)?;
            stream.set_nodelay(true)?;
            Ok(stream)
        })
    })
    .await??;
    Ok(tokio::net::TcpStream::from_std(stream)?)
}

/// Runs `f` on a new thread that has entered namespace `name`.
fn enter<T, F>(name: &str, f: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> std::io::Result<T> + Send + 'static,
{
    let path = format!("/var/run/netns/{name}");
    let handle = File::open(&path).with_context(|| format!("opening {path}"))?;
    let thread = std::thread::spawn(move || -> std::io::Result<T> {
        let network = Some(rustix::thread::LinkNameSpaceType::Network);
        rustix::thread::move_into_link_name_space(handle.as_fd(), network).map_err(std::io::Error::from)?;
        f()
    });
    let result = thread.join().map_err(|_| anyhow::anyhow!("thread in namespace {name} panicked"))?;
    result.with_context(|| format!("in namespace {name}"))
}

/// Deletes `weft-t<pid>-...` namespaces whose test process is gone.
fn remove_stale_namespaces() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|rest| rest.split('-').next()) else { continue };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

/// Runs `command` to completion; its output, or an error naming it with its stderr.
fn run(command: &mut Command) -> anyhow::Result<Output> {
    let output = command.output().with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!("{command:?} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(output)
}
