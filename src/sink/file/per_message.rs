//! The file sink's `per_message` layout: one file per message in the
//! directory `path`, written as its chunks arrive (stream mode), so a message of any size goes to disk
//! in the memory of one batch.
//!
//! A message is written to a hidden `.<name>.part` file beside its final
//! name, `<feed>-<message>-<received>.bin`, and renamed into place when its
//! last chunk is written; a message cut short (an aborted chunk) has its
//! partial file removed and is counted as dropped (reason `aborted`). A whole
//! message (message mode) is written the same way in one go, and so is a
//! discontinuity event, a file holding the event as JSON. Writes happen on
//! tokio's blocking pool while the sink holds the [`Deliver`], so a slow disk
//! fills the subscriber's queue, where its policy applies (use
//! `overflow = "backpressure"` so that nothing is dropped).
//!
//! The directory is not created. When the sink starts it checks that `path`
//! is a directory and logs an error naming the setting that fits if it is
//! not; each message that cannot be written is counted (reason `write`).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;

use crate::inbox::delivery::{Deliver, FeedMessage};
use crate::metrics::SinkMetrics;
use crate::sink::watch::SinkWatch;

/// Label values of the error and drop metrics.
const WRITE: &str = "write";
const ABORTED: &str = "aborted";

/// A message being written.
struct OpenMessage {
    file: File,
    part: PathBuf,
    done: PathBuf,
}

/// Files of the messages under way, by feed and message number.
type OpenMessages = HashMap<(Arc<str>, u64), OpenMessage>;

/// What one chunk asks of the disk.
struct Piece {
    key: (Arc<str>, u64),
    /// The final name, used when the piece starts a message.
    name: String,
    payload: Bytes,
    last: bool,
    aborted: bool,
}

/// What a batch did: messages completed, aborted, and the first error.
#[derive(Default)]
struct Outcome {
    completed: usize,
    aborted: usize,
    failed: usize,
    error: Option<String>,
}

/// Writes each message to its own file in a directory.
pub(super) struct PerMessageFileSink {
    /// The subscriber's name, for logs and metric labels.
    name: String,
    /// Where the files go.
    dir: PathBuf,
    /// Files under way; `None` while a batch is being written on the blocking pool.
    open: Option<OpenMessages>,
    /// Whole messages (message mode) written so far, which number their files.
    whole: u64,
    /// Written, error and drop counters.
    metrics: SinkMetrics,
    /// Tells the supervisor when this actor stops.
    watch: Option<SinkWatch>,
}

impl PerMessageFileSink {
    /// A sink named `name` writing into the directory `dir`.
    pub(super) fn new(name: &str, dir: PathBuf) -> Self {
        PerMessageFileSink {
            name: name.to_owned(),
            metrics: SinkMetrics::new(name, super::SINK, &[WRITE], &[WRITE, ABORTED]),
            dir,
            open: Some(HashMap::new()),
            whole: 0,
            watch: None,
        }
    }

    /// Reports the actor's stop to the supervisor through `watch`.
    pub(super) fn watched(mut self, watch: SinkWatch) -> Self {
        self.watch = Some(watch);
        self
    }
}

/// Why `dir` cannot take the messages' files, if it cannot; runs on the blocking pool.
fn unusable_directory(dir: &Path) -> Option<String> {
    match std::fs::metadata(dir) {
        Ok(metadata) if metadata.is_dir() => None,
        Ok(_) => Some(format!(
            "{} is not a directory: layout = \"per_message\" writes one file per message into \
             a directory; to append JSON lines to this file, set layout = \"lines\"",
            dir.display()
        )),
        Err(error) => Some(format!(
            "cannot use the directory {}: {error} (the file sink does not create it)",
            dir.display()
        )),
    }
}

/// `2026-11-26T01:22:39.639451Z` as a file-name-friendly `20261126T012239.639451Z`.
fn stamp(message: &FeedMessage) -> String {
    humantime::format_rfc3339_micros(message.received_at).to_string().replace(['-', ':'], "")
}

/// What a chunk asks of the disk; a whole message (message mode) takes the
/// next number from `whole`, the sink's own count.
fn piece(message: &FeedMessage, whole: &mut u64) -> Piece {
    let (number, last, aborted) = match message.chunk {
        Some(chunk) => (chunk.message, chunk.last, chunk.aborted),
        None => {
            *whole += 1;
            (*whole, true, false)
        }
    };
    let name = format!("{}-{}-{}.bin", message.feed, number, stamp(message));
    Piece {
        key: (message.feed.clone(), number),
        name,
        payload: message.payload.clone(),
        last,
        aborted,
    }
}

/// Writes a batch's pieces; runs on the blocking pool.
fn write_pieces(dir: &Path, open: &mut OpenMessages, pieces: Vec<Piece>) -> Outcome {
    let mut outcome = Outcome::default();
    for piece in pieces {
        if piece.aborted {
            if let Some(message) = open.remove(&piece.key) {
                drop(message.file);
                let _ = std::fs::remove_file(&message.part);
            }
            outcome.aborted += 1;
            continue;
        }
        let message = match open.entry(piece.key.clone()) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let part = dir.join(format!(".{}.part", piece.name));
                let created =
                    OpenOptions::new().write(true).create(true).truncate(true).open(&part);
                match created {
                    Ok(file) => {
                        entry.insert(OpenMessage { file, part, done: dir.join(&piece.name) })
                    }
                    Err(error) => {
                        outcome.failed += 1;
                        outcome
                            .error
                            .get_or_insert(format!("cannot create {}: {error}", part.display()));
                        continue;
                    }
                }
            }
        };
        if let Err(error) = message.file.write_all(&piece.payload) {
            outcome
                .error
                .get_or_insert(format!("cannot write {}: {error}", message.part.display()));
            if let Some(message) = open.remove(&piece.key) {
                let _ = std::fs::remove_file(&message.part);
            }
            outcome.failed += 1;
            continue;
        }
        if piece.last {
            if let Some(message) = open.remove(&piece.key) {
                let finished = message
                    .file
                    .sync_data()
                    .and_then(|()| std::fs::rename(&message.part, &message.done));
                match finished {
                    Ok(()) => outcome.completed += 1,
                    Err(error) => {
                        let _ = std::fs::remove_file(&message.part);
                        outcome.failed += 1;
                        outcome.error.get_or_insert(format!(
                            "cannot finish {}: {error}",
                            message.done.display()
                        ));
                    }
                }
            }
        }
    }
    outcome
}

impl Actor for PerMessageFileSink {
    type Context = Context<Self>;

    /// Checks the directory off the arbiter thread; batches wait until it is done.
    fn started(&mut self, ctx: &mut Context<Self>) {
        let dir = self.dir.clone();
        let checking = async move {
            tokio::task::spawn_blocking(move || unusable_directory(&dir)).await.ok().flatten()
        };
        ctx.wait(checking.into_actor(self).map(|problem, sink, _| {
            if let Some(error) = problem {
                sink.metrics.error(WRITE);
                tracing::error!(
                    subscriber = %sink.name, %error,
                    "file sink cannot write its messages' files; it counts what it loses"
                );
            }
        }));
    }

    /// Removes what unfinished messages left behind.
    fn stopped(&mut self, _: &mut Context<Self>) {
        for (_, message) in self.open.take().into_iter().flatten() {
            let _ = std::fs::remove_file(&message.part);
        }
    }
}

impl Handler<Deliver> for PerMessageFileSink {
    type Result = ();

    fn handle(&mut self, mut deliver: Deliver, ctx: &mut Context<Self>) {
        let pieces: Vec<Piece> =
            deliver.messages().iter().map(|message| piece(message, &mut self.whole)).collect();
        let mut open = self.open.take().unwrap_or_default();
        let dir = self.dir.clone();
        let writing = async move {
            let task = tokio::task::spawn_blocking(move || {
                let outcome = write_pieces(&dir, &mut open, pieces);
                (open, outcome)
            });
            let result = task.await;
            (result, deliver)
        };
        ctx.wait(writing.into_actor(self).map(|(result, deliver), sink, _| {
            match result {
                Ok((open, outcome)) => {
                    sink.open = Some(open);
                    sink.metrics.written(outcome.completed);
                    sink.metrics.dropped(ABORTED, outcome.aborted);
                    if outcome.failed > 0 {
                        sink.metrics.error(WRITE);
                        sink.metrics.dropped(WRITE, outcome.failed);
                    }
                    if let Some(error) = outcome.error {
                        tracing::error!(subscriber = %sink.name, %error, "file sink cannot write a message");
                    }
                    if outcome.aborted > 0 {
                        tracing::warn!(subscriber = %sink.name, aborted = outcome.aborted, "incomplete messages removed");
                    }
                }
                Err(error) => {
                    // The task died with the files it held: they are closed; start afresh.
                    sink.open = Some(HashMap::new());
                    sink.metrics.error(WRITE);
                    tracing::error!(subscriber = %sink.name, %error, "file sink write task failed");
                }
            }
            drop(deliver);
        }));
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Instant, SystemTime};

    use super::*;
    use crate::inbox::delivery::{Chunk, DataKind};

    fn chunk(
        feed: &str,
        message: u64,
        offset: u64,
        last: bool,
        aborted: bool,
        data: &[u8],
    ) -> FeedMessage {
        FeedMessage {
            feed: feed.into(),
            topic: None,
            kind: DataKind::Binary,
            payload: Bytes::copy_from_slice(data),
            received_at: SystemTime::UNIX_EPOCH,
            received: Instant::now(),
            gap_before: None,
            sequence: None,
            chunk: Some(Chunk { message, offset, last, aborted }),
            discontinuity: None,
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("feedvisor-files-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("readable")
            .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn chunks_become_one_file_renamed_into_place_when_complete() {
        let dir = scratch("complete");
        let mut open = OpenMessages::new();
        let first = [chunk("bulk", 1, 0, false, false, b"hello ")]
            .iter()
            .map(|m| piece(m, &mut 0))
            .collect();
        let outcome = write_pieces(&dir, &mut open, first);
        assert_eq!(outcome.completed, 0);
        assert_eq!(
            names(&dir),
            [".bulk-1-19700101T000000.000000Z.bin.part"],
            "hidden while under way"
        );
        let rest =
            [chunk("bulk", 1, 6, true, false, b"world")].iter().map(|m| piece(m, &mut 0)).collect();
        let outcome = write_pieces(&dir, &mut open, rest);
        assert_eq!(outcome.completed, 1);
        assert_eq!(names(&dir), ["bulk-1-19700101T000000.000000Z.bin"]);
        let written = std::fs::read(dir.join("bulk-1-19700101T000000.000000Z.bin")).expect("file");
        assert_eq!(written, b"hello world");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_message_cut_short_leaves_no_file() {
        let dir = scratch("aborted");
        let mut open = OpenMessages::new();
        let pieces =
            [chunk("bulk", 7, 0, false, false, b"part"), chunk("bulk", 7, 4, true, true, b"")]
                .iter()
                .map(|m| piece(m, &mut 0))
                .collect();
        let outcome = write_pieces(&dir, &mut open, pieces);
        assert_eq!((outcome.completed, outcome.aborted), (0, 1));
        assert!(names(&dir).is_empty(), "{:?}", names(&dir));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn whole_messages_get_a_file_each_even_within_one_batch() {
        let dir = scratch("whole");
        let mut open = OpenMessages::new();
        let mut message = chunk("ticks", 0, 0, true, false, b"one");
        message.chunk = None;
        let mut second = message.clone();
        second.payload = Bytes::from_static(b"two");
        let mut whole = 0;
        let pieces = [message, second].iter().map(|m| piece(m, &mut whole)).collect();
        assert_eq!(write_pieces(&dir, &mut open, pieces).completed, 2);
        assert_eq!(names(&dir).len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn interleaved_feeds_keep_their_own_files() {
        let dir = scratch("interleaved");
        let mut open = OpenMessages::new();
        let pieces = [
            chunk("a", 1, 0, false, false, b"a1"),
            chunk("b", 1, 0, false, false, b"b1"),
            chunk("a", 1, 2, true, false, b"a2"),
            chunk("b", 1, 2, true, false, b"b2"),
        ]
        .iter()
        .map(|m| piece(m, &mut 0))
        .collect();
        assert_eq!(write_pieces(&dir, &mut open, pieces).completed, 2);
        let files = names(&dir);
        assert_eq!(files.len(), 2);
        assert_eq!(std::fs::read(dir.join(&files[0])).expect("a"), b"a1a2");
        assert_eq!(std::fs::read(dir.join(&files[1])).expect("b"), b"b1b2");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[actix::test]
    async fn a_file_given_to_the_per_message_layout_is_reported_when_the_sink_starts() {
        use crate::sink::test_support::{eventually, Logs, ScratchDir};
        let logs = Logs::default();
        let _capture = logs.capture();
        let dir = ScratchDir::new("per-message-file");
        let file = dir.join("out.jsonl");
        std::fs::write(&file, b"").expect("create the file");
        let _sink = PerMessageFileSink::new("files-on-a-file", file).start();
        eventually("the error to be logged", || logs.text().contains("ERROR")).await;
        let logged = logs.text();
        assert!(logged.contains("is not a directory"), "{logged}");
        assert!(logged.contains(r#"set layout = "lines""#), "{logged}");
    }
}
