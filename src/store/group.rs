//! Group commit: concurrent callers' writes of one kind share one statement.
//!
//! Each commit costs PostgreSQL a round trip and a WAL flush however few rows it
//! holds, so rows that share a commit are far cheaper (docs/design.md). Each write
//! lull makes per message or per reply therefore goes through a [`Group`]: a caller
//! queues its request and waits; a flusher takes every request queued so far (up to
//! a maximum) and runs them as one statement. Nothing waits on a timer: requests
//! group only while earlier flushes are busy, so grouping grows with the load and
//! adds no latency when idle.
//!
//! Each caller is answered only after the statement holding its request committed.
//! If PostgreSQL refuses a grouped statement, every request in it is run again
//! alone, so one bad request (a value PostgreSQL refuses, a deadlock with another
//! group) fails alone and never costs the others; if PostgreSQL cannot be reached,
//! every request fails at once.
//!
//! Each kind counts its statements and the requests they carried
//! (`lull_db_group_statements_total`, `lull_db_group_requests_total`): their ratio is
//! the group size, which says how much the grouping is saving.
//!
//! Invariant 1 of docs/design.md: no caller is answered before its row is committed.

use super::StoreError;
use crate::metrics::Metrics;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc, oneshot};

type Reply<Resp> = oneshot::Sender<Result<Resp, StoreError>>;
type Flush<Req, Resp> = Arc<
    dyn Fn(Arc<[Req]>) -> Pin<Box<dyn Future<Output = Result<Vec<Resp>, StoreError>> + Send>>
        + Send
        + Sync,
>;

/// Sizes of a [`Group`].
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    /// Most requests in one statement.
    pub max_requests: usize,
    /// Statements of this kind running at once (database connections it may hold).
    pub flushers: usize,
    /// Longest a statement may run: past it, its callers get
    /// [`StoreError::TimedOut`] and the flusher is free for the next group.
    pub timeout: std::time::Duration,
}

/// A queue of writes of one kind, flushed in groups. Cloning shares the queue.
pub struct Group<Req, Resp> {
    queue: mpsc::UnboundedSender<(Req, Reply<Resp>)>,
}

impl<Req, Resp> Clone for Group<Req, Resp> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<Req, Resp> Group<Req, Resp>
where
    Req: Clone + Send + Sync + 'static,
    Resp: Send + 'static,
{
    /// Starts the flusher. `flush` runs a group as one statement and returns one
    /// response per request, in order. The flusher ends when every clone is dropped.
    pub fn spawn<F, Fut>(
        name: &'static str,
        limits: GroupLimits,
        metrics: Arc<Metrics>,
        flush: F,
    ) -> Self
    where
        F: Fn(Arc<[Req]>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Resp>, StoreError>> + Send + 'static,
    {
        let flush: Flush<Req, Resp> = Arc::new(move |group| Box::pin(flush(group)));
        let (queue, requests) = mpsc::unbounded_channel();
        tokio::spawn(run(name, limits, metrics, flush, requests));
        Self { queue }
    }

    /// Queues `request` and waits until the statement holding it has committed.
    pub async fn submit(&self, request: Req) -> Result<Resp, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((request, reply))
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn run<Req, Resp>(
    name: &'static str,
    limits: GroupLimits,
    metrics: Arc<Metrics>,
    flush: Flush<Req, Resp>,
    mut requests: mpsc::UnboundedReceiver<(Req, Reply<Resp>)>,
) where
    Req: Clone + Send + Sync + 'static,
    Resp: Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.flushers.max(1)));
    let max = limits.max_requests.max(1);
    while let Some(first) = requests.recv().await {
        // Wait for a free flusher first: whatever queues meanwhile joins this group.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut group = vec![first];
        while group.len() < max {
            match requests.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let (flush, metrics) = (flush.clone(), metrics.clone());
        tokio::spawn(async move {
            flush_group(name, &flush, limits.timeout, &metrics, group).await;
            drop(slot);
        });
    }
}

async fn flush_group<Req: Clone + Sync, Resp>(
    name: &'static str,
    flush: &Flush<Req, Resp>,
    timeout: std::time::Duration,
    metrics: &Metrics,
    group: Vec<(Req, Reply<Resp>)>,
) {
    // A statement whose connection hangs (a partition) is given up: it may still
    // commit, but its callers are told it failed (a webhook's 503 makes the
    // platform retry, and the retry finds the row stored).
    let flush = |requests: Arc<[Req]>| async move {
        match tokio::time::timeout(timeout, flush(requests)).await {
            Ok(answer) => answer,
            Err(_) => Err(StoreError::TimedOut(timeout)),
        }
    };
    let (batch, replies): (Vec<Req>, Vec<Reply<Resp>>) = group.into_iter().unzip();
    let size = batch.len();
    let kind = [("kind", name)];
    metrics.inc("lull_db_group_statements_total", &kind);
    metrics.add("lull_db_group_requests_total", &kind, size as u64);
    // Shared, not copied: a request (a webhook's messages and payloads) can be large.
    let batch: Arc<[Req]> = batch.into();
    let error = match flush(batch.clone()).await {
        Ok(answers) if answers.len() == size => {
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(Ok(answer));
            }
            return;
        }
        Ok(answers) => {
            StoreError::Unavailable(format!("{} answers for {size} requests", answers.len()))
        }
        Err(error) => error,
    };
    if size == 1 || !error.is_refusal() {
        // Alone already, or PostgreSQL unreachable: running each again alone would
        // only make every caller wait for the same failure once more.
        let reason = error.to_string();
        let mut replies = replies.into_iter();
        if let Some(first) = replies.next() {
            let _ = first.send(Err(error));
        }
        for reply in replies {
            let _ = reply.send(Err(StoreError::Unavailable(reason.clone())));
        }
        return;
    }
    tracing::warn!(group = name, size, %error, "grouped write refused; writing each request alone");
    metrics.inc("lull_db_group_refused_total", &kind);
    let mut unreachable: Option<String> = None;
    for (request, reply) in batch.iter().zip(replies) {
        if let Some(reason) = &unreachable {
            // PostgreSQL stopped answering meanwhile: the rest would each wait for
            // the same failure (a connection timeout apiece), one after the other.
            let _ = reply.send(Err(StoreError::Unavailable(reason.clone())));
            continue;
        }
        let answer = match flush(Arc::from([request.clone()])).await {
            Ok(answers) => <[Resp; 1]>::try_from(answers)
                .map(|[answer]| answer)
                .map_err(|answers| {
                    StoreError::Unavailable(format!("{} answers for 1 request", answers.len()))
                }),
            Err(error) => Err(error),
        };
        if let Err(error) = &answer {
            if !error.is_refusal() {
                unreachable = Some(error.to_string());
            }
        }
        let _ = reply.send(answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    /// A flush that records group sizes, doubles each number, refuses 13, and
    /// takes a while so that requests pile up behind it.
    fn doubling(sizes: Arc<Mutex<Vec<usize>>>, metrics: Arc<Metrics>) -> Group<i64, i64> {
        Group::spawn(
            "test",
            GroupLimits {
                max_requests: 50,
                flushers: 1,
                timeout: Duration::from_secs(5),
            },
            metrics,
            move |group: Arc<[i64]>| {
                let sizes = sizes.clone();
                async move {
                    sizes.lock().unwrap().push(group.len());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if group.contains(&13) {
                        return Err(StoreError::SameRow("13".into()));
                    }
                    Ok(group.iter().map(|n| n * 2).collect())
                }
            },
        )
    }

    #[tokio::test]
    async fn concurrent_requests_share_a_flush_and_each_gets_its_own_answer() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let group = doubling(sizes.clone(), Arc::default());
        let answers = futures_join((20..120).map(|n| (n, group.clone())).collect::<Vec<_>>()).await;
        for (n, answer) in answers {
            assert_eq!(answer.unwrap(), n * 2);
        }
        let sizes = sizes.lock().unwrap();
        assert!(sizes.len() < 100, "no grouping happened: {sizes:?}");
        assert!(
            sizes.iter().all(|&s| s <= 50),
            "a group exceeded its limit: {sizes:?}"
        );
    }

    #[tokio::test]
    async fn a_refused_request_fails_alone_and_its_group_is_still_written() {
        let group = doubling(Arc::new(Mutex::new(Vec::new())), Arc::default());
        let answers =
            futures_join(vec![(12, group.clone()), (13, group.clone()), (14, group)]).await;
        for (n, answer) in answers {
            match n {
                13 => assert!(answer.is_err()),
                _ => assert_eq!(answer.unwrap(), n * 2),
            }
        }
    }

    #[tokio::test]
    async fn each_statement_counts_itself_and_the_requests_it_carried() {
        let (sizes, metrics) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(Metrics::default()),
        );
        let group = doubling(sizes.clone(), metrics.clone());
        futures_join((20..120).map(|n| (n, group.clone())).collect::<Vec<_>>()).await;
        futures_join(vec![(12, group.clone()), (13, group)]).await;

        let kind = [("kind", "test")];
        let sizes = sizes.lock().unwrap();
        // The refused group of two, and each of its requests alone after it.
        assert_eq!(
            metrics.counter("lull_db_group_statements_total", &kind),
            sizes.len() as u64 - 2
        );
        assert_eq!(metrics.counter("lull_db_group_requests_total", &kind), 102);
        assert_eq!(metrics.counter("lull_db_group_refused_total", &kind), 1);
    }

    #[tokio::test]
    async fn once_the_database_is_unreachable_the_rest_of_a_refused_group_fails_at_once() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = calls.clone();
        let group = Group::spawn(
            "test",
            GroupLimits {
                max_requests: 50,
                flushers: 1,
                timeout: Duration::from_secs(5),
            },
            Arc::default(),
            move |group: Arc<[i64]>| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(group.to_vec());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    match group.len() {
                        1 => Err(StoreError::Unavailable("connection timed out".into())),
                        _ => Err(StoreError::SameRow("deadlock".into())),
                    }
                }
            },
        );
        let answers = futures_join(vec![(1, group.clone()), (2, group.clone()), (3, group)]).await;

        assert!(answers.iter().all(|(_, answer)| answer.is_err()));
        let calls = calls.lock().unwrap();
        assert_eq!(
            *calls,
            [vec![1, 2, 3], vec![1]],
            "one try alone, then no more"
        );
    }

    async fn futures_join(
        requests: Vec<(i64, Group<i64, i64>)>,
    ) -> Vec<(i64, Result<i64, StoreError>)> {
        let tasks: Vec<_> = requests
            .into_iter()
            .map(|(n, group)| tokio::spawn(async move { (n, group.submit(n).await) }))
            .collect();
        let mut out = Vec::new();
        for task in tasks {
            out.push(task.await.unwrap());
        }
        out
    }
}
