//! Log lines written by a thread of their own. A tokio worker that logs hands the
//! formatted line to a bounded queue instead of writing to stdout itself, so a slow
//! reader of stdout (`docker logs`, journald, a full pipe) stalls this thread, never
//! the webhooks and replies; under load the thread writes every line queued
//! meanwhile in one go. When the queue is full, lines are dropped rather than waited
//! for, and the thread says how many once it catches up.

use crate::config::LogFormat;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

/// Lines the queue holds before new ones are dropped (about 30 MB of typical lines).
pub const QUEUE_LINES: usize = 128 * 1024;

/// What the queue carries.
enum Item {
    /// One formatted event.
    Line(Vec<u8>),
    /// Write out everything before this, then answer.
    Flush(SyncSender<()>),
}

/// The `MakeWriter` handed to tracing: each event's line goes on the queue.
#[derive(Clone)]
pub struct BackgroundWriter {
    queue: SyncSender<Item>,
    dropped: Arc<AtomicU64>,
}

/// One event being formatted; its line is queued when tracing drops it.
pub struct Line<'a> {
    bytes: Vec<u8>,
    owner: &'a BackgroundWriter,
}

/// Writes out what is queued when dropped (at exit, so the last lines are not
/// lost), waiting at most [`FLUSH_WAIT`] for a stalled stdout.
pub struct FlushGuard {
    queue: SyncSender<Item>,
}

/// How long the thread lets lines gather after each write: at most this late.
pub const PAUSE: Duration = Duration::from_millis(10);

/// How long the guard waits for the queue to be written out at exit.
pub const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// The line that says how many lines were dropped, in the log's own format.
fn drop_notice(format: LogFormat, dropped: u64) -> String {
    let message = format!(
        "{dropped} log lines dropped: the log's reader was too slow and the queue was full"
    );
    match format {
        LogFormat::Text => format!("WARN {message}\n"),
        LogFormat::Json => format!(
            "{}\n",
            serde_json::json!({ "level": "WARN", "message": message })
        ),
    }
}

/// Starts the thread that writes to `out`, with a queue of `capacity` lines.
pub fn spawn<W: Write + Send + 'static>(
    out: W,
    capacity: usize,
    format: LogFormat,
) -> std::io::Result<(BackgroundWriter, FlushGuard)> {
    let (queue, items) = sync_channel(capacity.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    let counter = dropped.clone();
    std::thread::Builder::new()
        .name("lull-log".into())
        .spawn(move || write_lines(out, &items, &counter, format))?;
    Ok((
        BackgroundWriter {
            queue: queue.clone(),
            dropped,
        },
        FlushGuard { queue },
    ))
}

/// Writes each line with every line queued behind it, then flushes once; ends
/// when every sender is gone.
fn write_lines<W: Write>(out: W, items: &Receiver<Item>, dropped: &AtomicU64, format: LogFormat) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut acks = Vec::new();
    while let Ok(first) = items.recv() {
        let mut item = Some(first);
        while let Some(next) = item {
            match next {
                // An unwritable stdout has nobody to report to: the line is lost.
                Item::Line(bytes) => drop(out.write_all(&bytes)),
                Item::Flush(ack) => acks.push(ack),
            }
            item = items.try_recv().ok();
        }
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let _ = out.write_all(drop_notice(format, lost).as_bytes());
        }
        let _ = out.flush();
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
        // Let lines gather: a thread asleep, unlike one waiting on the queue, is not
        // woken by each line, so under load this costs a write every PAUSE.
        std::thread::sleep(PAUSE);
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BackgroundWriter {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            bytes: Vec::new(),
            owner: self,
        }
    }
}

impl Write for Line<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if self.bytes.is_empty() {
            return;
        }
        let line = Item::Line(std::mem::take(&mut self.bytes));
        if let Err(TrySendError::Full(_)) = self.owner.queue.try_send(line) {
            self.owner.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        // Never block the exit for long: a stalled stdout may never take the item.
        let deadline = Instant::now() + FLUSH_WAIT;
        let (ack, done) = sync_channel(1);
        let mut item = Item::Flush(ack);
        loop {
            match self.queue.try_send(item) {
                Ok(()) => {
                    let _ = done.recv_timeout(deadline.saturating_duration_since(Instant::now()));
                    return;
                }
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    item = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::mpsc::Sender;
    use tracing_subscriber::fmt::MakeWriter;

    /// Says when the first write started, then waits for the test to let it go.
    type Gate = (Sender<()>, Receiver<()>);

    /// What the log thread wrote; the first write can be held at a gate.
    #[derive(Clone, Default)]
    struct Output {
        bytes: Arc<Mutex<Vec<u8>>>,
        gate: Arc<Mutex<Option<Gate>>>,
    }

    impl Output {
        /// Holds the first write until the returned sender is dropped; the
        /// returned receiver hears when that write has started.
        fn gated() -> (Self, Sender<()>, Receiver<()>) {
            let (entered, on_entry) = std::sync::mpsc::channel();
            let (release, released) = std::sync::mpsc::channel();
            let output = Output::default();
            *output.gate.lock().unwrap() = Some((entered, released));
            (output, release, on_entry)
        }

        fn text(&self) -> String {
            String::from_utf8(self.bytes.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Output {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Some((entered, released)) = self.gate.lock().unwrap().take() {
                let _ = entered.send(());
                let _ = released.recv();
            }
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn log(writer: &BackgroundWriter, line: &str) {
        writer
            .make_writer()
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    #[test]
    fn lines_are_written_whole_and_in_order_by_the_time_the_guard_is_dropped() {
        let output = Output::default();
        let (writer, guard) = spawn(output.clone(), 1024, LogFormat::Text).unwrap();

        for i in 0..100 {
            log(&writer, &format!("line {i}"));
        }
        drop(guard);

        let expected: String = (0..100).map(|i| format!("line {i}\n")).collect();
        assert_eq!(output.text(), expected);
    }

    #[test]
    fn a_stalled_output_drops_what_the_queue_cannot_hold_and_then_says_how_many() {
        let (output, release, on_entry) = Output::gated();
        let (writer, guard) = spawn(output.clone(), 2, LogFormat::Text).unwrap();
        log(&writer, "first");
        on_entry.recv().unwrap();

        // The output is stalled: none of these may wait for it.
        for i in 0..10 {
            log(&writer, &format!("line {i}"));
        }
        drop(release);
        drop(guard);

        assert_eq!(
            output.text(),
            "first\nline 0\nline 1\n\
             WARN 8 log lines dropped: the log's reader was too slow and the queue was full\n"
        );
    }

    #[test]
    fn the_drop_notice_of_a_json_log_is_a_json_line() {
        let line = drop_notice(LogFormat::Json, 3);
        let value: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(value["level"], "WARN");
        assert!(
            value["message"]
                .as_str()
                .unwrap()
                .starts_with("3 log lines dropped")
        );
    }
}
