//! The exec sink: restart delays, torn lines and standard error lines, and
//! the actor with real child processes (`sh`, `cat`, `tail`).

use actix::prelude::*;

use super::*;
use crate::sink::test_support::*;

#[test]
fn restart_delays_are_the_backoff_policy_s_and_reset_after_a_stable_run() {
    let mut backoff = Backoff::new(RESTART_POLICY);
    let quick = Duration::from_millis(10);
    let delays: Vec<Duration> = (0..9).map(|_| restart_delay(&mut backoff, quick)).collect();
    let expected: Vec<Duration> = (0..9).map(|attempt| RESTART_POLICY.ceiling(attempt)).collect();
    assert_eq!(delays, expected, "no jitter: each delay is the policy's ceiling");
    let millis: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
    assert_eq!(millis, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
    let stable = RESTART_POLICY.reset_after;
    assert_eq!(restart_delay(&mut backoff, stable), RESTART_POLICY.initial);
    assert_eq!(restart_delay(&mut backoff, quick), Duration::from_secs(1));
}

#[test]
fn the_command_must_name_a_program() {
    let config = |command: &[&str]| ExecSinkConfig {
        command: command.iter().map(|part| part.to_string()).collect(),
    };
    let errors = config(&[]).validate();
    assert_eq!((errors[0].field.as_str(), errors.len()), ("command", 1));
    assert!(errors[0].message.starts_with("required"), "{}", errors[0]);
    let errors = config(&["", "x"]).validate();
    assert_eq!(errors[0].field, "command[0]");
    assert!(config(&["cat"]).validate().is_empty());
    assert_eq!(config(&["cat", "-u"]).describe(), r#"exec ["cat", "-u"]"#);
}

#[test]
fn a_torn_line_is_written_again_from_its_start() {
    let buffer = b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n";
    assert_eq!(line_start(buffer, 0), 0);
    assert_eq!(line_start(buffer, 3), 0);
    assert_eq!(line_start(buffer, 8), 8);
    assert_eq!(line_start(buffer, 12), 8);
    assert_eq!(line_start(buffer, buffer.len()), buffer.len());
}

async fn all_lines(input: &[u8], max: usize, capacity: usize) -> Vec<String> {
    let mut lines = BoundedLines::new(BufReader::with_capacity(capacity, input), max);
    let mut all = Vec::new();
    while let Some(line) = lines.next_line().await {
        all.push(line);
    }
    all
}

#[actix::test]
async fn stderr_lines_are_split_and_long_ones_cut() {
    for capacity in [1, 3, 64] {
        let lines = all_lines(b"one\r\ntwo\n\nlast without break", 100, capacity).await;
        assert_eq!(lines, ["one", "two", "", "last without break"], "capacity {capacity}");
        let lines =
            all_lines(b"0123456789abc\nshort\n0123456789\n0123456789abcdef", 10, capacity).await;
        let cut = "0123456789 [cut at 10 bytes]";
        assert_eq!(lines, [cut, "short", "0123456789", cut], "capacity {capacity}");
    }
}

const WRITTEN: &str = "feedvisor_sink_messages_written_total";
const DROPPED: &str = "feedvisor_sink_messages_dropped_total";
const ERRORS: &str = "feedvisor_sink_errors_total";
const RESTARTS: &str = "feedvisor_sink_restarts_total";

/// The pid logged by the first "started its child" line.
fn started_pid(logs: &Logs) -> Option<u32> {
    let text = logs.text();
    let line = text.lines().find(|line| line.contains("exec sink started its child"))?;
    let (_, rest) = line.split_once("pid=")?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Whether process `pid` has exited (gone, or a zombie waiting to be reaped).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        }
    }
}

#[actix::test]
async fn lines_reach_the_child_and_its_stderr_reaches_the_log() {
    install_metrics();
    let logs = Logs::default();
    let _capture = logs.capture();
    let dir = ScratchDir::new("exec-cat");
    let out = dir.join("out.jsonl");
    let script = format!("echo hello-from-the-child >&2; exec cat >> '{}'", out.display());
    let command = vec!["sh".to_owned(), "-c".to_owned(), script];
    let sink = ExecSink::new("exec-cat", command).start();
    let mut batches = Batches::new();
    let first = numbered("feed", 0, 3);
    let second = numbered("feed", 3, 100);

    sink.do_send(batches.deliver(first.clone()));
    batches.finished().await;
    sink.do_send(batches.deliver(second.clone()));
    batches.finished().await;

    let mut expected = json_lines(&first);
    expected.extend(json_lines(&second));
    eventually("cat to write every line", || std::fs::read(&out).ok().as_ref() == Some(&expected))
        .await;
    eventually("the stderr line in the log", || logs.text().contains("hello-from-the-child")).await;
    let stderr_line =
        logs.text().lines().find(|line| line.contains("hello-from-the-child")).map(str::to_owned);
    let stderr_line = stderr_line.expect("logged");
    assert!(stderr_line.contains("WARN"), "{stderr_line}");
    assert!(
        stderr_line.contains(r#"subscriber="exec-cat""#)
            || stderr_line.contains("subscriber=exec-cat"),
        "{stderr_line}"
    );
    assert_eq!(metric(WRITTEN, r#"subscriber="exec-cat",sink="exec""#), 103.0);

    // Stopping the sink closes cat's input: cat exits by itself.
    let pid = started_pid(&logs).expect("the start was logged");
    drop(sink);
    eventually("cat to exit", || exited(pid)).await;
}

#[actix::test]
async fn a_child_that_ignores_its_closed_input_is_killed_after_the_grace_period() {
    let logs = Logs::default();
    let _capture = logs.capture();
    let command = ["tail", "-f", "/dev/null"].map(str::to_owned).to_vec();
    let sink = ExecSink::new("exec-stubborn", command).start();
    eventually("the child to start", || started_pid(&logs).is_some()).await;
    let pid = started_pid(&logs).expect("started");

    drop(sink);
    eventually("the child to be killed", || exited(pid)).await;
    assert!(logs.text().contains("killing it"), "{}", logs.text());
}

#[actix::test]
async fn a_child_that_cannot_start_is_retried_and_batches_are_dropped_after_the_hold_limit() {
    install_metrics();
    tokio::time::pause();
    let command = vec!["/nonexistent/feedvisor-exec-child".to_owned()];
    let sink = ExecSink::new("exec-missing", command).start();
    let mut batches = Batches::new();
    let labels = r#"subscriber="exec-missing",sink="exec""#;

    // The batch waits for a child for HOLD_LIMIT (paused time jumps ahead), then is dropped.
    let start = actix_rt::time::Instant::now();
    sink.do_send(batches.deliver(numbered("feed", 0, 2)));
    batches.finished_within(HOLD_LIMIT * 4).await;
    assert!(start.elapsed() >= HOLD_LIMIT, "held for {:?}", start.elapsed());
    assert_eq!(metric(DROPPED, &format!(r#"{labels},reason="child_down""#)), 2.0);
    // Tries at 0, 0.5, 1.5, 3.5, 7.5 and 15.5 s: the first start and five restarts.
    assert_eq!(metric(ERRORS, &format!(r#"{labels},kind="spawn""#)), 6.0);
    assert_eq!(metric(RESTARTS, labels), 5.0);

    // While the child stays down, a new batch is dropped at once.
    let now = actix_rt::time::Instant::now();
    sink.do_send(batches.deliver(numbered("feed", 2, 1)));
    batches.finished_within(HOLD_LIMIT * 4).await;
    assert!(now.elapsed() < Duration::from_secs(1), "held for {:?}", now.elapsed());
    assert_eq!(metric(DROPPED, &format!(r#"{labels},reason="child_down""#)), 3.0);
    assert_eq!(metric(WRITTEN, labels), 0.0);
}

#[actix::test]
async fn a_batch_that_finds_the_child_gone_waits_for_the_next_one() {
    install_metrics();
    let logs = Logs::default();
    let _capture = logs.capture();
    let dir = ScratchDir::new("exec-gone");
    let out = dir.join("out.jsonl");
    // Each child takes one line (`read` takes no more from the pipe), then exits.
    let script = format!("IFS= read -r line; printf '%s\\n' \"$line\" >> '{}'", out.display());
    let command = vec!["sh".to_owned(), "-c".to_owned(), script];
    let sink = ExecSink::new("exec-gone", command).start();
    let mut batches = Batches::new();
    let messages = numbered("feed", 0, 3);
    let ended = |logs: &Logs| logs.text().matches("exec sink child ended; restarting it").count();

    for (index, message) in messages.iter().enumerate() {
        // Sent while the child that took the previous line is gone, before its successor starts.
        sink.do_send(batches.deliver(vec![message.clone()]));
        batches.finished().await;
        let expected = json_lines(&messages[..=index]);
        eventually("the line in the file", || std::fs::read(&out).ok() == Some(expected.clone()))
            .await;
        eventually("the child to end", || ended(&logs) > index).await;
    }
    let labels = r#"subscriber="exec-gone",sink="exec""#;
    assert_eq!(metric(WRITTEN, labels), 3.0);
    assert_eq!(metric(RESTARTS, labels), 2.0);
    assert_eq!(metric(DROPPED, &format!(r#"{labels},reason="child_down""#)), 0.0);
    assert!(logs.text().contains("exit status: 0"), "{}", logs.text());
}
