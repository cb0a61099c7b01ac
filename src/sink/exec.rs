//! The exec sink (`sink = "exec"`): JSON lines to a child process's standard input.
//!
//! The child is `command[0]` with the other elements as arguments. Its
//! standard input is a pipe the sink writes the JSON lines to; its standard
//! output is `/dev/null` (so that it can never interleave with feedvisor's own
//! output, such as the stdout sink's lines: a child that wants to emit
//! something should write to a file or a socket); each line of its standard
//! error goes to feedvisor's log as a warning naming the subscriber.
//!
//! The child lives in a task of its own ([`ChildRunner`]), which the actor
//! hands each [`Deliver`] to; the task keeps it until its bytes are in the
//! pipe, so no next batch comes meanwhile. A child that reads
//! slowly therefore fills the subscriber's inbox, where its overflow policy
//! applies; the sink itself never holds more than one batch.
//!
//! When the child exits, or its standard input breaks, the sink logs the exit
//! status and starts it again after a delay from [`RESTART_POLICY`], the
//! policy sink actors are restarted by: 500 ms, doubling on each quick exit up to 30 s,
//! without jitter, back to 500 ms once a child has stayed up for 60 s
//! (`feedvisor_sink_restarts_total` counts the starts after the first).
//! Meanwhile the batch being written waits for the new child, and what
//! arrives after it waits in the subscriber's inbox: nothing is lost to a short
//! outage. The batch is written again from its first line the old child did
//! not take whole, so the new child never sees a torn line; lines already
//! in the old child's pipe but not yet read by it are lost with it. Only when
//! no batch could be written for 30 s since the child failed does the sink
//! drop the batch it holds, and every batch that arrives while no child is
//! running, counting them (`feedvisor_sink_messages_dropped_total`, reason
//! `child_down`), so that a child that cannot start (or that a message makes
//! crash) does not stall the subscriber for ever.
//!
//! When the sink stops, the child's standard input is closed and the child
//! has 3 s to exit before it is killed. The child is also killed if the task
//! is dropped (the runtime shuts down), so none outlives the sidecar.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use actix::prelude::*;
use actix_rt::time::{sleep_until, Instant};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};

use super::watch::SinkWatch;
use super::{SettingsContext, Sink, SinkConfigError, RESTART_POLICY};
use crate::backoff::Backoff;
use crate::inbox::delivery::Deliver;
use crate::metrics::SinkMetrics;
use crate::sink::write_json_line;

/// The `sink` label of the exec sink's metrics.
const SINK: &str = ExecSinkConfig::NAME;

/// How long a batch may wait for a child, counted from the child's failure.
const HOLD_LIMIT: Duration = Duration::from_secs(30);
/// How long a child has to exit once its standard input is closed.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// Longer standard error lines are logged cut to this many bytes.
const MAX_STDERR_LINE: usize = 8 * 1024;

/// Error kinds (metric labels): the child could not be started.
const SPAWN: &str = "spawn";
/// The child's standard input broke.
const WRITE: &str = "write";
/// Drop reasons (metric labels): no child took the batch in time.
const CHILD_DOWN: &str = "child_down";
/// The sink stopped while holding the batch.
const SHUTDOWN: &str = "shutdown";

/// `sink = "exec"`: the program to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecSinkConfig {
    /// The program (found on `PATH` unless it names a path) and its arguments.
    pub command: Vec<String>,
}

/// `sink = "exec"`'s settings as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExecSettings {
    /// The program and its arguments.
    command: Option<Vec<String>>,
}

impl Sink for ExecSinkConfig {
    const NAME: &'static str = "exec";
    type Settings = ExecSettings;

    fn from_settings(settings: ExecSettings, _: &mut dyn SettingsContext) -> Option<Self> {
        Some(ExecSinkConfig { command: settings.command.unwrap_or_default() })
    }

    /// Pure: whether the program exists is found out when the sink starts it.
    fn validate(&self) -> Vec<SinkConfigError> {
        match self.command.first() {
            None => vec![SinkConfigError::new(
                "command",
                "required for sink = \"exec\": the program and its arguments, \
                 such as [\"python3\", \"handler.py\"]",
            )],
            Some(program) if program.is_empty() => {
                vec![SinkConfigError::new("command[0]", "must name a program")]
            }
            Some(_) => Vec::new(),
        }
    }

    fn describe(&self) -> String {
        format!("exec {:?}", self.command)
    }

    fn start(&self, name: &str, watch: SinkWatch) -> Recipient<Deliver> {
        ExecSink::new(name, self.command.clone()).watched(watch).start().recipient()
    }
}

impl ExecSinkConfig {
    /// A one-line description for `feedvisor check`.
    pub fn describe(&self) -> String {
        <Self as Sink>::describe(self)
    }
}

/// Writes JSON lines to a child process, restarting it when it exits.
pub(super) struct ExecSink {
    /// The subscriber's name, for logs and metric labels.
    name: String,
    /// The program and its arguments.
    command: Vec<String>,
    /// Resolved at construction; moved into the runner when the actor starts.
    metrics: Option<SinkMetrics>,
    /// Batches for the runner. Room for one: a subscriber holds one at a time.
    batches: Option<mpsc::Sender<Deliver>>,
    /// Dropped when the actor stops, which tells the runner to stop the child.
    _stop: Option<oneshot::Sender<()>>,
    /// Tells the supervisor when this actor stops.
    watch: Option<SinkWatch>,
}

impl ExecSink {
    /// A sink named `name` that runs `command`.
    pub(super) fn new(name: &str, command: Vec<String>) -> Self {
        let metrics = SinkMetrics::new(name, SINK, &[SPAWN, WRITE], &[CHILD_DOWN, SHUTDOWN]);
        metrics.restarts().increment(0);
        ExecSink {
            name: name.to_owned(),
            command,
            metrics: Some(metrics),
            batches: None,
            _stop: None,
            watch: None,
        }
    }

    /// Reports the actor's stop to the supervisor through `watch`.
    pub(super) fn watched(mut self, watch: SinkWatch) -> Self {
        self.watch = Some(watch);
        self
    }
}

impl Actor for ExecSink {
    type Context = Context<Self>;

    /// Starts the runner, which starts the child at once.
    fn started(&mut self, _: &mut Context<Self>) {
        let Some(metrics) = self.metrics.take() else { return };
        let (batches, receiver) = mpsc::channel(1);
        let (stop, stopped) = oneshot::channel();
        let runner = ChildRunner::new(self.name.clone(), self.command.clone(), metrics);
        actix_rt::spawn(runner.run(receiver, stopped));
        self.batches = Some(batches);
        self._stop = Some(stop);
    }
}

impl Handler<Deliver> for ExecSink {
    type Result = ();

    /// Hands the batch to the runner, which drops it once written.
    fn handle(&mut self, mut deliver: Deliver, ctx: &mut Context<Self>) {
        let Some(batches) = &self.batches else { return };
        // Take the batch now, while the subscriber is the one handling it.
        deliver.messages();
        match batches.try_send(deliver) {
            Ok(()) => {}
            // Only if a sender ignores the one-batch-at-a-time rule: wait, with the mailbox closed.
            Err(mpsc::error::TrySendError::Full(deliver)) => {
                let batches = batches.clone();
                ctx.wait(
                    async move {
                        let _ = batches.send(deliver).await;
                    }
                    .into_actor(self),
                );
            }
            Err(mpsc::error::TrySendError::Closed(mut deliver)) => {
                let lost = deliver.messages().len();
                tracing::error!(subscriber = %self.name, lost, "exec sink runner is gone");
            }
        }
    }
}

/// A started child.
struct RunningChild {
    /// The process (killed if dropped).
    child: Child,
    /// Its standard input, where the lines go.
    stdin: ChildStdin,
    /// Its process id, for logs.
    pid: u32,
    /// When it was started, to tell a quick exit from a healthy run.
    started: Instant,
}

/// What ended a write.
enum Outcome {
    /// Every byte is in the pipe (or the write failed).
    Written(std::io::Result<()>),
    /// The child exited first.
    Exited(std::io::Result<ExitStatus>),
    /// The sink is stopping.
    Stop,
}

/// Owns the child: starts it, writes batches to it, restarts it, stops it.
struct ChildRunner {
    /// The subscriber's name, for logs.
    subscriber: String,
    /// The program and its arguments.
    command: Vec<String>,
    /// Written, error, drop and restart counters.
    metrics: SinkMetrics,
    /// The child, when one is running.
    child: Option<RunningChild>,
    /// The restart delays under [`RESTART_POLICY`]: how many quick exits in a row.
    backoff: Backoff,
    /// When the child may be started (again).
    start_at: Instant,
    /// When the current outage began: the first failure since a batch was
    /// last written or a child last stayed up for the policy's `reset_after`.
    failed_since: Option<Instant>,
    /// Whether a child was started before: later starts are restarts.
    started_before: bool,
}

impl ChildRunner {
    fn new(subscriber: String, command: Vec<String>, metrics: SinkMetrics) -> Self {
        ChildRunner {
            subscriber,
            command,
            metrics,
            child: None,
            backoff: Backoff::new(RESTART_POLICY),
            start_at: Instant::now(),
            failed_since: None,
            started_before: false,
        }
    }

    /// Keeps the child running and writes every batch to it until told to stop.
    async fn run(mut self, mut batches: mpsc::Receiver<Deliver>, mut stop: oneshot::Receiver<()>) {
        loop {
            let deliver = tokio::select! {
                _ = &mut stop => break,
                next = batches.recv() => match next {
                    Some(deliver) => deliver,
                    None => break,
                },
                status = exit_of(&mut self.child) => {
                    self.ended(status, None);
                    continue;
                }
                () = sleep_until(self.start_at), if self.child.is_none() => {
                    self.start();
                    continue;
                }
            };
            if !self.write(deliver, &mut stop).await {
                break;
            }
        }
        batches.close();
        while let Ok(mut deliver) = batches.try_recv() {
            self.metrics.dropped(SHUTDOWN, deliver.messages().len());
        }
        self.stop().await;
    }

    /// Writes one batch, waiting for (re)starts as needed, and drops it once
    /// its bytes are in the pipe or it is given up on. False when told to stop.
    async fn write(&mut self, mut deliver: Deliver, stop: &mut oneshot::Receiver<()>) -> bool {
        let messages = deliver.messages();
        let count = messages.len();
        let mut buffer = Vec::with_capacity(count * 160);
        for message in messages {
            write_json_line(&mut buffer, message);
        }
        // How much of the buffer the current child has taken.
        let mut offset = 0;
        loop {
            if self.child.is_none() {
                let give_up_at = self.failed_since.map(|since| since + HOLD_LIMIT);
                if give_up_at.is_some_and(|at| at <= Instant::now()) {
                    self.metrics.dropped(CHILD_DOWN, count);
                    tracing::warn!(
                        subscriber = %self.subscriber,
                        lost = count,
                        "exec sink dropped a batch: no child has taken one for {HOLD_LIMIT:?}"
                    );
                    return true;
                }
                let wake_at = give_up_at.map_or(self.start_at, |at| at.min(self.start_at));
                tokio::select! {
                    _ = &mut *stop => {
                        self.metrics.dropped(SHUTDOWN, count);
                        return false;
                    }
                    () = sleep_until(wake_at) => {}
                }
                if self.start_at <= Instant::now() {
                    self.start();
                }
                continue;
            }
            let outcome = match self.child.as_mut() {
                Some(running) => tokio::select! {
                    _ = &mut *stop => Outcome::Stop,
                    result = write_from(&mut running.stdin, &buffer, &mut offset) => {
                        Outcome::Written(result)
                    }
                    status = running.child.wait() => Outcome::Exited(status),
                },
                None => continue,
            };
            match outcome {
                Outcome::Written(Ok(())) => {
                    self.metrics.written(count);
                    self.failed_since = None;
                    return true;
                }
                Outcome::Written(Err(error)) => self.broken(error).await,
                Outcome::Exited(status) => self.ended(status, None),
                Outcome::Stop => {
                    self.metrics.dropped(SHUTDOWN, count);
                    return false;
                }
            }
            // The next child gets the batch from the first line the old one did not take whole.
            offset = line_start(&buffer, offset);
        }
    }

    /// Starts the child now; schedules a retry if it cannot be started.
    fn start(&mut self) {
        if self.started_before {
            self.metrics.restarts().increment(1);
        }
        self.started_before = true;
        match self.spawn() {
            Ok(running) => {
                let pid = running.pid;
                tracing::info!(subscriber = %self.subscriber, pid, "exec sink started its child");
                self.child = Some(running);
            }
            Err(error) => {
                self.metrics.error(SPAWN);
                let delay = self.schedule_restart(Duration::ZERO);
                tracing::error!(
                    subscriber = %self.subscriber,
                    program = %self.command.first().map_or("", String::as_str),
                    %error,
                    retry_in = ?delay,
                    "exec sink cannot start its child"
                );
            }
        }
    }

    fn spawn(&self) -> std::io::Result<RunningChild> {
        let Some((program, args)) = self.command.split_first() else {
            return Err(std::io::Error::other("the command is empty"));
        };
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().unwrap_or_default();
        let Some(stdin) = child.stdin.take() else {
            return Err(std::io::Error::other("the child has no standard input pipe"));
        };
        if let Some(stderr) = child.stderr.take() {
            actix_rt::spawn(log_stderr(self.subscriber.clone(), pid, stderr));
        }
        Ok(RunningChild { child, stdin, pid, started: Instant::now() })
    }

    /// The child's standard input broke: make sure it is gone, then as [`ChildRunner::ended`].
    async fn broken(&mut self, error: std::io::Error) {
        self.metrics.error(WRITE);
        let Some(running) = self.child.as_mut() else { return };
        // Usually it has exited already (that is what broke the pipe); if it
        // only closed its standard input it is of no use any more.
        let _ = running.child.start_kill();
        let status = match tokio::time::timeout(STOP_GRACE, running.child.wait()).await {
            Ok(status) => status,
            Err(_) => Err(std::io::Error::other("it did not exit after being killed")),
        };
        self.ended(status, Some(error));
    }

    /// The child is gone: logs how it ended and schedules its restart.
    fn ended(&mut self, status: std::io::Result<ExitStatus>, broken: Option<std::io::Error>) {
        let Some(running) = self.child.take() else { return };
        let up_for = running.started.elapsed();
        let delay = self.schedule_restart(up_for);
        let status = match status {
            Ok(status) => status.to_string(),
            Err(error) => format!("unknown ({error})"),
        };
        let stdin_error = broken.map(|error| error.to_string());
        tracing::warn!(
            subscriber = %self.subscriber,
            pid = running.pid,
            %status,
            stdin_error,
            up_for = ?up_for,
            restart_in = ?delay,
            "exec sink child ended; restarting it"
        );
    }

    /// Sets when the next start may happen, after a child that ran for
    /// `up_for` (zero for one that could not start); returns the delay.
    fn schedule_restart(&mut self, up_for: Duration) -> Duration {
        let now = Instant::now();
        let delay = restart_delay(&mut self.backoff, up_for);
        self.start_at = now + delay;
        if up_for >= self.backoff.policy().reset_after {
            // A healthy child failed: a new outage, however long ago the last one was.
            self.failed_since = Some(now);
        } else {
            self.failed_since.get_or_insert(now);
        }
        delay
    }

    /// Closes the child's standard input, gives it [`STOP_GRACE`] to exit, then kills it.
    async fn stop(&mut self) {
        let Some(RunningChild { mut child, stdin, pid, .. }) = self.child.take() else { return };
        drop(stdin);
        match tokio::time::timeout(STOP_GRACE, child.wait()).await {
            Ok(Ok(status)) => {
                let subscriber = &self.subscriber;
                tracing::info!(%subscriber, pid, %status, "exec sink child exited");
            }
            Ok(Err(error)) => {
                let subscriber = &self.subscriber;
                tracing::warn!(%subscriber, pid, %error, "exec sink cannot wait for its child");
            }
            Err(_) => {
                tracing::warn!(
                    subscriber = %self.subscriber,
                    pid,
                    "exec sink child still runs {STOP_GRACE:?} after its input closed; killing it"
                );
                let _ = child.kill().await;
            }
        }
    }
}

/// The delay before the next start, after a child that ran for `up_for`
/// (zero for one that could not start): the next delay of `backoff`, which
/// starts over when the child was up for the policy's `reset_after`.
fn restart_delay(backoff: &mut Backoff, up_for: Duration) -> Duration {
    backoff.connection_ended(up_for);
    // The policy never gives up (`max_attempts = 0`); its cap stands in if it did.
    backoff.next_delay(&mut rand::rng(), None).unwrap_or(backoff.policy().max)
}

/// The child's exit; never resolves while there is no child.
async fn exit_of(child: &mut Option<RunningChild>) -> std::io::Result<ExitStatus> {
    match child {
        Some(running) => running.child.wait().await,
        None => std::future::pending().await,
    }
}

/// Writes `buffer[*offset..]` and flushes, advancing `offset` as bytes are
/// taken, so that a cancelled or failed write knows how far it got.
async fn write_from(
    stdin: &mut ChildStdin,
    buffer: &[u8],
    offset: &mut usize,
) -> std::io::Result<()> {
    while *offset < buffer.len() {
        match stdin.write(&buffer[*offset..]).await? {
            0 => return Err(std::io::ErrorKind::WriteZero.into()),
            written => *offset += written,
        }
    }
    stdin.flush().await
}

/// Where the line holding byte `offset` starts (the line the child did not get whole).
fn line_start(buffer: &[u8], offset: usize) -> usize {
    buffer[..offset].iter().rposition(|&byte| byte == b'\n').map_or(0, |newline| newline + 1)
}

/// Logs each line of the child's standard error as a warning.
async fn log_stderr(subscriber: String, pid: u32, stderr: ChildStderr) {
    let mut lines = BoundedLines::new(BufReader::new(stderr), MAX_STDERR_LINE);
    while let Some(line) = lines.next_line().await {
        tracing::warn!(subscriber = %subscriber, pid, line = %line, "exec sink child stderr");
    }
}

/// Lines of a reader, each cut to `max` bytes: a child that writes no line
/// break cannot make the sink buffer without bound.
struct BoundedLines<R> {
    /// The buffered reader.
    reader: R,
    /// The longest line returned, in bytes.
    max: usize,
    /// Inside a line that was returned cut: skip to its end.
    skipping: bool,
}

impl<R: AsyncBufRead + Unpin> BoundedLines<R> {
    fn new(reader: R, max: usize) -> Self {
        BoundedLines { reader, max, skipping: false }
    }

    /// The next line, without its line break (lossily decoded); `None` at the end.
    async fn next_line(&mut self) -> Option<String> {
        let mut line = Vec::new();
        loop {
            let available = match self.reader.fill_buf().await {
                Ok(available) => available,
                Err(_) => &[],
            };
            if available.is_empty() {
                return (!line.is_empty()).then(|| String::from_utf8_lossy(&line).into_owned());
            }
            let newline = available.iter().position(|&byte| byte == b'\n');
            let end = newline.unwrap_or(available.len());
            let mut cut = false;
            if !self.skipping {
                let room = self.max - line.len();
                cut = end > room;
                line.extend_from_slice(&available[..end.min(room)]);
            }
            let used = newline.map_or(available.len(), |at| at + 1);
            self.reader.consume(used);
            if self.skipping {
                self.skipping = newline.is_none();
            } else if cut {
                self.skipping = newline.is_none();
                let line = String::from_utf8_lossy(&line);
                return Some(format!("{line} [cut at {} bytes]", self.max));
            } else if newline.is_some() {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Some(String::from_utf8_lossy(&line).into_owned());
            }
        }
    }
}

#[cfg(test)]
#[path = "tests/exec.rs"]
mod tests;
