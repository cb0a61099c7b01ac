//! The upstream of every benchmark: a WebSocket server built to cost as
//! little CPU as it can, on a thread of its own (pinned to its own core when
//! the machine has two), so that what is measured is the client.
//!
//! A job goes like this: the client asks for one ([`Blaster::prepare`]) and
//! gets a port; the blaster accepts exactly the job's number of connections
//! and answers each handshake with the minimum (no header but the accept
//! key); it tells the client when all are open ([`BlastJob::ready`]) and
//! waits for the word ([`BlastJob::go`]) before it sends anything. Then each
//! connection gets its fixed count of text frames, pre-encoded and written in
//! batches of about [`WRITE_BYTES`], with the send time patched into the
//! first frame of every batch (see [`frames`](crate::frames)), at full speed or at a
//! fixed rate, and then a close frame. The report says what the blaster's
//! thread spent on the job and, at a fixed rate, how well it kept its
//! schedule, so that a run in which the blaster was itself a bottleneck can
//! be marked invalid.
//!
//! At a fixed rate the blaster's thread paces the job itself, without the
//! reactor or a timer per connection (tokio's timers fire up to 2 ms late,
//! and a wake-up per message would cost the blaster more than the writes):
//! every [`ROUND`] it hands each connection the messages that have fallen
//! due, and sleeps until the next one is. A message handed over more than
//! [`LATE_AFTER`] after it was due is *late*; a socket that is full (the
//! client is not reading) does not make the blaster late: what it does not
//! take waits in the blaster's queue for that connection, counted as handed
//! over on time, and its wait shows in the client's latency. The thread
//! does nothing else meanwhile: the job has all of it.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::cpu;
use crate::frames::{frame_len, nanos_since, upgrade, Frames, CLOSE_FRAME};
use crate::scenario::BenchError;

/// About how many bytes the blaster writes at once.
pub const WRITE_BYTES: usize = 64 * 1024;

/// How long a finished connection waits for the client to hang up.
const LINGER: Duration = Duration::from_secs(5);

/// At a fixed rate, a message handed over more than this long after it was
/// due counts as late.
pub const LATE_AFTER: Duration = Duration::from_millis(1);

/// At a fixed rate, the shortest time between two rounds of writes: the
/// messages of a connection that fall due within one round go in one write.
/// Well under [`LATE_AFTER`], so that a message is late only when the
/// blaster's thread was held up (it lost its core, or had too much to write).
pub const ROUND: Duration = Duration::from_micros(250);

/// At a fixed rate, the most a connection writes of its queue in one round
/// (1 GB/s at one round each [`ROUND`], twice what one connection ever took).
const FLUSH_BYTES: usize = 4 * WRITE_BYTES;

/// How fast the blaster sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As fast as the client reads (TCP flow control sets the pace).
    Saturate,
    /// Open loop: this many messages per second on each connection, whether
    /// or not the client keeps up. The connections' schedules are spread
    /// evenly over one period; messages of a connection that fall due within
    /// one [`ROUND`] go in one write.
    Rate {
        /// Messages per second per connection.
        per_conn: f64,
    },
}

/// What one job sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobSpec {
    /// Connections to accept before sending.
    pub conns: usize,
    /// Payload bytes of every message (at least [`MIN_SIZE`](crate::frames::MIN_SIZE)).
    pub size: usize,
    /// Messages on each connection.
    pub per_conn: u64,
    /// How fast.
    pub pace: Pace,
}

/// What the blaster did for one job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlastReport {
    /// Messages written, over all connections.
    pub sent: u64,
    /// CPU time of the blaster's thread from the go to the last close frame written.
    pub cpu: Duration,
    /// Wall time from the go to the last close frame written.
    pub wall: Duration,
    /// At a fixed rate: the longest any message waited past its due time
    /// before the blaster handed it over.
    pub max_lag: Duration,
    /// At a fixed rate: messages handed over more than [`LATE_AFTER`] after
    /// they were due.
    pub late: u64,
}

/// A job's request to the blaster thread.
struct Prepare {
    spec: JobSpec,
    reply: oneshot::Sender<io::Result<BlastJob>>,
}

/// The blaster thread.
pub struct Blaster {
    /// Where jobs are asked for; dropping it ends the thread.
    commands: Option<mpsc::UnboundedSender<Prepare>>,
    /// The thread's kernel id, which the client leaves out of its CPU time.
    thread_id: u32,
    /// The core it is pinned to, if it is.
    core: Option<usize>,
    thread: Option<JoinHandle<()>>,
}

impl Blaster {
    /// Starts the blaster thread, pinned to `core` if given. Stamps count
    /// nanoseconds from `base`, which the client must share.
    pub fn start(
        core: Option<core_affinity::CoreId>,
        base: Instant,
    ) -> Result<Blaster, BenchError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| BenchError::io("build the blaster's runtime", source))?;
        let (commands, receiver) = mpsc::unbounded_channel::<Prepare>();
        let (started, thread_id) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("bench-blaster".to_owned())
            .spawn(move || {
                let pinned = core.is_some_and(core_affinity::set_for_current);
                let _ = started.send(cpu::current_thread_id().map(|id| (id, pinned)));
                blaster_thread(&runtime, receiver, base);
            })
            .map_err(|source| BenchError::io("start the blaster thread", source))?;
        let (thread_id, pinned) = thread_id
            .recv()
            .map_err(|_| BenchError::Blaster("the blaster thread died at start".to_owned()))?
            .map_err(|source| BenchError::io("read the blaster's thread id", source))?;
        Ok(Blaster {
            commands: Some(commands),
            thread_id,
            core: core.filter(|_| pinned).map(|core| core.id),
            thread: Some(thread),
        })
    }

    /// The blaster thread's kernel id.
    pub fn thread_id(&self) -> u32 {
        self.thread_id
    }

    /// The core the blaster runs on, when it is pinned.
    pub fn core(&self) -> Option<usize> {
        self.core
    }

    /// Opens a listener for one job; the blaster then waits for the job's connections.
    pub async fn prepare(&self, spec: JobSpec) -> Result<BlastJob, BenchError> {
        let gone = || BenchError::Blaster("the blaster thread has stopped".to_owned());
        let (reply, answer) = oneshot::channel();
        self.commands
            .as_ref()
            .ok_or_else(gone)?
            .send(Prepare { spec, reply })
            .map_err(|_| gone())?;
        answer
            .await
            .map_err(|_| gone())?
            .map_err(|source| BenchError::io("open the blaster's listener", source))
    }
}

impl Drop for Blaster {
    fn drop(&mut self) {
        self.commands = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The blaster thread's life: one job after another until the `Blaster` is dropped.
///
/// Never inlined: the callgrind recipe (`tests/bench_recipe/callgrind.sh`)
/// tells the blaster's thread from the client's by this function's name.
#[inline(never)]
fn blaster_thread(
    runtime: &tokio::runtime::Runtime,
    mut commands: mpsc::UnboundedReceiver<Prepare>,
    base: Instant,
) {
    runtime.block_on(async move {
        while let Some(Prepare { spec, reply }) = commands.recv().await {
            let _ = reply.send(open_job(spec, base).await);
        }
    });
}

/// The client's handle on one job. Dropping it before the go cancels the job.
pub struct BlastJob {
    /// Where the job's connections go.
    pub addr: SocketAddr,
    ready: Option<oneshot::Receiver<Result<(), String>>>,
    go: Option<oneshot::Sender<()>>,
    report: Option<oneshot::Receiver<Result<BlastReport, String>>>,
}

impl BlastJob {
    /// Waits until the blaster has accepted every connection and answered its handshake.
    pub async fn ready(&mut self, timeout: Duration) -> Result<(), BenchError> {
        let Some(ready) = self.ready.take() else { return Ok(()) };
        match tokio::time::timeout(timeout, ready).await {
            Err(_) => Err(BenchError::Blaster(format!(
                "the connections did not all open within {timeout:?}"
            ))),
            Ok(Err(_)) => Err(BenchError::Blaster("the job ended before it was ready".to_owned())),
            Ok(Ok(result)) => result.map_err(BenchError::Blaster),
        }
    }

    /// Lets the blaster send.
    pub fn go(&mut self) {
        if let Some(go) = self.go.take() {
            let _ = go.send(());
        }
    }

    /// Waits for the blaster to finish writing and report.
    pub async fn report(&mut self, timeout: Duration) -> Result<BlastReport, BenchError> {
        let report = self
            .report
            .take()
            .ok_or_else(|| BenchError::Blaster("the report was already taken".to_owned()))?;
        match tokio::time::timeout(timeout, report).await {
            Err(_) => Err(BenchError::Blaster(format!("no report within {timeout:?}"))),
            Ok(Err(_)) => Err(BenchError::Blaster("the job ended without a report".to_owned())),
            Ok(Ok(result)) => result.map_err(BenchError::Blaster),
        }
    }
}

/// Binds a listener for `spec` and starts the job's task.
async fn open_job(spec: JobSpec, base: Instant) -> io::Result<BlastJob> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let (ready_sender, ready) = oneshot::channel();
    let (go, go_receiver) = oneshot::channel();
    let (report_sender, report) = oneshot::channel();
    tokio::spawn(run_job(listener, spec, base, ready_sender, go_receiver, report_sender));
    Ok(BlastJob { addr, ready: Some(ready), go: Some(go), report: Some(report) })
}

/// One job: accept, wait for the go, send, report.
async fn run_job(
    listener: TcpListener,
    spec: JobSpec,
    base: Instant,
    mut ready: oneshot::Sender<Result<(), String>>,
    go: oneshot::Receiver<()>,
    report: oneshot::Sender<Result<BlastReport, String>>,
) {
    let streams = tokio::select! {
        accepted = accept_all(&listener, spec.conns) => accepted,
        () = ready.closed() => return,
    };
    drop(listener);
    let streams = match streams {
        Ok(streams) => streams,
        Err(error) => {
            let _ = ready.send(Err(format!("accepting connections failed: {error}")));
            return;
        }
    };
    if ready.send(Ok(())).is_err() || go.await.is_err() {
        return;
    }
    let cpu_before = cpu::current_thread_cpu();
    let started = Instant::now();
    let mut senders = JoinSet::new();
    let mut sent = 0;
    let mut kept = Schedule::default();
    let mut failure = None;
    match spec.pace {
        Pace::Saturate => {
            for stream in streams {
                senders.spawn(saturate(stream, spec, base));
            }
        }
        // Blocks this thread until every message is handed over.
        Pace::Rate { per_conn } => match pace(streams, spec, per_conn, base) {
            Ok((connections, schedule)) => {
                kept = schedule;
                sent = spec.per_conn * connections.len() as u64;
                for connection in connections {
                    senders.spawn(connection.finish());
                }
            }
            Err(error) => failure = Some(format!("sending failed: {error}")),
        },
    }
    while let Some(joined) = senders.join_next().await {
        match joined {
            Ok(Ok(written)) => sent += written,
            Ok(Err(error)) => failure = failure.or(Some(format!("sending failed: {error}"))),
            Err(error) => failure = failure.or(Some(format!("a sender died: {error}"))),
        }
    }
    let wall = started.elapsed();
    let result = match (failure, cpu_before, cpu::current_thread_cpu()) {
        (Some(failure), _, _) => Err(failure),
        (None, Ok(before), Ok(after)) => Ok(BlastReport {
            sent,
            cpu: after.saturating_sub(before),
            wall,
            max_lag: kept.max_lag,
            late: kept.late,
        }),
        (None, Err(error), _) | (None, _, Err(error)) => {
            Err(format!("reading CPU time failed: {error}"))
        }
    };
    let _ = report.send(result);
}

/// Accepts `conns` connections and completes their handshakes.
async fn accept_all(listener: &TcpListener, conns: usize) -> io::Result<Vec<TcpStream>> {
    let mut handshakes = JoinSet::new();
    for index in 0..conns {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        handshakes.spawn(async move { handshake(stream).await.map(|stream| (index, stream)) });
    }
    let mut streams: Vec<Option<TcpStream>> = (0..conns).map(|_| None).collect();
    while let Some(joined) = handshakes.join_next().await {
        let (index, stream) = joined.map_err(io::Error::other)??;
        streams[index] = Some(stream);
    }
    Ok(streams.into_iter().flatten().collect())
}

/// Reads the upgrade request and answers it with the accept key and nothing else.
async fn handshake(mut stream: TcpStream) -> io::Result<TcpStream> {
    upgrade(&mut stream).await?;
    Ok(stream)
}

/// Sends one connection's messages as fast as the client reads them, then
/// the close frame; returns how many it sent.
async fn saturate(stream: TcpStream, spec: JobSpec, base: Instant) -> io::Result<u64> {
    let mut socket = PatientSocket::new(stream)?;
    let mut frames = Frames::new(spec.size, (WRITE_BYTES / frame_len(spec.size)).max(1));
    let mut sent = 0u64;
    while sent < spec.per_conn {
        sent += write_batch(&mut frames, &mut socket, spec.per_conn - sent, base).await?;
    }
    socket.write_all(&CLOSE_FRAME).await?;
    tokio::spawn(linger(socket.into_stream()?));
    Ok(sent)
}

/// How well a fixed-rate job kept its schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Schedule {
    /// The longest any message waited past its due time.
    max_lag: Duration,
    /// Messages handed over more than [`LATE_AFTER`] after they were due.
    late: u64,
}

/// One connection of a fixed-rate job.
struct Paced {
    socket: PatientSocket,
    /// When its first message is due; message `k` is due `k / rate` later.
    start: Instant,
    /// Messages handed over so far: written, or queued behind a full socket.
    handed: u64,
    /// When the next message (number `handed`) is due.
    next_due: Instant,
    /// Bytes the socket did not take yet, oldest first.
    queued: Queue,
}

/// The bytes a full socket did not take, oldest first, in the batches
/// they were handed over in: a client far behind can leave hundreds of
/// megabytes queued, and neither writing from the front nor adding at the
/// back moves them.
#[derive(Default)]
struct Queue {
    batches: VecDeque<Vec<u8>>,
    /// Bytes of the front batch already written.
    written: usize,
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    fn push(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.batches.push_back(bytes.to_vec());
        }
    }

    /// Writes what `socket` takes now, up to [`FLUSH_BYTES`]: a client that
    /// reads as fast as the blaster writes would otherwise keep it here
    /// while other messages fall due.
    fn write_now(&mut self, socket: &mut PatientSocket) -> io::Result<()> {
        let mut budget = FLUSH_BYTES;
        while let Some(front) = self.batches.front() {
            let end = front.len().min(self.written + budget);
            let written = socket.write_now(&front[self.written..end])?;
            self.written += written;
            budget -= written;
            if self.written < front.len() {
                break;
            }
            self.batches.pop_front();
            self.written = 0;
        }
        Ok(())
    }

    /// Writes all of it, waiting whenever the socket is full.
    async fn write_all(&mut self, socket: &mut PatientSocket) -> io::Result<()> {
        while let Some(front) = self.batches.pop_front() {
            socket.write_all(&front[self.written..]).await?;
            self.written = 0;
        }
        Ok(())
    }
}

impl Paced {
    /// Messages due by `now`, at `rate`, out of `total` (at least those
    /// handed over: rounding must not take a message back).
    fn due(&self, now: Instant, rate: f64, total: u64) -> u64 {
        let elapsed = now.checked_duration_since(self.start);
        due_after(elapsed.map(|elapsed| elapsed.as_secs_f64()), rate, total).max(self.handed)
    }

    /// When message `index` is due.
    fn due_at(&self, index: u64, rate: f64) -> Instant {
        self.start + Duration::from_secs_f64(index as f64 / rate)
    }

    /// Stamps and writes `count` more messages, or queues what the socket does not take.
    fn hand_over(&mut self, frames: &mut Frames, count: u64, base: Instant) -> io::Result<()> {
        self.flush()?;
        let mut left = count;
        while left > 0 {
            let batch = usize::try_from(left).unwrap_or(usize::MAX).min(frames.count());
            frames.stamp(nanos_since(base));
            let bytes = frames.first(batch);
            let written = if self.queued.is_empty() { self.socket.write_now(bytes)? } else { 0 };
            self.queued.push(&bytes[written..]);
            left -= batch as u64;
        }
        self.handed += count;
        Ok(())
    }

    /// Writes what the socket takes of the queue.
    fn flush(&mut self) -> io::Result<()> {
        self.queued.write_now(&mut self.socket)
    }

    /// Writes the rest of the queue and the close frame, then lingers;
    /// returns 0, the messages having been counted when handed over.
    async fn finish(mut self) -> io::Result<u64> {
        self.queued.write_all(&mut self.socket).await?;
        self.socket.write_all(&CLOSE_FRAME).await?;
        tokio::spawn(linger(self.socket.into_stream()?));
        Ok(0)
    }
}

/// How many of a connection's `total` messages at `rate` are due `elapsed`
/// seconds after its first one was (none before that, or for `None`).
fn due_after(elapsed: Option<f64>, rate: f64, total: u64) -> u64 {
    match elapsed {
        Some(elapsed) if elapsed >= 0.0 => ((elapsed * rate) as u64 + 1).min(total),
        _ => 0,
    }
}

/// Sends every connection's messages at `rate` from this thread, blocking
/// it until the last one is handed over; returns the connections (to be
/// finished) and how well the schedule was kept.
fn pace(
    streams: Vec<TcpStream>,
    spec: JobSpec,
    rate: f64,
    base: Instant,
) -> io::Result<(Vec<Paced>, Schedule)> {
    if !(rate > 0.0 && rate.is_finite()) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad rate {rate}")));
    }
    let sockets = streams.into_iter().map(PatientSocket::new).collect::<io::Result<Vec<_>>>()?;
    // The schedule starts once the sockets are out of the reactor (1000 take a few ms).
    let started = Instant::now();
    let count = sockets.len().max(1) as f64;
    let mut connections = Vec::with_capacity(sockets.len());
    for (index, socket) in sockets.into_iter().enumerate() {
        // Spread evenly over one period, so that they do not all send at once.
        let start = started + Duration::from_secs_f64(index as f64 / count / rate);
        let queued = Queue::default();
        connections.push(Paced { socket, start, handed: 0, next_due: start, queued });
    }
    let mut frames = Frames::new(spec.size, (WRITE_BYTES / frame_len(spec.size)).max(1));
    let late_after = LATE_AFTER.as_secs_f64();
    let mut kept = Schedule::default();
    loop {
        let round = Instant::now();
        let mut next: Option<Instant> = None;
        for connection in &mut connections {
            if connection.handed < spec.per_conn && connection.next_due <= round {
                // Read the clock again: the round's writes so far took time.
                let now = Instant::now();
                let due = connection.due(now, rate, spec.per_conn);
                kept.max_lag = kept.max_lag.max(now.saturating_duration_since(connection.next_due));
                // Those due more than LATE_AFTER ago are late.
                let elapsed = now.saturating_duration_since(connection.start).as_secs_f64();
                let overdue = due_after(Some(elapsed - late_after), rate, due);
                kept.late += overdue.saturating_sub(connection.handed);
                connection.hand_over(&mut frames, due - connection.handed, base)?;
                connection.next_due = connection.due_at(connection.handed, rate);
            }
            if connection.handed < spec.per_conn {
                let at = connection.next_due;
                next = Some(next.map_or(at, |next| next.min(at)));
            }
        }
        let Some(next) = next else { break };
        let wake = next.max(round + ROUND);
        let now = Instant::now();
        if wake > now {
            std::thread::sleep(wake - now);
        }
    }
    Ok((connections, kept))
}

/// Stamps `frames` and writes up to `left` of them; returns how many.
async fn write_batch(
    frames: &mut Frames,
    socket: &mut PatientSocket,
    left: u64,
    base: Instant,
) -> io::Result<u64> {
    let count = usize::try_from(left).unwrap_or(usize::MAX).min(frames.count());
    frames.stamp(nanos_since(base));
    socket.write_all(frames.first(count)).await?;
    Ok(count as u64)
}

/// The shortest wait before the blaster writes again to a full socket.
const MIN_PATIENCE: Duration = Duration::from_millis(1);

/// The longest such wait.
const MAX_PATIENCE: Duration = Duration::from_millis(8);

/// A connection's socket, written without the reactor.
///
/// Waiting for a full socket to become writable would wake the blaster each
/// time the client has read a little, which at saturation costs the blaster
/// several times what the writes themselves do. Instead, a full socket is
/// tried again after a pause, which doubles while each pause lets less than
/// a quarter of a batch through (many connections each read slowly) and
/// halves again when more got through. The kernel's buffers (autotuned to
/// hundreds of kilobytes or more) hold more than a pause's worth of any
/// client's reading, so the client does not run dry meanwhile.
struct PatientSocket {
    /// Non-blocking, not registered with the reactor.
    socket: std::net::TcpStream,
    /// The next pause.
    patience: Duration,
    /// Bytes written since the last pause.
    written: usize,
}

impl PatientSocket {
    fn new(stream: TcpStream) -> io::Result<PatientSocket> {
        Ok(PatientSocket { socket: stream.into_std()?, patience: MIN_PATIENCE, written: 0 })
    }

    /// Writes as much of `bytes` as the socket takes now; returns how much.
    fn write_now(&mut self, bytes: &[u8]) -> io::Result<usize> {
        use std::io::Write as _;
        let mut written = 0;
        while written < bytes.len() {
            match self.socket.write(&bytes[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(count) => written += count,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(written)
    }

    /// Writes all of `bytes`, pausing whenever the socket is full.
    async fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        use std::io::Write as _;
        while !bytes.is_empty() {
            match self.socket.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    bytes = &bytes[written..];
                    self.written += written;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => self.pause().await,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    async fn pause(&mut self) {
        self.patience = if self.written < WRITE_BYTES / 4 {
            (self.patience * 2).min(MAX_PATIENCE)
        } else {
            (self.patience / 2).max(MIN_PATIENCE)
        };
        self.written = 0;
        tokio::time::sleep(self.patience).await;
    }

    /// Back in the reactor, for the end of the connection.
    fn into_stream(self) -> io::Result<TcpStream> {
        TcpStream::from_std(self.socket)
    }
}

/// Half-closes a finished connection and reads until the client hangs up,
/// so that nothing it still has to read is cut off by a reset.
async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(read) = stream.read(&mut sink).await {
            if read == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_fall_due_one_period_apart() {
        // 100 msg/s: message k is due at k × 10 ms.
        assert_eq!(due_after(None, 100.0, 50), 0);
        assert_eq!(due_after(Some(-0.001), 100.0, 50), 0);
        assert_eq!(due_after(Some(0.0), 100.0, 50), 1);
        assert_eq!(due_after(Some(0.0095), 100.0, 50), 1);
        assert_eq!(due_after(Some(0.0105), 100.0, 50), 2);
        assert_eq!(due_after(Some(10.0), 100.0, 50), 50, "never more than the total");
    }

    #[test]
    fn a_message_is_late_only_past_late_after() {
        // Handed over 0.9 ms after message 3 (due at 30 ms) fell due: not late.
        let late_after = LATE_AFTER.as_secs_f64();
        let late = |elapsed: f64, handed: u64| {
            due_after(Some(elapsed - late_after), 100.0, 50).saturating_sub(handed)
        };
        assert_eq!(late(0.0309, 3), 0);
        // 1.1 ms after: late.
        assert_eq!(late(0.0311, 3), 1);
        // Handed over at 55 ms: messages 3, 4 and 5 (due at 30, 40 and 50 ms) are all late.
        assert_eq!(late(0.055, 3), 3);
    }
}
