//! The exec provider: a program run without a shell, in the config file's
//! directory, with the environment of feedvisor and `FEEDVISOR_FEED` set to
//! the feed's name. Its standard output (at most `max_output` bytes) is the
//! output; its standard error is read and dropped, so that a chatty program
//! cannot block on a full pipe and nothing it says reaches a log. It runs in
//! a process group of its own, which is killed when the run times out, the
//! output grows too large, or the run is abandoned (the feed stopped).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};

use super::{FetchError, Provider};
use crate::config::{CredentialSource, CredentialsConfig};

/// Runs one program per fetch.
pub(super) struct ExecProvider {
    program: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
    feed: String,
    timeout: Duration,
    max_output: u64,
    /// `exec ./get-token.sh`.
    described: String,
}

impl ExecProvider {
    pub(super) fn new(config: &CredentialsConfig, feed: &str) -> Self {
        let (program, args, dir) = match &config.source {
            CredentialSource::Exec { command, program, dir } => {
                (program.clone(), command.iter().skip(1).cloned().collect(), dir.clone())
            }
            CredentialSource::Http(_) => (PathBuf::new(), Vec::new(), PathBuf::new()),
        };
        ExecProvider {
            program,
            args,
            dir,
            feed: feed.to_owned(),
            timeout: config.timeout,
            max_output: config.max_output,
            described: config.source.describe(),
        }
    }
}

impl Provider for ExecProvider {
    fn run(&self) -> LocalBoxFuture<'static, Result<Vec<u8>, FetchError>> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .current_dir(&self.dir)
            .env("FEEDVISOR_FEED", &self.feed)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let (timeout, limit, provider) = (self.timeout, self.max_output, self.described.clone());
        async move {
            let child = command.spawn().map_err(|error| FetchError::Start {
                provider: provider.clone(),
                reason: error.to_string(),
            })?;
            let mut running = Running { child };
            let result = actix_rt::time::timeout(timeout, running.finish(limit)).await;
            match result {
                Err(_) => {
                    running.kill();
                    Err(FetchError::Timeout { provider, after: timeout, killed: ": killed" })
                }
                Ok(Outcome::TooLarge) => {
                    running.kill();
                    Err(FetchError::TooLarge { provider, limit })
                }
                Ok(Outcome::Failed(reason)) => {
                    running.kill();
                    Err(FetchError::Start { provider, reason })
                }
                Ok(Outcome::Exited { success: false, status, .. }) => {
                    Err(FetchError::ExitStatus { provider, status })
                }
                Ok(Outcome::Exited { success: true, output, .. }) => Ok(output),
            }
        }
        .boxed_local()
    }

    fn describe(&self) -> &str {
        &self.described
    }
}

/// How a run ended, short of its timeout.
enum Outcome {
    /// The program exited; its output was within the limit.
    Exited { success: bool, status: String, output: Vec<u8> },
    /// It printed more than the limit.
    TooLarge,
    /// Its pipes could not be read.
    Failed(String),
}

/// A child that is killed, with its process group, if the run is dropped.
struct Running {
    child: Child,
}

impl Running {
    /// Reads stdout up to `limit` and drains stderr until both close, then waits for the exit.
    async fn finish(&mut self, limit: u64) -> Outcome {
        let (Some(stdout), Some(stderr)) = (self.child.stdout.take(), self.child.stderr.take())
        else {
            return Outcome::Failed("its output pipes are missing".to_owned());
        };
        let (output, ()) = tokio::join!(read_bounded(stdout, limit), drain(stderr));
        let output = match output {
            Ok(Some(output)) => output,
            Ok(None) => return Outcome::TooLarge,
            Err(error) => return Outcome::Failed(format!("reading its output failed: {error}")),
        };
        match self.child.wait().await {
            Ok(status) => {
                Outcome::Exited { success: status.success(), status: status.to_string(), output }
            }
            Err(error) => Outcome::Failed(format!("waiting for it failed: {error}")),
        }
    }

    /// Kills the program's process group (what it started too), then the program.
    fn kill(&mut self) {
        if let Some(pid) = self
            .child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.child.start_kill();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Still running when the run is abandoned (timeout, the feed stopped): gone with its group.
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

/// Everything `reader` gives, or `None` once it gives more than `limit` bytes.
async fn read_bounded(
    reader: impl AsyncRead + Unpin,
    limit: u64,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut output = Vec::new();
    let read = reader.take(limit.saturating_add(1)).read_to_end(&mut output).await?;
    Ok((read as u64 <= limit).then_some(output))
}

/// Reads `reader` to its end and keeps nothing: a provider's stderr may hold secrets.
async fn drain(mut reader: impl AsyncRead + Unpin) {
    let mut buffer = [0u8; 4096];
    while matches!(reader.read(&mut buffer).await, Ok(read) if read > 0) {}
}
