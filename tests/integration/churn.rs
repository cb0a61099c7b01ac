//! The churn soak: the `feedvisor` binary with 200 feeds on one upstream
//! that is restarted every few seconds, feeds added and removed through the
//! admin API, and `/subscribe` clients coming and going. Afterwards the
//! process's file descriptors, RSS and threads are back to their baseline,
//! within the tolerances below; the number of metric series is measured and
//! shown (the series of removed feeds stay, for now).
//!
//! It runs for `FEEDVISOR_CHURN_SECS` seconds (6 by default, so that it is
//! brief in CI; give it minutes on demand).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::support::{
    eventually, http_get, http_post, proc_status_field, refused_addr, until_ready, ChildGuard,
    Upstream, DEADLINE,
};

/// Feeds in the config.
const FEEDS: usize = 200;
/// Feeds added (and removed again) per round.
const ADDED_PER_ROUND: usize = 10;
/// `/subscribe` clients opened (and closed the round after) per round.
const CLIENTS_PER_ROUND: usize = 5;
/// How often the upstream restarts, in rounds of one second.
const RESTART_EVERY: u32 = 3;
/// File descriptors the process may hold beyond its baseline afterwards
/// (a connection of the admin server's keep-alive, a log pipe).
const FD_TOLERANCE: usize = 4;
/// RSS growth allowed: allocator arenas of the worker threads keep some of
/// what a burst used.
const RSS_TOLERANCE_KIB: u64 = 16 * 1024;

/// What the soak measures of the child process.
#[derive(Debug, Clone, Copy)]
struct Footprint {
    fds: usize,
    rss_kib: u64,
    threads: u64,
    series: usize,
}

async fn footprint(pid: u32, admin: SocketAddr) -> Footprint {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read the child's fds").count();
    let (status, metrics) = http_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    let series = metrics.lines().filter(|line| !line.is_empty() && !line.starts_with('#')).count();
    Footprint {
        fds,
        rss_kib: proc_status_field(pid, "VmRSS:"),
        threads: proc_status_field(pid, "Threads:"),
        series,
    }
}

async fn delete(admin: SocketAddr, path: &str) -> u16 {
    let client = awc::Client::default();
    let response =
        tokio::time::timeout(DEADLINE, client.delete(format!("http://{admin}{path}")).send())
            .await
            .expect("answer in time")
            .expect("request sent");
    response.status().as_u16()
}

fn config_file(upstream: SocketAddr, admin: SocketAddr) -> PathBuf {
    let mut text = format!("[http]\nlisten = \"{admin}\"\n\n[defaults]\nreconnect = {{ policy = \"fixed\", initial = \"100ms\", jitter = \"full\" }}\n");
    for index in 0..FEEDS {
        text.push_str(&format!(
            "\n[[feeds]]\nname = \"churn-{index:03}\"\nurl = \"ws://{upstream}/sequence\"\nrequired = true\n"
        ));
    }
    let dir = std::env::temp_dir().join(format!("feedvisor-churn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("churn.toml");
    std::fs::write(&path, text).expect("config written");
    path
}

#[actix::test]
async fn after_minutes_of_churn_fds_rss_and_threads_are_back_to_baseline() {
    let seconds: u64 =
        std::env::var("FEEDVISOR_CHURN_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(6);
    let mut upstream = Upstream::start(1);
    let upstream_addr = upstream.addr;
    let admin = refused_addr();
    let config = config_file(upstream_addr, admin);
    let mut sidecar = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_feedvisor"))
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "error"),
    );
    let pid = sidecar.child.id();
    // Stdout and stderr are drained so that the child never blocks on a full pipe.
    let (_out, _err) = (sidecar.stdout_lines(), sidecar.stderr_lines());
    until_ready(admin).await;
    let baseline = footprint(pid, admin).await;

    let started = Instant::now();
    let mut round = 0u32;
    let mut clients = Vec::new();
    let (mut added, mut subscribed) = (0usize, 0usize);
    while started.elapsed() < Duration::from_secs(seconds) {
        round += 1;
        if round.is_multiple_of(RESTART_EVERY) {
            upstream.stop().await;
            upstream = Upstream::start_on(upstream_addr, 1);
        }
        for index in 0..ADDED_PER_ROUND {
            let name = format!("churn-extra-{round}-{index}");
            let body = format!(r#"{{"name":"{name}","url":"ws://{upstream_addr}/sequence"}}"#);
            let (status, answer) = http_post(admin, "/feeds", Some("application/json"), body).await;
            assert_eq!(status, 201, "{answer}");
            added += 1;
            if round > 1 {
                let old = format!("/feeds/churn-extra-{}-{index}", round - 1);
                assert_eq!(delete(admin, &old).await, 200, "{old}");
            }
        }
        // The clients of the round before go; this round's come.
        clients.clear();
        for _ in 0..CLIENTS_PER_ROUND {
            let url = format!("ws://{admin}/subscribe?feed=churn-*");
            let connect = awc::Client::default().ws(url).connect();
            let (_, client) = tokio::time::timeout(DEADLINE, connect)
                .await
                .expect("subscribe answered in time")
                .expect("subscribed");
            clients.push(client);
            subscribed += 1;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // A client that reads a message proves the stream works before it goes.
    if let Some(client) = clients.first_mut() {
        upstream.stop().await;
        upstream = Upstream::start_on(upstream_addr, 1);
        let frame = tokio::time::timeout(DEADLINE, client.next()).await.expect("a message in time");
        assert!(frame.is_some(), "the /subscribe stream ended");
    }
    clients.clear();
    for index in 0..ADDED_PER_ROUND {
        assert_eq!(delete(admin, &format!("/feeds/churn-extra-{round}-{index}")).await, 200);
    }
    until_ready(admin).await;
    let measured = eventually(DEADLINE, "the footprint back to baseline", || async move {
        let now = footprint(pid, admin).await;
        // Metric series are measured and shown, not yet held to the
        // baseline: the series of a feed removed through the API stay in
        // `/metrics` (about 180 per feed), which the metrics module is to fix.
        let back = now.fds <= baseline.fds + FD_TOLERANCE
            && now.threads <= baseline.threads
            && now.rss_kib <= baseline.rss_kib + RSS_TOLERANCE_KIB;
        if !back {
            eprintln!("churn: baseline {baseline:?}, now {now:?}");
        }
        back.then_some(now)
    })
    .await;
    eprintln!(
        "churn: {seconds}s, {round} rounds, {added} feeds added and removed, {subscribed} /subscribe clients; \
         baseline {baseline:?}, after {measured:?}; metric series {} -> {}",
        baseline.series, measured.series
    );
    upstream.stop().await;
}
