//! The admin server's limits at run time: the open-file limit its
//! connections and the feeds need, checked (and the soft limit raised) at
//! start, and the count of its connections, shown as a metric and warned
//! about when it reaches `[http].max_connections`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::dev::Extensions;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

use crate::config::Config;
use crate::metrics::{HTTP_CONNECTIONS, HTTP_CONNECTIONS_MAX};

/// Files the process holds besides connections: the binary's own, logs,
/// the epoll and eventfd handles of each arbiter, sink files.
const BASE_FILES: u64 = 64;

/// The soft limit is raised at most this far, even when the hard one is higher.
const RAISE_AT_MOST: u64 = 1 << 20;

/// The open-file limit is lower than the config needs, and cannot be raised.
#[derive(Debug, thiserror::Error)]
#[error(
    "the config may need {needed} open files (2 per admin connection: http.max_connections = \
     {max_connections}; 2 per feed: {feeds}; {BASE_FILES} for the process) but the limit is \
     {limit}: raise it (`ulimit -n {needed}`, LimitNOFILE={needed} in a systemd unit) or lower \
     http.max_connections and [http.subscribe].max_clients"
)]
pub struct OpenFilesError {
    /// What the config may need.
    pub needed: u64,
    /// The hard limit (the soft one cannot go above it).
    pub limit: u64,
    /// `[http].max_connections`.
    pub max_connections: usize,
    /// The feeds configured.
    pub feeds: usize,
}

/// The files `config` may hold open at once: each admin connection holds
/// two (its socket, and a duplicate that lets a silent `/subscribe` client
/// be cut off), each feed two (its socket, and its replacement's while a
/// replacement runs beside it).
pub(crate) fn files_needed(config: &Config, serve_http: bool) -> u64 {
    let connections = if serve_http { config.http.max_connections } else { 0 };
    let per_connection = 2 * u64::try_from(connections).unwrap_or(u64::MAX / 4);
    let per_feed = 2 * u64::try_from(config.feeds.len()).unwrap_or(u64::MAX / 4);
    BASE_FILES.saturating_add(per_connection).saturating_add(per_feed)
}

/// Checks the open-file limit against what `config` needs; raises the soft
/// limit toward the hard one when it is lower; refuses when even the hard
/// limit is lower.
pub(crate) fn check_open_files(config: &Config, serve_http: bool) -> Result<(), OpenFilesError> {
    let needed = files_needed(config, serve_http);
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let soft = current.unwrap_or(u64::MAX);
    let hard = maximum.unwrap_or(u64::MAX);
    let refusal = || OpenFilesError {
        needed,
        limit: hard,
        max_connections: config.http.max_connections,
        feeds: config.feeds.len(),
    };
    if soft >= needed {
        return Ok(());
    }
    if hard < needed {
        return Err(refusal());
    }
    let raised = hard.min(RAISE_AT_MOST.max(needed));
    match setrlimit(Resource::Nofile, Rlimit { current: Some(raised), maximum }) {
        Ok(()) => {
            tracing::info!(from = soft, to = raised, needed, "raised the open-file limit");
            Ok(())
        }
        Err(error) => {
            tracing::warn!(%error, soft, needed, "cannot raise the open-file limit");
            Err(OpenFilesError { limit: soft, ..refusal() })
        }
    }
}

/// Counts the admin server's connections for [`HTTP_CONNECTIONS`].
#[derive(Clone)]
pub(crate) struct ConnectionCount {
    open: Arc<AtomicUsize>,
    max: usize,
}

impl ConnectionCount {
    pub(crate) fn new(max: usize) -> ConnectionCount {
        metrics::gauge!(HTTP_CONNECTIONS_MAX).set(max as f64);
        metrics::gauge!(HTTP_CONNECTIONS).set(0.0);
        ConnectionCount { open: Arc::new(AtomicUsize::new(0)), max }
    }

    /// For `on_connect`: counts the connection until its data is dropped with it.
    pub(crate) fn opened(&self, data: &mut Extensions) {
        let open = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        metrics::gauge!(HTTP_CONNECTIONS).increment(1.0);
        if open == self.max {
            tracing::warn!(
                max_connections = self.max,
                "the admin server holds its most connections ([http].max_connections): \
                 new ones wait in the backlog until one closes"
            );
        }
        data.insert(OpenConnection { open: self.open.clone() });
    }
}

/// One connection counted; uncounted when the connection's data is dropped.
struct OpenConnection {
    open: Arc<AtomicUsize>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(HTTP_CONNECTIONS).decrement(1.0);
    }
}
