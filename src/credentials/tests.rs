//! A provider's output parsed and checked without quoting it, real programs
//! run and bounded, and values filled into templates.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::output::parse_rfc3339;
use super::*;
use crate::config::{Refresh, Rejections};

const SECRET: &str = "s3cret-output";

fn expect<'a>(values: &'a [String]) -> Expect<'a> {
    Expect { provider: "exec ./t", scheme: "wss", values }
}

fn invalid(output: &str) -> String {
    let error = parse(output.as_bytes(), &expect(&[])).expect_err("refused");
    assert_eq!(error.result(), "invalid");
    let shown = error.to_string();
    assert!(!shown.contains(SECRET), "the output is quoted: {shown}");
    shown
}

#[test]
fn a_whole_output_is_read_and_an_empty_object_is_enough() {
    let output = format!(
        r#"{{"url":"wss://example.com/ws/{SECRET}","headers":{{"Authorization":"Bearer {SECRET}"}},"values":{{"key":"{SECRET}","n":7}},"expires_at":"2030-01-01T02:00:00+02:00"}}"#
    );
    let names = vec!["key".to_owned()];
    let credentials = parse(output.as_bytes(), &expect(&names)).expect("valid");
    assert_eq!(
        credentials.url.as_ref().map(url::Url::as_str),
        Some(format!("wss://example.com/ws/{SECRET}").as_str())
    );
    assert_eq!(credentials.headers, [("Authorization".to_owned(), format!("Bearer {SECRET}"))]);
    assert_eq!(credentials.values.get("n").map(String::as_str), Some("7"));
    assert_eq!(credentials.expires_at, parse_rfc3339("2030-01-01T00:00:00Z"));
    assert_eq!(
        credentials.fill("{\"k\":\"{{credentials.key}}\",\"x\":{{credentials.n}}}"),
        format!("{{\"k\":\"{SECRET}\",\"x\":7}}")
    );
    let shown = format!("{credentials:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert_eq!(parse(b"{}", &expect(&[])).expect("valid"), Credentials::default());
}

#[test]
fn what_is_wrong_with_an_output_is_named_without_quoting_it() {
    assert!(invalid(&format!("not json {SECRET}")).contains("not JSON (line 1, column 2)"));
    assert!(invalid(&format!(r#"["{SECRET}"]"#)).contains("not a JSON object"));
    assert!(invalid(&format!(r#"{{"url":"ws://example.com/{SECRET}"}}"#))
        .contains("url has the scheme \"ws\", the feed's is \"wss\""));
    assert!(invalid(&format!(r#"{{"url":"wss://u:{SECRET}@example.com/"}}"#))
        .contains("user:password@"));
    assert!(invalid(&format!(r#"{{"headers":{{"X":"a\r\n{SECRET}"}}}}"#))
        .contains("header \"X\" holds a control character"));
    assert!(invalid(&format!(r#"{{"headers":{{"X":{{"v":"{SECRET}"}}}}}}"#))
        .contains("header \"X\" is not a string"));
    assert!(invalid(&format!(r#"{{"values":{{"k":["{SECRET}"]}}}}"#))
        .contains("value \"k\" is not a string, number or boolean"));
    assert!(invalid(&format!(r#"{{"expires_at":"{SECRET}"}}"#))
        .contains("expires_at is not an RFC 3339 time"));
    assert!(invalid(r#"{"token":"x"}"#).contains("unknown field \"token\""));
    let names = vec!["key".to_owned()];
    let missing = parse(br#"{"values":{}}"#, &expect(&names)).expect_err("refused").to_string();
    assert!(missing.contains("no value \"key\""), "{missing}");
}

#[test]
fn rfc_3339_times_take_z_offsets_and_fractions() {
    let noon = parse_rfc3339("2026-05-01T12:00:00Z").expect("Z");
    assert_eq!(parse_rfc3339("2026-05-01T14:00:00+02:00"), Some(noon));
    assert_eq!(parse_rfc3339("2026-05-01T07:30:00-04:30"), Some(noon));
    assert_eq!(
        parse_rfc3339("2026-05-01T12:00:00.250Z"),
        noon.checked_add(Duration::from_millis(250))
    );
    for bad in
        ["", "tomorrow", "2026-05-01T12:00:00+2:00", "2026-05-01T12:00:00+ä:00", "2026-05-01"]
    {
        assert_eq!(parse_rfc3339(bad), None, "{bad}");
    }
}

#[test]
fn a_digest_tells_outputs_apart_and_life_ends_at_zero() {
    let mut one = Credentials::default();
    one.values.insert("k".to_owned(), "a".to_owned());
    let mut two = one.clone();
    assert_eq!(one.fingerprint(), two.fingerprint());
    two.values.insert("k".to_owned(), "b".to_owned());
    assert_ne!(one.fingerprint(), two.fingerprint());
    let now = SystemTime::now();
    one.expires_at = Some(now - Duration::from_secs(5));
    assert_eq!(one.life(now), Some(Duration::ZERO));
    assert_eq!(two.life(now), None);
}

/// An exec provider for `script` (a shell script body), bounded as given.
fn exec(script: &str, timeout: Duration, max_output: u64) -> (Rc<dyn Provider>, TempScript) {
    let file = TempScript::new(script);
    let config = CredentialsConfig {
        source: CredentialSource::Exec {
            command: vec![file.0.display().to_string(), "stocks".to_owned()],
            program: file.0.clone(),
            dir: std::env::temp_dir(),
        },
        refresh: Refresh::default(),
        timeout,
        max_output,
        rejected: Rejections::default(),
    };
    (provider(&config, "feed-a"), file)
}

/// A script file removed when dropped.
struct TempScript(PathBuf);

impl TempScript {
    fn new(body: &str) -> TempScript {
        use std::os::unix::fs::PermissionsExt;
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir()
            .join(format!("feedvisor-provider-{}-{unique}.sh", std::process::id()));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("script written");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        TempScript(path)
    }
}

impl Drop for TempScript {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const LONG: Duration = Duration::from_secs(20);

#[actix::test]
async fn a_program_gets_its_arguments_and_feed_and_its_stdout_is_the_output() {
    let (provider, _file) = exec("echo \"{\\\"values\\\":{\\\"arg\\\":\\\"$1\\\",\\\"feed\\\":\\\"$FEEDVISOR_FEED\\\"}}\"; echo noise >&2", LONG, 1024);
    let output = provider.run().await.expect("ran");
    let credentials = parse(&output, &expect(&[])).expect("valid");
    assert_eq!(credentials.values.get("arg").map(String::as_str), Some("stocks"));
    assert_eq!(credentials.values.get("feed").map(String::as_str), Some("feed-a"));
}

#[actix::test]
async fn a_failing_program_is_named_by_its_exit_status_without_its_stderr() {
    let (provider, _file) = exec(&format!("echo {SECRET} >&2; echo {SECRET}; exit 3"), LONG, 1024);
    let error = provider.run().await.expect_err("failed");
    assert_eq!(error.result(), "exit_status");
    let shown = error.to_string();
    assert!(shown.contains("exited with exit status: 3"), "{shown}");
    assert!(!shown.contains(SECRET), "{shown}");
}

#[actix::test]
async fn a_program_past_its_timeout_is_killed_with_what_it_started() {
    let marker = format!("feedvisor-hung-{}", std::process::id());
    // A shell that starts a child of its own and waits for it.
    let (provider, _file) = exec(
        &format!("python3 -c 'import time; time.sleep(60)' {marker} & wait"),
        Duration::from_millis(300),
        1024,
    );
    let error = provider.run().await.expect_err("timed out");
    assert_eq!(error.result(), "timeout");
    assert!(error.to_string().contains("did not finish within 300ms: killed"), "{error}");
    // The grandchild went with its process group.
    let gone =
        || async { (feedvisor_test_support::fault::processes_with(&marker) == 0).then_some(()) };
    feedvisor_test_support::eventually(LONG, "the hung provider's child gone", gone).await;
}

#[actix::test]
async fn output_past_the_limit_is_refused_and_the_program_killed() {
    let (provider, _file) = exec("exec head -c 100000000 /dev/zero", LONG, 64 << 10);
    let error = provider.run().await.expect_err("too large");
    assert_eq!(error.result(), "too_large");
    assert!(error.to_string().contains("gave more than 65536 bytes"), "{error}");
}

#[actix::test]
async fn a_program_that_cannot_start_says_so() {
    let (provider, file) = exec("true", LONG, 1024);
    drop(file);
    let error = provider.run().await.expect_err("no such program");
    assert_eq!(error.result(), "failed_to_start");
    assert!(error.to_string().contains("could not be started"), "{error}");
}

#[actix::test]
async fn an_abandoned_run_kills_its_program() {
    let marker = format!("feedvisor-abandoned-{}", std::process::id());
    let (provider, _file) =
        exec(&format!("exec python3 -c 'import time; time.sleep(60)' {marker}"), LONG, 1024);
    let started =
        || async { (feedvisor_test_support::fault::processes_with(&marker) == 1).then_some(()) };
    let run = provider.run();
    // The feed stops (or another attempt starts) while the program runs: the run is dropped.
    let waited = actix_rt::time::timeout(Duration::from_millis(50), run);
    let abandoned = async {
        feedvisor_test_support::eventually(LONG, "the provider started", started).await;
    };
    let (dropped, ()) = tokio::join!(waited, abandoned);
    drop(dropped);
    let gone =
        || async { (feedvisor_test_support::fault::processes_with(&marker) == 0).then_some(()) };
    feedvisor_test_support::eventually(LONG, "the abandoned provider gone", gone).await;
}
