//! The built-in sinks through the whole sidecar: a real WebSocket feed whose
//! messages the test sends one by one, and real files and child processes.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use feedvisor::config::Config;
use feedvisor::transports::TransportRegistry;
use feedvisor::Sidecar;
use tokio::sync::mpsc;

use crate::support::{
    encode_frame, eventually, metric, opcode, wait_for_metric, RawServer, RawWs, DEADLINE, FIN,
};

/// A directory under the system temp dir, removed (with its contents) on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(name: &str) -> ScratchDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir()
            .join(format!("feedvisor-sinks-{}-{unique}-{name}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create scratch dir");
        ScratchDir(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A WebSocket upstream that sends what the test hands it, when it hands it.
/// The first connection gets the messages; it answers pings and closes.
async fn scripted_upstream() -> (RawServer, mpsc::UnboundedSender<String>) {
    let (sender, receiver) = mpsc::unbounded_channel::<String>();
    let receiver = Rc::new(RefCell::new(Some(receiver)));
    let server = RawServer::start(move |_, socket| {
        let outbound = receiver.borrow_mut().take();
        async move {
            let Ok(mut ws) = RawWs::accept(socket).await else { return };
            let Some(mut outbound) = outbound else {
                ws.serve(None).await;
                return;
            };
            loop {
                tokio::select! {
                    text = outbound.recv() => match text {
                        Some(text) => {
                            if ws.send_text(&text).await.is_err() {
                                return;
                            }
                        }
                        None => return,
                    },
                    frame = ws.read_frame() => match frame {
                        Ok(Some(frame)) if frame.opcode == opcode::PING => {
                            let pong = encode_frame(FIN | opcode::PONG, &frame.payload);
                            if ws.write_raw(&pong).await.is_err() {
                                return;
                            }
                        }
                        Ok(Some(frame)) if frame.opcode == opcode::CLOSE => return,
                        Ok(Some(_)) => {}
                        _ => return,
                    },
                }
            }
        }
    })
    .await;
    (server, sender)
}

/// Sends `{"seq":N}` for each N in `seqs`.
fn send_numbered(upstream: &mpsc::UnboundedSender<String>, seqs: std::ops::Range<usize>) {
    for seq in seqs {
        upstream.send(format!(r#"{{"seq":{seq}}}"#)).expect("upstream alive");
    }
}

/// The `seq` of every JSON line in `path` (none if it does not exist yet).
fn seqs_in(path: &Path) -> Vec<u64> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    text.lines()
        .filter(|line| line.ends_with('}'))
        .map(|line| {
            let line: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let payload: serde_json::Value =
                serde_json::from_str(line["payload"].as_str().expect("a text payload"))
                    .expect("a JSON payload");
            payload["seq"].as_u64().expect("a seq")
        })
        .collect()
}

/// Waits until `path` holds exactly the lines of `expected`, in order.
async fn wait_for_seqs(path: &Path, expected: std::ops::Range<u64>) {
    let expected: Vec<u64> = expected.collect();
    let what = format!("seqs {expected:?} in {}", path.display());
    eventually(DEADLINE, &what, || {
        let seqs = seqs_in(path);
        assert!(seqs.len() <= expected.len(), "more lines than sent: {seqs:?}");
        std::future::ready((seqs == expected).then_some(()))
    })
    .await;
}

/// The process id a child wrote to `path`, once it has.
fn pid_in(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether process `pid` has exited (gone, or a zombie waiting to be reaped).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // "PID (COMMAND) STATE ...": the state follows the last ')'.
        Ok(stat) => {
            stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        }
    }
}

async fn start_sidecar(toml: &str) -> Sidecar {
    let config = Config::from_toml_str(
        toml,
        Path::new("sinks-test.toml"),
        &TransportRegistry::with_defaults(),
    )
    .expect("valid config");
    Sidecar::builder(config).without_http().start().await.expect("sidecar started")
}

#[actix::test]
async fn exec_sink_restarts_a_killed_child_and_the_next_messages_reach_the_new_one() {
    let dir = ScratchDir::new("exec");
    let (out, pid_file) = (dir.join("out.jsonl"), dir.join("child.pid"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/exec_recorder.py");
    let (server, upstream) = scripted_upstream().await;
    let sidecar = start_sidecar(&format!(
        r#"
        [[feeds]]
        name = "exec-feed"
        url = "ws://{addr}/feed"
        [[subscribers]]
        name = "exec-recorder"
        feeds = ["exec-feed"]
        sink = "exec"
        command = ["python3", "{script}", "{out}", "{pid_file}"]
        "#,
        addr = server.addr,
        out = out.display(),
        pid_file = pid_file.display(),
    ))
    .await;
    let labels = r#"subscriber="exec-recorder",sink="exec""#;

    send_numbered(&upstream, 0..10);
    wait_for_seqs(&out, 0..10).await;
    let first = pid_in(&pid_file).expect("the child wrote its pid");
    assert_eq!(metric(&sidecar, "feedvisor_sink_restarts_total", labels), 0.0);

    // Kill the child while the feed stays open; send more once it is dead,
    // so they find a broken pipe rather than disappearing into the old one.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &first.to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    eventually(DEADLINE, "the child to die", || std::future::ready(exited(first).then_some(())))
        .await;
    send_numbered(&upstream, 10..25);

    // The batch that found the child gone waits for the new child; nothing is lost.
    wait_for_seqs(&out, 0..25).await;
    let second = pid_in(&pid_file).expect("the new child wrote its pid");
    assert_ne!(first, second, "a new child");
    wait_for_metric(&sidecar, "feedvisor_sink_restarts_total", labels, |count| count == 1.0).await;
    assert_eq!(metric(&sidecar, "feedvisor_sink_messages_written_total", labels), 25.0);
    assert_eq!(
        metric(
            &sidecar,
            "feedvisor_sink_messages_dropped_total",
            &format!(r#"{labels},reason="child_down""#)
        ),
        0.0
    );

    // Removing the subscriber stops the sink: the child's input closes and it exits.
    assert!(sidecar.unsubscribe("exec-recorder").await);
    eventually(DEADLINE, "the child to exit", || std::future::ready(exited(second).then_some(())))
        .await;
    sidecar.stop().await;
    server.stop().await;
}

#[actix::test]
async fn file_sink_appends_what_the_feed_sends() {
    let dir = ScratchDir::new("file");
    let out = dir.join("out.jsonl");
    let (server, upstream) = scripted_upstream().await;
    let sidecar = start_sidecar(&format!(
        r#"
        [[feeds]]
        name = "file-feed"
        url = "ws://{addr}/feed"
        [[subscribers]]
        name = "file-writer"
        feeds = ["file-feed"]
        sink = "file"
        path = "{out}"
        "#,
        addr = server.addr,
        out = out.display(),
    ))
    .await;

    send_numbered(&upstream, 0..100);
    wait_for_seqs(&out, 0..100).await;
    let labels = r#"subscriber="file-writer",sink="file""#;
    wait_for_metric(&sidecar, "feedvisor_sink_messages_written_total", labels, |count| {
        count == 100.0
    })
    .await;
    // Every line names its feed.
    let text = std::fs::read_to_string(&out).expect("read back");
    assert!(text.lines().all(|line| line.contains(r#""feed":"file-feed""#)));
    sidecar.stop().await;
    server.stop().await;
}
