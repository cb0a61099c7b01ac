//! Helpers shared by the sink tests: messages, batches whose end the test can
//! wait for, scratch directories, metric samples, captured logs and bounded waits.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::mpsc;

use crate::config::SubscriberOverflow;
use crate::inbox::delivery::{Deliver, FeedMessage};
use crate::inbox::Inbox;
use crate::sink::write_json_line;

/// How long any single wait in these tests may take.
pub(super) const DEADLINE: Duration = Duration::from_secs(20);

/// Awaits `future`, failing the test after [`DEADLINE`].
pub(super) async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, future).await {
        Ok(value) => value,
        Err(_) => panic!("gave up after {DEADLINE:?} waiting for {what}"),
    }
}

/// Probes until `probe` is true, failing the test after [`DEADLINE`].
pub(super) async fn eventually(what: &str, probe: impl FnMut() -> bool) {
    feedvisor_test_support::wait_until(DEADLINE, what, probe).await
}

/// A text message of feed `feed`.
pub(super) fn text(feed: &str, payload: &str) -> FeedMessage {
    FeedMessage::text_for_test(feed, payload)
}

/// `count` numbered text messages, `{"seq":N}` from `first` on.
pub(super) fn numbered(feed: &str, first: usize, count: usize) -> Vec<FeedMessage> {
    (first..first + count).map(|seq| text(feed, &format!(r#"{{"seq":{seq}}}"#))).collect()
}

/// The JSON lines every sink writes for `messages`.
pub(super) fn json_lines(messages: &[FeedMessage]) -> Vec<u8> {
    let mut buffer = Vec::new();
    for message in messages {
        write_json_line(&mut buffer, message);
    }
    buffer
}

/// The subscriber of the inbox the test batches come from; never rung.
struct Unrung;

impl Actor for Unrung {
    type Context = Context<Self>;
}

impl Handler<Deliver> for Unrung {
    type Result = ();

    fn handle(&mut self, _: Deliver, _: &mut Context<Self>) {}
}

/// Makes [`Deliver`] batches, numbered from 0, and waits for sinks to finish them.
pub(super) struct Batches {
    inbox: std::sync::Arc<Inbox>,
    sender: mpsc::UnboundedSender<u64>,
    done: mpsc::UnboundedReceiver<u64>,
    next: u64,
}

impl Batches {
    /// Must run inside an actix system.
    pub(super) fn new() -> Self {
        let (sender, done) = mpsc::unbounded_channel();
        let recipient = Unrung.start().recipient();
        let inbox = Inbox::new(
            0,
            "batches".to_owned(),
            "batches".to_owned(),
            1,
            SubscriberOverflow::DropOldest,
            recipient,
            None,
        );
        Batches { inbox, sender, done, next: 0 }
    }

    /// The next batch.
    pub(super) fn deliver(&mut self, messages: Vec<FeedMessage>) -> Deliver {
        let (number, sender) = (self.next, self.sender.clone());
        self.next += 1;
        let settled = Box::new(move || {
            let _ = sender.send(number);
        });
        Deliver::taken_for_test(self.inbox.clone(), messages, settled)
    }

    /// Waits until the sink has dropped the next batch; returns its number.
    pub(super) async fn finished(&mut self) -> u64 {
        within("a batch to be finished", self.done.recv()).await.expect("probe alive")
    }

    /// Like [`Batches::finished`] with another deadline (for paused-time tests,
    /// whose clock jumps ahead whenever nothing else is ready).
    pub(super) async fn finished_within(&mut self, deadline: Duration) -> u64 {
        match tokio::time::timeout(deadline, self.done.recv()).await {
            Ok(done) => done.expect("probe alive"),
            Err(_) => panic!("gave up after {deadline:?} waiting for a batch to be finished"),
        }
    }

    /// Whether a batch was finished and not yet waited for.
    pub(super) fn try_finished(&mut self) -> Option<u64> {
        self.done.try_recv().ok()
    }
}

/// A directory under the system temp dir, removed (with its contents) on drop.
pub(super) struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub(super) fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir()
            .join(format!("feedvisor-sink-{}-{unique}-{name}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create scratch dir");
        ScratchDir(path)
    }

    pub(super) fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The value of `name{labels}` in the process-wide registry; 0 when absent.
pub(super) fn metric(name: &str, labels: &str) -> f64 {
    let rendered = crate::metrics::install().expect("recorder").render();
    let prefix = format!("{name}{{{labels}}} ");
    rendered.lines().find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok()).unwrap_or(0.0)
}

/// Installs the process-wide recorder, so that sinks built after it count.
pub(super) fn install_metrics() {
    crate::metrics::install().expect("recorder");
}

/// Collects what is logged on this thread (actors of an `#[actix::test]` run
/// on the test's thread), for checking that a failure is reported.
#[derive(Clone, Default)]
pub(super) struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    /// Captures events at `debug` and above until the guard is dropped.
    pub(super) fn capture(&self) -> tracing::subscriber::DefaultGuard {
        // tracing-core takes a lone registered dispatcher for the global one
        // and computes a new callsite's interest from the registering thread's
        // dispatcher: an event first reached on a thread that captures nothing
        // would then be disabled for this one too. A second, idle dispatcher
        // alive for the whole run keeps every callsite's interest per thread.
        static SECOND: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
        SECOND.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(self.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    /// Everything captured so far.
    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned")).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}
