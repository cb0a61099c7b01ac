//! The file sink's `lines` layout: JSON lines appended to a file.
//!
//! The file is opened in append mode when the sink starts; its directory must
//! exist (it is not created: a typo in `path` should be an error, not a new
//! directory). Each batch becomes one buffer, written with one `write_all`
//! and flushed to the operating system (not `fsync`ed), on tokio's blocking
//! pool: a slow disk never stalls the actor's arbiter. The sink holds the
//! [`Deliver`] until the write has finished, so no next batch comes
//! meanwhile and a slow disk fills the subscriber's inbox, where its overflow
//! policy applies; the sink itself never holds more than one batch.
//!
//! When the file cannot be opened or written, the batch is lost and counted
//! (`feedvisor_sink_messages_dropped_total`, reason `open` or `write`), the
//! file is closed, and the next batch tries to open it again. The first
//! failure is logged as an error, and again when the error changes; the
//! return to health is logged with the number of messages lost meanwhile.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use actix::prelude::*;

use crate::inbox::delivery::Deliver;
use crate::metrics::SinkMetrics;
use crate::sink::watch::SinkWatch;
use crate::sink::write_json_line;

/// What failed: the label value of the error and drop metrics.
const OPEN: &str = "open";
/// See [`OPEN`].
const WRITE: &str = "write";

/// Why a batch could not be appended.
#[derive(Debug, thiserror::Error)]
enum JsonLinesFileError {
    /// The file could not be opened (or created).
    #[error("cannot open {} for appending: {source}{hint}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
        /// An explanation for the common case of a missing directory, or empty.
        hint: String,
    },
    /// Writing to the open file failed.
    #[error("cannot write to {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
}

impl JsonLinesFileError {
    /// The metric label.
    fn kind(&self) -> &'static str {
        match self {
            JsonLinesFileError::Open { .. } => OPEN,
            JsonLinesFileError::Write { .. } => WRITE,
        }
    }
}

/// Appends one JSON line per message to a file.
pub(super) struct JsonLinesFileSink {
    /// The subscriber's name, for logs and metric labels.
    name: String,
    /// The file, as configured (already resolved against the config's directory).
    path: PathBuf,
    /// The open file: `None` before the first open, while a write is under way
    /// (it travels to the blocking pool and back), and after a failure (the next
    /// batch opens it again).
    file: Option<File>,
    /// The error being reported while the sink cannot write, so that the same
    /// error is logged once rather than once per batch.
    failing: Option<String>,
    /// Messages lost since the sink started failing, for the recovery log line.
    lost_while_failing: usize,
    /// Written, error and drop counters.
    metrics: SinkMetrics,
    /// Tells the supervisor when this actor stops.
    watch: Option<SinkWatch>,
}

impl JsonLinesFileSink {
    /// A sink named `name` appending to `path`.
    pub(super) fn new(name: &str, path: PathBuf) -> Self {
        JsonLinesFileSink {
            name: name.to_owned(),
            metrics: SinkMetrics::new(name, super::SINK, &[OPEN, WRITE], &[OPEN, WRITE]),
            path,
            file: None,
            failing: None,
            lost_while_failing: 0,
            watch: None,
        }
    }

    /// Reports the actor's stop to the supervisor through `watch`.
    pub(super) fn watched(mut self, watch: SinkWatch) -> Self {
        self.watch = Some(watch);
        self
    }

    /// Records the outcome of a write (or of the first open, `messages` = 0).
    fn finished(&mut self, messages: usize, result: Result<(), JsonLinesFileError>) {
        match result {
            Ok(()) => {
                self.metrics.written(messages);
                if self.failing.take().is_some() {
                    tracing::info!(
                        subscriber = %self.name,
                        path = %self.path.display(),
                        lost = self.lost_while_failing,
                        "file sink is writing again"
                    );
                }
                self.lost_while_failing = 0;
            }
            Err(error) => {
                self.metrics.error(error.kind());
                if messages > 0 {
                    self.metrics.dropped(error.kind(), messages);
                }
                self.lost_while_failing += messages;
                let message = error.to_string();
                if self.failing.as_deref() == Some(message.as_str()) {
                    tracing::debug!(
                        subscriber = %self.name,
                        %error,
                        lost = messages,
                        "file sink still failing"
                    );
                } else {
                    tracing::error!(
                        subscriber = %self.name,
                        %error,
                        lost = messages,
                        "file sink cannot write; it counts what it loses and retries each batch"
                    );
                    self.failing = Some(message);
                }
            }
        }
    }
}

/// Opens `path` for appending, creating the file but not its directory.
fn open(path: &Path) -> Result<File, JsonLinesFileError> {
    OpenOptions::new().append(true).create(true).open(path).map_err(|source| {
        let hint = match path.parent() {
            Some(dir)
                if source.kind() == std::io::ErrorKind::NotFound
                    && !dir.as_os_str().is_empty()
                    && !dir.is_dir() =>
            {
                format!(
                    " (the directory {} does not exist; the file sink does not create it)",
                    dir.display()
                )
            }
            _ if path.is_dir() => {
                " (it is a directory: name a file, or set layout = \"per_message\" \
                 to write one file per message into it)"
                    .to_owned()
            }
            _ => String::new(),
        };
        JsonLinesFileError::Open { path: path.to_owned(), source, hint }
    })
}

/// Appends `buffer` with one write and flushes; runs on the blocking pool.
/// Opens the file first when `file` is `None`. Gives the file back unless it failed.
fn append(
    file: Option<File>,
    path: &Path,
    buffer: &[u8],
) -> (Option<File>, Result<(), JsonLinesFileError>) {
    let mut file = match file {
        Some(file) => file,
        None => match open(path) {
            Ok(file) => file,
            Err(error) => return (None, Err(error)),
        },
    };
    match file.write_all(buffer).and_then(|()| file.flush()) {
        Ok(()) => (Some(file), Ok(())),
        // Closed here; the next batch opens the file again.
        Err(source) => (None, Err(JsonLinesFileError::Write { path: path.to_owned(), source })),
    }
}

/// A blocking task that died (it panicked, or the runtime is shutting down).
fn lost_task(path: &Path, error: tokio::task::JoinError) -> JsonLinesFileError {
    let source = std::io::Error::other(format!("the write task failed: {error}"));
    JsonLinesFileError::Write { path: path.to_owned(), source }
}

impl Actor for JsonLinesFileSink {
    type Context = Context<Self>;

    /// Opens the file off the arbiter thread; batches wait until it is done.
    fn started(&mut self, ctx: &mut Context<Self>) {
        let path = self.path.clone();
        let opening = async move {
            let task_path = path.clone();
            tokio::task::spawn_blocking(move || open(&task_path))
                .await
                .unwrap_or_else(|error| Err(lost_task(&path, error)))
        };
        ctx.wait(opening.into_actor(self).map(|result, sink, _| match result {
            Ok(file) => {
                let path = sink.path.display();
                tracing::debug!(subscriber = %sink.name, %path, "file sink opened its file");
                sink.file = Some(file);
            }
            Err(error) => sink.finished(0, Err(error)),
        }));
    }
}

impl Handler<Deliver> for JsonLinesFileSink {
    type Result = ();

    /// Serializes the batch here, writes it on the blocking pool, and keeps
    /// the mailbox closed (`ctx.wait`) and the `Deliver` alive until it is written.
    fn handle(&mut self, mut deliver: Deliver, ctx: &mut Context<Self>) {
        let messages = deliver.messages();
        let count = messages.len();
        let mut buffer = Vec::with_capacity(count * 160);
        for message in messages {
            write_json_line(&mut buffer, message);
        }
        let file = self.file.take();
        let path = self.path.clone();
        let writing = async move {
            let task_path = path.clone();
            let (file, result) =
                tokio::task::spawn_blocking(move || append(file, &task_path, &buffer))
                    .await
                    .unwrap_or_else(|error| (None, Err(lost_task(&path, error))));
            (file, result, deliver)
        };
        ctx.wait(writing.into_actor(self).map(move |(file, result, deliver), sink, _| {
            sink.file = file;
            sink.finished(count, result);
            // Only now may the inbox ring with the next batch.
            drop(deliver);
        }));
    }
}

#[cfg(test)]
mod tests;
