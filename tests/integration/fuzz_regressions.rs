//! The fuzz targets' kept inputs, replayed without the fuzzer: every file in
//! `fuzz/regressions/<target>/` goes through the entry point the target
//! `<target>` calls (the crates' hidden `fuzzing` modules), so what the
//! fuzzer once found, and inputs that reach deep into each parser, are
//! checked by every `cargo test`. Each input runs on a thread of its own
//! under the deadline: a panic or a hang fails the test with the file's name.

use std::path::{Path, PathBuf};

use crate::support::DEADLINE;

/// What a fuzz target calls with each input.
type EntryPoint = fn(&[u8]);

/// Each target and the entry point it calls.
const TARGETS: [(&str, EntryPoint); 5] = [
    ("websocket_frames", feedvisor_transport_websocket::fuzzing::frames),
    ("tcp_framing", feedvisor_transport_tcp::fuzzing::framing),
    ("config_toml", feedvisor::fuzzing::config_toml),
    ("feed_json", feedvisor::fuzzing::feed_json),
    ("topic_and_sequence", feedvisor::fuzzing::topic_and_sequence),
];

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions").join(target);
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_kept_fuzz_input_runs_clean() {
    let mut replayed = 0;
    for (target, run) in TARGETS {
        let files = inputs(target);
        assert!(!files.is_empty(), "fuzz/regressions/{target}/ holds no input");
        for path in files {
            let input = std::fs::read(&path).expect("read a kept input");
            let (done, finished) = std::sync::mpsc::channel();
            let worker = std::thread::spawn(move || {
                run(&input);
                let _ = done.send(());
            });
            let shown = path.display();
            match finished.recv_timeout(DEADLINE) {
                Ok(()) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    panic!("{target}: {shown} still runs after {DEADLINE:?}")
                }
                // The sender went without sending: the entry point panicked.
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = worker.join();
                    panic!("{target}: {shown} panicked (its message is above)");
                }
            }
            replayed += 1;
        }
    }
    eprintln!("fuzz regressions: {replayed} inputs replayed");
}
