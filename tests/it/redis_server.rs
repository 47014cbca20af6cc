//! Redis servers owned by a test: a standalone one that can be killed and
//! restarted empty, and a 3-master cluster. Each runs on free ports in a temp dir
//! and is shut down when dropped. The shared Redis on 6379 is never flushed.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn start_server(port: u16, dir: &PathBuf, extra: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    let status = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir)
        .args(["--daemonize", "yes", "--logfile"])
        .arg(dir.join("redis.log"))
        .args(extra)
        .status()
        .expect("redis-server is installed");
    assert!(status.success(), "redis-server failed to start on {port}");
    wait_until("redis-server", Duration::from_secs(10), || {
        cli(port, &["ping"]).as_deref() == Some("PONG")
    });
}

fn stop_server(port: u16) {
    let _ = cli(port, &["shutdown", "nosave"]);
    wait_until("redis-server to stop", Duration::from_secs(10), || {
        cli(port, &["ping"]).is_none()
    });
}

/// A standalone Redis of the test's own.
pub struct OwnRedis {
    pub port: u16,
    dir: tempfile::TempDir,
}

impl OwnRedis {
    pub fn start() -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        start_server(port, &dir.path().to_path_buf(), &[]);
        Self { port, dir }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server; everything in it is gone (no persistence).
    pub fn kill(&self) {
        stop_server(self.port);
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&self) {
        start_server(self.port, &self.dir.path().to_path_buf(), &[]);
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = cli(self.port, &["shutdown", "nosave"]);
    }
}

/// A Redis Cluster of three masters, no replicas.
pub struct OwnCluster {
    pub ports: [u16; 3],
    _dir: tempfile::TempDir,
}

impl OwnCluster {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ports = [free_port(), free_port(), free_port()];
        for port in ports {
            let node_dir = dir.path().join(port.to_string());
            start_server(
                port,
                &node_dir,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ],
            );
        }
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "redis-cli --cluster create failed");
        wait_until("cluster state ok", Duration::from_secs(20), || {
            ports.iter().all(|p| {
                cli(*p, &["cluster", "info"]).is_some_and(|info| info.contains("cluster_state:ok"))
            })
        });
        Self { ports, _dir: dir }
    }

    /// fred's cluster URL.
    pub fn url(&self) -> String {
        format!(
            "redis-cluster://127.0.0.1:{}?node=127.0.0.1:{}&node=127.0.0.1:{}",
            self.ports[0], self.ports[1], self.ports[2]
        )
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        for port in self.ports {
            let _ = cli(port, &["shutdown", "nosave"]);
        }
    }
}

/// Runs a blocking [`OwnRedis`] operation (kill, restart) off the runtime's threads.
pub async fn blocking(redis: &std::sync::Arc<OwnRedis>, op: fn(&OwnRedis)) {
    let redis = redis.clone();
    tokio::task::spawn_blocking(move || op(&redis))
        .await
        .unwrap();
}
