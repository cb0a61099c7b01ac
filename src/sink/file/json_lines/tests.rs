//! The file sink's `lines` layout against a real file in a scratch directory.

use actix::prelude::*;

use super::JsonLinesFileSink;
use crate::sink::test_support::*;

const WRITTEN: &str = "feedvisor_sink_messages_written_total";
const DROPPED: &str = "feedvisor_sink_messages_dropped_total";
const ERRORS: &str = "feedvisor_sink_errors_total";

#[actix::test]
async fn each_batch_is_appended_as_the_json_lines_of_its_messages() {
    install_metrics();
    let dir = ScratchDir::new("batches");
    let path = dir.join("out.jsonl");
    let sink = JsonLinesFileSink::new("file-batches", path.clone()).start();
    let mut batches = Batches::new();
    let first = numbered("stocks", 0, 3);
    let second = numbered("stocks", 3, 250);

    sink.do_send(batches.deliver(first.clone()));
    sink.do_send(batches.deliver(second.clone()));
    assert_eq!(batches.finished().await, 0);
    assert_eq!(batches.finished().await, 1);

    let mut expected = json_lines(&first);
    expected.extend(json_lines(&second));
    assert_eq!(std::fs::read(&path).expect("read back"), expected);
    assert_eq!(metric(WRITTEN, r#"subscriber="file-batches",sink="file""#), 253.0);
    assert_eq!(metric(DROPPED, r#"subscriber="file-batches",sink="file",reason="write""#), 0.0);
}

#[actix::test]
async fn a_restarted_sink_appends_to_what_is_there() {
    let dir = ScratchDir::new("append");
    let path = dir.join("out.jsonl");
    std::fs::write(&path, b"{\"already\":\"there\"}\n").expect("seed the file");
    let mut batches = Batches::new();
    let first = numbered("feed", 0, 2);
    let second = numbered("feed", 2, 2);

    let sink = JsonLinesFileSink::new("file-append", path.clone()).start();
    sink.do_send(batches.deliver(first.clone()));
    batches.finished().await;
    drop(sink);
    let sink = JsonLinesFileSink::new("file-append", path.clone()).start();
    sink.do_send(batches.deliver(second.clone()));
    batches.finished().await;

    let mut expected = b"{\"already\":\"there\"}\n".to_vec();
    expected.extend(json_lines(&first));
    expected.extend(json_lines(&second));
    assert_eq!(std::fs::read(&path).expect("read back"), expected);
}

#[actix::test]
async fn a_missing_directory_is_logged_once_counted_and_retried() {
    install_metrics();
    let logs = Logs::default();
    let _capture = logs.capture();
    let dir = ScratchDir::new("missing");
    let missing = dir.join("not-yet");
    let path = missing.join("out.jsonl");
    let sink = JsonLinesFileSink::new("file-missing", path.clone()).start();
    let mut batches = Batches::new();

    // Both batches are finished (released to the router), not stuck.
    sink.do_send(batches.deliver(numbered("feed", 0, 2)));
    sink.do_send(batches.deliver(numbered("feed", 2, 3)));
    batches.finished().await;
    batches.finished().await;
    let labels = r#"subscriber="file-missing",sink="file""#;
    assert_eq!(metric(DROPPED, &format!(r#"{labels},reason="open""#)), 5.0);
    // The open at start and one per batch.
    assert_eq!(metric(ERRORS, &format!(r#"{labels},kind="open""#)), 3.0);
    assert_eq!(metric(WRITTEN, labels), 0.0);
    let logged = logs.text();
    let errors: Vec<&str> = logged.lines().filter(|line| line.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "the same failure is logged once: {logged}");
    assert!(errors[0].contains("does not exist"), "{}", errors[0]);
    assert!(errors[0].contains(&missing.display().to_string()), "{}", errors[0]);

    // Once the directory exists, the next batch opens the file and is written.
    std::fs::create_dir(&missing).expect("create the directory");
    let third = numbered("feed", 5, 1);
    sink.do_send(batches.deliver(third.clone()));
    batches.finished().await;
    assert_eq!(std::fs::read(&path).expect("read back"), json_lines(&third));
    assert_eq!(metric(WRITTEN, labels), 1.0);
    assert!(logs.text().contains("file sink is writing again"), "{}", logs.text());
    assert!(logs.text().contains("lost=5"), "{}", logs.text());
}

#[actix::test]
async fn a_directory_given_to_the_lines_layout_is_reported_with_the_setting_that_fits() {
    install_metrics();
    let logs = Logs::default();
    let _capture = logs.capture();
    let dir = ScratchDir::new("lines-into-dir");
    let sink = JsonLinesFileSink::new("file-dir", dir.0.clone()).start();
    let mut batches = Batches::new();

    sink.do_send(batches.deliver(numbered("feed", 0, 2)));
    batches.finished().await;
    let labels = r#"subscriber="file-dir",sink="file""#;
    assert_eq!(metric(DROPPED, &format!(r#"{labels},reason="open""#)), 2.0);
    let logged = logs.text();
    let error = logged.lines().find(|line| line.contains("ERROR")).expect("an error is logged");
    assert!(error.contains("it is a directory"), "{error}");
    assert!(error.contains("per_message"), "{error}");
}
