//! A TCP proxy in front of PostgreSQL, to fail the database under a running lull:
//! `restart` drops every connection made so far (as a PostgreSQL restart does) and
//! keeps accepting new ones; `outage` drops them and closes new ones at once for a
//! while; `blackhole` stops answering (a network partition: connections made so
//! far, and new ones, are held open and never answered) until `heal`; `cut`
//! closes the port and every connection for good.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

pub struct PgProxy {
    port: u16,
    upstream: Arc<Mutex<String>>,
    /// Until when a new connection is closed as soon as it is accepted.
    down_until: Arc<Mutex<Option<Instant>>>,
    /// While set, nothing is answered; its sender ends the black hole.
    hole: Arc<Mutex<Option<watch::Sender<()>>>>,
    generation: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl PgProxy {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream = Arc::new(Mutex::new(String::new()));
        let (generation, _) = watch::channel(0u64);
        let down_until = Arc::new(Mutex::new(None::<Instant>));
        let hole = Arc::new(Mutex::new(None::<watch::Sender<()>>));
        let (target, restarts, down) = (upstream.clone(), generation.clone(), down_until.clone());
        let black = hole.clone();
        let task = tokio::spawn(async move {
            // Dropped with this task: cutting the proxy closes every connection.
            let mut connections = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                if down
                    .lock()
                    .unwrap()
                    .is_some_and(|until| Instant::now() < until)
                {
                    continue;
                }
                // Accepted, held, never answered; closed when the hole heals.
                let held = |hole: &Arc<Mutex<Option<watch::Sender<()>>>>| {
                    hole.lock()
                        .unwrap()
                        .as_ref()
                        .map(|healed| healed.subscribe())
                };
                if let Some(mut healed) = held(&black) {
                    connections.spawn(async move {
                        let _client = client;
                        let _ = healed.changed().await;
                    });
                    continue;
                }
                let target = target.lock().unwrap().clone();
                let mut restarted = restarts.subscribe();
                let hole = black.clone();
                connections.spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = restarted.changed() => {}
                    }
                    // A black hole: the connection stays open, silent, until it heals.
                    if let Some(mut healed) = held(&hole) {
                        let _ = healed.changed().await;
                    }
                });
            }
        });
        Self {
            port,
            upstream,
            down_until,
            hole,
            generation,
            task,
        }
    }

    /// `url` through the proxy; where it pointed becomes the proxy's upstream.
    pub fn route(&self, url: &str) -> String {
        let mut url = url::Url::parse(url).unwrap();
        *self.upstream.lock().unwrap() =
            format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(self.port)).unwrap();
        url.to_string()
    }

    /// Closes every connection made so far, as a restart of PostgreSQL would.
    pub fn restart(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// PostgreSQL fails for `length`, as during a failover: every connection made
    /// so far is closed, and a new one is closed as soon as it is accepted, so each
    /// query fails at once (a refused connection would be retried by the pool).
    pub fn outage(&self, length: Duration) {
        *self.down_until.lock().unwrap() = Some(Instant::now() + length);
        self.restart();
    }

    /// Ends an outage early: new connections go through again.
    pub fn end_outage(&self) {
        *self.down_until.lock().unwrap() = None;
    }

    /// A network partition: from now until [`PgProxy::heal`], every connection,
    /// open or new, is held open and never answered.
    pub fn blackhole(&self) {
        *self.hole.lock().unwrap() = Some(watch::channel(()).0);
        self.restart();
    }

    /// Ends the black hole: the connections it held are closed, new ones go
    /// through again.
    pub fn heal(&self) {
        if let Some(healed) = self.hole.lock().unwrap().take() {
            let _ = healed.send(());
        }
    }

    /// Closes the port and every connection through it.
    pub async fn cut(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
