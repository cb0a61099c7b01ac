//! The metrics against the real tools (Debian's `prometheus` package, which
//! `.ci/run` installs): `promtool` checks the shipped rules and config and
//! runs their unit tests, and lints a live scrape; a feed removed through
//! the API leaves `/metrics`; and a real Prometheus scraping the demo
//! answers every query of the dashboard and the alert rules with at least
//! one series, and fires the stale alert for a feed made silent.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use feedvisor_test_support::net::refused_addr;
use feedvisor_test_support::wait::eventually;

use crate::support::{
    http_get, http_post, spawn_demo, wait_for_line, ChildGuard, Upstream, DEADLINE,
};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A program of the `prometheus` package, from `PATH`; missing is a failure, not a skip.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!(
            "`{name}` is not installed: install Debian's `prometheus` package (apt-get install prometheus), as .ci/run does"
        ))
}

/// Runs promtool with `args` (and `stdin`), from the repository's root; returns success and its output.
fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(tool("promtool"))
        .args(args)
        .current_dir(ROOT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    let mut input = child.stdin.take().expect("stdin piped");
    input.write_all(stdin.unwrap_or_default().as_bytes()).expect("promtool reads its input");
    drop(input);
    let output = child.wait_with_output().expect("promtool ends");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn promtool_checks_the_shipped_config_and_rules_and_passes_their_unit_tests() {
    for args in [
        &["check", "rules", "config/alerts.yml"][..],
        &["check", "config", "config/prometheus.yml"],
        &["test", "rules", "config/alerts_test.yml"],
    ] {
        let (ok, output) = promtool(args, None);
        assert!(ok, "promtool {args:?} failed:\n{output}");
    }
    // Every rule has a unit test.
    let tests = std::fs::read_to_string(Path::new(ROOT).join("config/alerts_test.yml"))
        .expect("alerts_test.yml readable");
    for (name, _) in alert_rules() {
        assert!(tests.contains(&format!("alertname: {name}")), "no promtool test for {name}");
    }
}

/// The demo (`feedvisor demo`) running as a child, with its addresses.
struct Demo {
    _child: ChildGuard,
    /// Its admin server.
    admin: SocketAddr,
    /// Kept so that the child's output is drained while it runs.
    _stdout: Receiver<String>,
    _stderr: Receiver<String>,
}

fn address_in(line: &str) -> SocketAddr {
    line.split("addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

fn start_demo() -> Demo {
    let mut child = spawn_demo("100ms");
    let stdout = child.stdout_lines();
    let stderr = child.stderr_lines();
    let admin =
        address_in(&wait_for_line(&stderr, |line| line.contains("admin HTTP server listening")));
    Demo { _child: child, admin, _stdout: stdout, _stderr: stderr }
}

async fn http_delete(addr: SocketAddr, path: &str) -> u16 {
    let request = awc::Client::default().delete(format!("http://{addr}{path}")).send();
    let response = tokio::time::timeout(DEADLINE, request).await.expect("answer in time");
    response.expect("request sent").status().as_u16()
}

async fn feed_state(addr: SocketAddr, name: &str) -> Option<String> {
    let (status, body) = http_get(addr, &format!("/feeds/{name}")).await;
    let feed: serde_json::Value = serde_json::from_str(&body).ok()?;
    (status == 200).then(|| feed["state"].as_str().unwrap_or_default().to_owned())
}

async fn add_feed(addr: SocketAddr, feed: serde_json::Value) {
    let (status, body) =
        http_post(addr, "/feeds", Some("application/json"), feed.to_string()).await;
    assert_eq!(status, 201, "{body}");
}

#[test]
fn feeds_removed_through_the_api_leave_metrics_and_a_live_scrape_passes_promtool() {
    let demo = start_demo();
    actix_rt::System::new().block_on(async move {
        let upstream = Upstream::start(1);
        let feed = |index: usize| {
            serde_json::json!({
                "name": format!("cycle-{index}"),
                "url": format!("ws://{}/sequence", upstream.addr),
                "timestamp": { "pointer": "/ts", "unit": "ms" },
                "stale_after": "1s",
            })
        };
        // The baseline: once both demo feeds have delivered to the demo's
        // subscriber, every series of theirs exists.
        let before = eventually(DEADLINE, "both demo feeds to deliver", || async {
            let (_, text) = http_get(demo.admin, "/metrics").await;
            let delivered = ["stocks", "weather"].iter().all(|feed| {
                let series =
                    format!("feedvisor_delivery_latency_seconds_count{{feed=\"{feed}\",subscriber=\"print\"}} ");
                text.lines().any(|line| line.starts_with(&series) && !line.ends_with(" 0"))
            });
            delivered.then_some(text)
        })
        .await;
        let mut lines_of_one_feed = 0;
        for index in 0..300 {
            let name = format!("cycle-{index}");
            add_feed(demo.admin, feed(index)).await;
            eventually(DEADLINE, "the added feed to open", || async {
                feed_state(demo.admin, &name).await.filter(|state| state == "open")
            })
            .await;
            if index == 0 {
                let (_, during) = http_get(demo.admin, "/metrics").await;
                let label = format!("feed=\"{name}\"");
                lines_of_one_feed = during.lines().filter(|line| line.contains(&label)).count();
            }
            assert_eq!(http_delete(demo.admin, &format!("/feeds/{name}")).await, 200);
        }
        let (_, after) = http_get(demo.admin, "/metrics").await;
        assert!(lines_of_one_feed > 50, "a feed has {lines_of_one_feed} lines of series");
        let left: Vec<&str> = after.lines().filter(|line| line.contains("cycle-")).collect();
        assert!(left.is_empty(), "series of removed feeds are still there: {left:?}");
        let (lines_before, lines_after) = (before.lines().count(), after.lines().count());
        assert!(
            lines_after < lines_before + lines_of_one_feed,
            "300 add and delete cycles grew /metrics from {lines_before} to {lines_after} lines"
        );
        let rss = |text: &str| {
            let line = text.lines().find_map(|line| line.strip_prefix("process_resident_memory_bytes "));
            line.and_then(|value| value.trim().parse::<f64>().ok())
        };
        eprintln!(
            "300 add/delete cycles: /metrics {lines_before} -> {lines_after} lines, {} -> {} bytes; \
             RSS {:?} -> {:?} bytes (one feed: {lines_of_one_feed} lines)",
            before.len(),
            after.len(),
            rss(&before).map(|bytes| bytes as u64),
            rss(&after).map(|bytes| bytes as u64),
        );
        let (ok, output) = promtool(&["check", "metrics"], Some(&after));
        assert!(ok, "promtool check metrics refused the scrape:\n{output}\n{after}");
        upstream.stop().await;
    });
}

/// A Prometheus server on a free loopback port with a temporary data
/// directory, killed and cleaned up when dropped.
struct Prometheus {
    child: Option<ChildGuard>,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Prometheus {
    /// Runs the shipped `config/prometheus.yml` against `target`, scraping
    /// and evaluating every second, with the shipped rules.
    fn start(target: SocketAddr) -> Prometheus {
        let shipped = std::fs::read_to_string(Path::new(ROOT).join("config/prometheus.yml"))
            .expect("prometheus.yml readable");
        let rules = Path::new(ROOT).join("config/alerts.yml");
        let mut config = shipped.clone();
        for (from, to) in [
            ("scrape_interval: 15s", "scrape_interval: 1s".to_owned()),
            ("evaluation_interval: 15s", "evaluation_interval: 1s".to_owned()),
            ("\"127.0.0.1:9900\"", format!("\"{target}\"")),
            ("- alerts.yml", format!("- {}", rules.display())),
        ] {
            assert!(config.contains(from), "config/prometheus.yml no longer has {from:?}");
            config = config.replace(from, &to);
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        let dir = std::env::temp_dir()
            .join(format!("feedvisor-prometheus-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).expect("temporary directory");
        std::fs::write(dir.join("prometheus.yml"), config).expect("config written");
        let addr = refused_addr();
        // Its log goes to a file (a pipe nobody reads would fill and stop it).
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
        let child = Command::new(tool("prometheus"))
            .args([
                format!("--config.file={}", dir.join("prometheus.yml").display()),
                format!("--storage.tsdb.path={}", dir.join("data").display()),
                format!("--web.listen-address={addr}"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        let child = ChildGuard { child };
        Prometheus { child: Some(child), dir, addr }
    }

    /// The `data.result` of an instant query.
    async fn query(&self, query: &str) -> Vec<serde_json::Value> {
        let request = awc::Client::default()
            .get(format!("http://{}/api/v1/query", self.addr))
            .query(&[("query", query)])
            .expect("query encoded")
            .send();
        let Ok(Ok(mut response)) = tokio::time::timeout(DEADLINE, request).await else {
            return Vec::new();
        };
        let body = response.body().limit(16 << 20).await.unwrap_or_default();
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_ne!(answer["status"], "error", "Prometheus refused {query:?}: {answer}");
        answer["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The alerts Prometheus holds (pending or firing).
    async fn alerts(&self) -> Vec<serde_json::Value> {
        let (_, body) = http_get(self.addr, "/api/v1/alerts").await;
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        answer["data"]["alerts"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        drop(self.child.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every alert rule of `config/alerts.yml`: its name and its value, the
/// expression without its final comparison (`<value> <op> <number>`).
fn alert_rules() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("config/alerts.yml"))
        .expect("alerts.yml readable");
    let documents = yaml_rust2::YamlLoader::load_from_str(&text).expect("alerts.yml is YAML");
    let mut rules = Vec::new();
    for group in documents[0]["groups"].as_vec().expect("groups") {
        for rule in group["rules"].as_vec().expect("rules") {
            let name = rule["alert"].as_str().expect("an alert name").to_owned();
            let expr = rule["expr"].as_str().expect("an expression").trim();
            let value = [" == ", " != ", " >= ", " <= ", " > ", " < "]
                .iter()
                .find_map(|op| {
                    let (value, threshold) = expr.rsplit_once(op)?;
                    threshold.trim().parse::<f64>().ok().map(|_| value.trim().to_owned())
                })
                .unwrap_or_else(|| panic!("{name}: end the expression in a comparison: {expr}"));
            rules.push((name, value));
        }
    }
    assert!(rules.len() >= 7, "the shipped rules: {rules:?}");
    rules
}

/// Every query of the dashboard (panels and variables), with its variables
/// set to match everything.
fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("dashboards/feedvisor.json"))
        .expect("dashboard readable");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            queries.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().expect("variables") {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["query"].as_str().expect("a variable's query");
        let series = query
            .strip_prefix("label_values(")
            .and_then(|rest| rest.rsplit_once(','))
            .map(|(series, _)| series.to_owned())
            .unwrap_or_else(|| panic!("a variable query this test cannot run: {query}"));
        queries.push(series);
    }
    queries
        .into_iter()
        .map(|query| {
            let query = query
                .replace("$__rate_interval", "1m")
                .replace("$feed", ".*")
                .replace("$subscriber", ".*")
                .replace("$job", ".*");
            assert!(!query.contains('$'), "a dashboard variable this test does not set: {query}");
            query
        })
        .collect()
}

#[test]
fn a_real_prometheus_gets_series_for_every_dashboard_and_alert_query_and_fires_the_stale_alert() {
    let demo = start_demo();
    actix_rt::System::new().block_on(async move {
        // A feed whose upstream sends one message and then nothing: stale after 1 s.
        let upstream = Upstream::start(1);
        let quiet = serde_json::json!({
            "name": "quiet",
            "url": format!("ws://{}/sequence", upstream.addr),
            "stale_after": "1s",
            "required": true,
        });
        add_feed(demo.admin, quiet).await;
        let prometheus = Prometheus::start(demo.admin);
        let startup = Duration::from_secs(60);
        eventually(startup, "Prometheus to be ready", || async {
            let request = awc::Client::default().get(format!("http://{}/-/ready", prometheus.addr));
            let ready = tokio::time::timeout(DEADLINE, request.send()).await;
            matches!(ready, Ok(Ok(response)) if response.status().is_success()).then_some(())
        })
        .await;

        let mut queries = dashboard_queries();
        queries.extend(alert_rules().into_iter().map(|(_, value)| value));
        for query in &queries {
            eventually(startup, &format!("a series for {query}"), || async {
                (!prometheus.query(query).await.is_empty()).then_some(())
            })
            .await;
        }
        eprintln!("{} dashboard and alert queries each returned series", queries.len());

        // The quiet feed is stale in /feeds and /readyz, then the alert fires.
        eventually(DEADLINE, "the quiet feed to be stale", || async {
            feed_state(demo.admin, "quiet").await.filter(|state| state == "stale")
        })
        .await;
        let (status, readiness) = http_get(demo.admin, "/readyz").await;
        assert_eq!(status, 503, "{readiness}");
        assert!(readiness.contains("quiet") && readiness.contains("stale"), "{readiness}");
        let stale_alert = |state: &'static str| {
            let prometheus = &prometheus;
            move || async move {
                prometheus.alerts().await.into_iter().find(|alert| {
                    alert["labels"]["alertname"] == "FeedStale"
                        && alert["labels"]["feed"] == "quiet"
                        && alert["state"] == state
                })
            }
        };
        let pending = eventually(DEADLINE, "FeedStale pending", stale_alert("pending")).await;
        let pending_seen = Instant::now();
        // `for: 15s` plus two evaluation intervals (1 s each).
        let fired =
            eventually(Duration::from_secs(17), "FeedStale firing", stale_alert("firing")).await;
        eprintln!(
            "FeedStale pending at {} fired {:?} after it was seen pending: {fired}",
            pending["activeAt"],
            pending_seen.elapsed()
        );
        for feed in ["stocks", "weather"] {
            let firing = prometheus.alerts().await.into_iter().any(|alert| {
                alert["labels"]["alertname"] == "FeedStale" && alert["labels"]["feed"] == feed
            });
            assert!(!firing, "{feed} ticks and is not stale");
        }
        upstream.stop().await;
    });
}

#[actix_rt::test]
async fn a_subscriber_that_unsubscribes_leaves_metrics_and_the_others_stay() {
    use actix::Actor;
    let upstream = Upstream::start(3);
    let text =
        format!("[[feeds]]\nname = \"leaving-feed\"\nurl = \"ws://{}/sequence\"\n", upstream.addr);
    let config = feedvisor::config::Config::from_toml_str(
        &text,
        Path::new("leaving.toml"),
        &feedvisor::transports::TransportRegistry::with_defaults(),
    )
    .expect("valid config");
    let (stays_sender, mut stays) = tokio::sync::mpsc::unbounded_channel();
    let (leaves_sender, mut leaves) = tokio::sync::mpsc::unbounded_channel();
    let spec = |name: &str| feedvisor::SubscriptionSpec::new(name, ["leaving-feed"]);
    let sidecar = feedvisor::Sidecar::builder(config)
        .without_http()
        .subscriber(
            spec("leaving-stays"),
            crate::support::Collector(stays_sender).start().recipient(),
        )
        .subscriber(
            spec("leaving-goes"),
            crate::support::Collector(leaves_sender).start().recipient(),
        )
        .start()
        .await
        .expect("sidecar started");
    crate::support::collect(&mut stays, 3).await;
    crate::support::collect(&mut leaves, 3).await;
    let series_of = |text: &str, subscriber: &str| {
        let label = format!("subscriber=\"{subscriber}\"");
        text.lines().filter(|line| line.contains(&label)).count()
    };
    let before = sidecar.render_metrics();
    assert!(series_of(&before, "leaving-goes") > 0, "{before}");
    assert!(sidecar.unsubscribe("leaving-goes").await);
    let after = sidecar.render_metrics();
    assert_eq!(series_of(&after, "leaving-goes"), 0, "{after}");
    assert_eq!(series_of(&after, "leaving-stays"), series_of(&before, "leaving-stays"));
    sidecar.stop().await;
    upstream.stop().await;
}
