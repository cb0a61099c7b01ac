//! Credential providers through the `feedvisor` binary, against upstreams
//! whose tokens expire every few seconds (`feedvisor_test_support::tokens`):
//! an exec provider (a Python script) and an http provider, forced
//! reconnects, server-side kills and spoiled tokens for two minutes, with
//! zero connects on an expired token, one provider run after each
//! rejection, and no token in logs at trace, `/feeds`, `/metrics` or
//! `check`; and every way a provider can fail, each with a clear error and
//! a counted metric.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use awc::http::Method;
use feedvisor_test_support::tokens::{Handshake, OnExpiry, TokenEvent, TokenUpstream};

use crate::lockdown::admin_request;
use crate::support::{http_get, sample, ChildGuard};
use crate::tls::{admin_addr, feeds_until, feedvisor};

/// A directory of the test's own, removed when dropped.
struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> TestDir {
        let dir = std::env::temp_dir()
            .join(format!("feedvisor-credentials-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TestDir(dir)
    }

    /// Writes an executable script.
    fn script(&self, name: &str, text: &str) {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("script written");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("file written");
        path
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An exec provider: POSTs to the URL it is given and prints the answer.
const GET_TOKEN: &str = "#!/usr/bin/env python3\n\
import sys, urllib.request\n\
request = urllib.request.Request(sys.argv[1], method='POST')\n\
sys.stdout.write(urllib.request.urlopen(request, timeout=5).read().decode())\n";

/// Fails clearly when Python is missing (CI installs it; see `.ci/run`).
fn require_python() {
    let found = std::process::Command::new("python3").arg("--version").output();
    assert!(
        found.is_ok_and(|output| output.status.success()),
        "python3 is needed for the exec provider's script: install it (.ci/run does)"
    );
}

/// How long the forced-reconnect run lasts: two minutes, or
/// `FEEDVISOR_CREDENTIALS_SOAK_SECS`.
fn soak_duration() -> Duration {
    let secs =
        std::env::var("FEEDVISOR_CREDENTIALS_SOAK_SECS").ok().and_then(|secs| secs.parse().ok());
    Duration::from_secs(secs.unwrap_or(120))
}

/// After each rejection (a spoiled token refused at the handshake, or an
/// open connection ended at its token's expiry), the number of tokens
/// issued before the next handshake; one per rejection when the client ran
/// its provider exactly once. A window in which the test intervened
/// (a forced reconnect, a kill) is left out.
fn runs_after_rejections(events: &[TokenEvent]) -> Vec<usize> {
    let mut runs = Vec::new();
    let mut counting: Option<usize> = None;
    for event in events {
        match event {
            TokenEvent::Issued => {
                if let Some(count) = counting.as_mut() {
                    *count += 1;
                }
            }
            TokenEvent::Handshake(outcome) => {
                if let Some(count) = counting.take() {
                    runs.push(count);
                }
                if *outcome == Handshake::Unknown {
                    counting = Some(0);
                }
            }
            TokenEvent::ExpiredWhileOpen => counting = Some(0),
            // A reconnect the test forced starts an attempt of its own: not counted.
            TokenEvent::Intervention => counting = None,
            TokenEvent::WrongTokenInMessage => {}
        }
    }
    runs
}

fn feed<'a>(feeds: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    feeds
        .as_array()
        .and_then(|all| all.iter().find(|feed| feed["name"] == name))
        .unwrap_or_else(|| panic!("no feed {name} in {feeds}"))
}

fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let (status, body) = actix_rt::System::new().block_on(http_get(addr, path));
    assert_eq!(status, 200, "{path}: {body}");
    body
}

#[test]
fn two_minutes_of_expiring_tokens_and_forced_reconnects_never_connect_expired_or_leak_a_token() {
    require_python();
    let lifetime = Duration::from_secs(5);
    // Closes a connection whose token expired with 4001; the exec provider's feed.
    let closing = TokenUpstream::start(lifetime, OnExpiry::Close(4001));
    // Says so in a reply and waits for the client to close; the http provider's feed.
    let replying = TokenUpstream::start(
        lifetime,
        OnExpiry::Reply(r#"{"error":"token is expired"}"#.to_owned()),
    );
    // Its provider's answer is a URL with the token in its path, as a listen key is.
    replying.put_token_in_url();
    let dir = TestDir::new("soak");
    dir.script("get-token.py", GET_TOKEN);
    let text = format!(
        r#"[http]
listen = "127.0.0.1:0"

[defaults]
reconnect = {{ policy = "fixed", initial = "200ms" }}

[[feeds]]
name = "stocks"
url = "ws://{closing}/feed"
on_open = ['{{"op":"auth","token":"{{{{credentials.token}}}}"}}']
credentials = {{ exec = ["./get-token.py", "http://{closing}/token"], rejected = {{ close_codes = [4001] }} }}

[[feeds]]
name = "fx"
url = "ws://{replying}/feed"
on_open = ['{{"op":"auth","token":"{{{{credentials.token}}}}"}}']
credentials = {{ http = {{ url = "http://{replying}/token", method = "POST" }}, rejected = {{ reply = {{ pointer = "/error", contains = "token is expired" }} }} }}

[[subscribers]]
name = "print"
feeds = ["*"]
sink = "stdout"
"#,
        closing = closing.addr,
        replying = replying.addr,
    );
    let config = dir.file("feedvisor.toml", &text);

    let checked = feedvisor("trace").arg("check").arg(&config).output().expect("check ran");
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));
    let mut written = String::from_utf8_lossy(&checked.stdout).into_owned();
    written.push_str(&String::from_utf8_lossy(&checked.stderr));

    let mut sidecar = ChildGuard::spawn(feedvisor("trace").arg("run").arg("--config").arg(&config));
    let stdout = sidecar.stdout_lines();
    let stderr = sidecar.stderr_lines();
    let addr = admin_addr(&stderr);
    feeds_until(addr, |feeds| {
        feed(feeds, "stocks")["state"] == "open" && feed(feeds, "fx")["state"] == "open"
    });

    // Forced reconnects every 3 s (each feed in turn), server-side kills every
    // 7 s, a spoiled token every 11 s; tokens expire every 5 s on their own.
    let started = Instant::now();
    let mut spoiled = 0;
    let mut round = 0u64;
    while started.elapsed() < soak_duration() {
        std::thread::sleep(Duration::from_secs(1));
        round += 1;
        if round.is_multiple_of(3) {
            let (name, upstream) =
                if round.is_multiple_of(6) { ("stocks", &closing) } else { ("fx", &replying) };
            upstream.mark_intervention();
            let status =
                admin_request(addr, Method::POST, &format!("/feeds/{name}/reconnect"), None, "");
            assert!((200..300).contains(&status), "reconnect {name}: {status}");
        }
        if round.is_multiple_of(7) {
            closing.kill_connections();
            replying.kill_connections();
        }
        if round.is_multiple_of(11) {
            closing.spoil_next(1);
            replying.spoil_next(1);
            spoiled += 1;
        }
    }
    let feeds = feeds_until(addr, |feeds| {
        feed(feeds, "stocks")["state"] == "open" && feed(feeds, "fx")["state"] == "open"
    });
    let metrics = get(addr, "/metrics");
    written.push_str(&format!(
        "{feeds}\n{metrics}\n{}\n{}\n",
        get(addr, "/feeds/stocks"),
        get(addr, "/feeds/fx")
    ));
    drop(sidecar);
    let logs: Vec<String> = stderr.try_iter().chain(stdout.try_iter()).collect();
    assert!(logs.iter().any(|line| line.contains("TRACE")), "trace logs were read");
    written.push_str(&logs.join("\n"));

    for (name, upstream) in [("stocks", &closing), ("fx", &replying)] {
        let events = upstream.events();
        let accepted = upstream.handshakes(Handshake::Accepted);
        assert_eq!(
            upstream.handshakes(Handshake::Expired),
            0,
            "{name}: a connect with an expired token"
        );
        assert_eq!(upstream.handshakes(Handshake::Missing), 0, "{name}: a connect without a token");
        // Each spoiled token was tried once, never retried.
        assert!(
            upstream.handshakes(Handshake::Unknown) <= spoiled,
            "{name}: a refused token retried"
        );
        // At least one connection per token lifetime.
        let least = soak_duration().as_secs() / lifetime.as_secs();
        assert!(accepted as u64 >= least, "{name}: only {accepted} connections in the run");
        let expired_open =
            events.iter().filter(|event| **event == TokenEvent::ExpiredWhileOpen).count();
        assert!(expired_open > 0, "{name}: no connection outlived its token");
        let runs = runs_after_rejections(&events);
        assert!(!runs.is_empty(), "{name}: no rejection was followed by a handshake");
        assert!(
            runs.iter().all(|runs| *runs == 1),
            "{name}: provider runs between a rejection and the next attempt: {runs:?}"
        );
        assert!(
            !events.contains(&TokenEvent::WrongTokenInMessage),
            "{name}: on_open carried another connection's token"
        );
        let auth =
            upstream.received().into_iter().filter(|text| text.contains("\"op\":\"auth\"")).count();
        assert_eq!(auth, accepted, "{name}: one auth message per connection");
        let fetched = sample(
            &metrics,
            "feedvisor_credentials_fetches_total",
            &format!("feed=\"{name}\",result=\"ok\""),
        );
        assert!(
            fetched.is_some_and(|fetched| fetched >= accepted as f64),
            "{name}: fetches {fetched:?}"
        );
        let status = &feed(&feeds, name)["credentials"];
        assert!(status["fetched_at"].is_string() && status["expires_at"].is_string(), "{status}");
        assert!(status["rejections"].as_u64().is_some_and(|count| count > 0), "{status}");
    }
    let rejected = |feed: &str, reason: &str| {
        sample(
            &metrics,
            "feedvisor_credentials_rejections_total",
            &format!("feed=\"{feed}\",reason=\"{reason}\""),
        )
    };
    assert!(rejected("stocks", "close_code").is_some_and(|count| count > 0.0), "{metrics}");
    assert!(rejected("fx", "reply").is_some_and(|count| count > 0.0), "{metrics}");
    assert_eq!(rejected("stocks", "status"), Some(closing.handshakes(Handshake::Unknown) as f64));
    assert!(sample(&metrics, "feedvisor_credentials_expires_in_seconds", "feed=\"fx\"").is_some());

    let tokens: Vec<String> = closing.issued().into_iter().chain(replying.issued()).collect();
    assert!(tokens.len() as u64 > soak_duration().as_secs() / 5, "tokens issued: {}", tokens.len());
    for token in &tokens {
        let found: Vec<&str> =
            written.lines().filter(|line| line.contains(token.as_str())).collect();
        assert!(found.is_empty(), "{token} written:\n{}", found.join("\n"));
    }
}

#[test]
fn every_kind_of_provider_failure_is_named_counted_and_keeps_its_output_secret() {
    require_python();
    let upstream = TokenUpstream::start(Duration::from_secs(60), OnExpiry::Close(4001));
    let dir = TestDir::new("failures");
    let secret = "stderr-s3cret-value";
    dir.script("exits.sh", &format!("#!/bin/sh\necho {secret} >&2\necho {secret}\nexit 3\n"));
    // Named on its command line, to find it among the processes.
    let marker = format!("hangs-{}", std::process::id());
    dir.script(
        "hangs.sh",
        &format!("#!/bin/sh\nexec python3 -c 'import time; time.sleep(30)' {marker}\n"),
    );
    dir.script("garbage.sh", &format!("#!/bin/sh\necho 'not json {secret}'\n"));
    dir.script("huge.sh", "#!/bin/sh\nexec head -c 10000000 /dev/zero\n");
    dir.script("missing-value.sh", "#!/bin/sh\necho '{\"values\":{\"other\":\"x\"}}'\n");
    let refused = crate::support::refused_addr();
    // Accepts connections (the kernel does) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let silent_addr = silent.local_addr().expect("an address");
    let text = format!(
        r#"[http]
listen = "127.0.0.1:0"

[defaults]
reconnect = {{ policy = "fixed", initial = "300ms" }}

[[feeds]]
name = "exits"
url = "ws://{up}/feed"
credentials = {{ exec = ["./exits.sh"] }}

[[feeds]]
name = "hangs"
url = "ws://{up}/feed"
credentials = {{ exec = ["./hangs.sh"], timeout = "300ms" }}

[[feeds]]
name = "garbage"
url = "ws://{up}/feed"
credentials = {{ exec = ["./garbage.sh"] }}

[[feeds]]
name = "huge"
url = "ws://{up}/feed"
credentials = {{ exec = ["./huge.sh"], max_output = "64KiB" }}

[[feeds]]
name = "missing-value"
url = "ws://{up}/feed"
on_open = ["{{{{credentials.token}}}}"]
credentials = {{ exec = ["./missing-value.sh"] }}

[[feeds]]
name = "http-status"
url = "ws://{up}/feed"
credentials = {{ http = {{ url = "http://{up}/feed" }} }}

[[feeds]]
name = "http-refused"
url = "ws://{up}/feed"
credentials = {{ http = {{ url = "http://{refused}/token" }} }}

[[feeds]]
name = "http-silent"
url = "ws://{up}/feed"
credentials = {{ http = {{ url = "http://{silent_addr}/token" }}, timeout = "300ms" }}
"#,
        up = upstream.addr,
    );
    let config = dir.file("feedvisor.toml", &text);
    let mut sidecar = ChildGuard::spawn(feedvisor("trace").arg("run").arg("--config").arg(&config));
    let stdout = sidecar.stdout_lines();
    let stderr = sidecar.stderr_lines();
    let addr = admin_addr(&stderr);
    let expected = [
        ("exits", "exit_status", "exited with exit status: 3"),
        ("hangs", "timeout", "did not finish within 300ms: killed"),
        ("garbage", "invalid", "not JSON (line 1, column 2)"),
        ("huge", "too_large", "gave more than 65536 bytes"),
        ("missing-value", "invalid", "no value \"token\""),
        ("http-status", "http_status", "answered HTTP 401"),
        ("http-refused", "http_error", "could not connect"),
        ("http-silent", "timeout", "did not finish within 300ms"),
    ];
    let feeds = feeds_until(addr, |feeds| {
        expected.iter().all(|(name, _, _)| {
            feed(feeds, name)["credentials"]["failures"]
                .as_u64()
                .is_some_and(|failures| failures >= 2)
        })
    });
    let metrics = get(addr, "/metrics");
    for (name, result, words) in expected {
        let status = feed(&feeds, name);
        let failure = status["credentials"]["last_failure"].as_str().unwrap_or_default();
        assert!(failure.contains(words), "{name}: {failure}");
        assert_eq!(status["last_error"].as_str(), Some(failure), "{name}");
        assert_ne!(status["state"], "open", "{name}");
        let counted = sample(
            &metrics,
            "feedvisor_credentials_fetches_total",
            &format!("feed=\"{name}\",result=\"{result}\""),
        );
        assert!(counted.is_some_and(|count| count >= 2.0), "{name}: {result} counted {counted:?}");
    }
    assert_eq!(upstream.handshakes(Handshake::Accepted), 0, "no feed connected");
    // Each hung run was killed at its timeout: at most the one under way is alive.
    let hung = feedvisor_test_support::fault::processes_with(&marker);
    assert!(hung <= 1, "{hung} hung providers alive");

    // A feed posted over the API may not name a program; one with an http provider may.
    let program =
        r#"{"name":"posted","url":"ws://127.0.0.1:1/","credentials":{"exec":["/bin/true"]}}"#;
    assert_eq!(admin_request(addr, Method::POST, "/feeds", None, program), 400);
    let http = format!(
        r#"{{"name":"posted","url":"ws://{}/feed","credentials":{{"http":{{"url":"http://{}/token","method":"POST"}}}}}}"#,
        upstream.addr, upstream.addr
    );
    assert_eq!(admin_request(addr, Method::POST, "/feeds", None, &http), 201);
    feeds_until(addr, |feeds| feed(feeds, "posted")["state"] == "open");

    drop(sidecar);
    let logs: Vec<String> = stderr.try_iter().chain(stdout.try_iter()).collect();
    let leaked: Vec<&String> = logs.iter().filter(|line| line.contains(secret)).collect();
    assert!(leaked.is_empty(), "a provider's output reached the log: {leaked:?}");
    for token in upstream.issued() {
        assert!(!logs.iter().any(|line| line.contains(&token)), "{token} logged");
    }
}
