//! The sidecar as a library: start it from a config value and subscribe actors.
//!
//! ```no_run
//! # async fn example(config: feedvisor::config::Config, me: actix::Recipient<feedvisor::Deliver>) {
//! use feedvisor::{Sidecar, SubscriptionSpec};
//! let sidecar = Sidecar::builder(config)
//!     .subscriber(SubscriptionSpec::new("mine", ["stocks"]).with_topics(["AAPL"]), me)
//!     .start()
//!     .await
//!     .expect("sidecar started");
//! // ... later
//! sidecar.stop().await;
//! # }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use feedvisor_transport_api::{Outbound, Transport};

use crate::cluster::{Cluster, Leave};
use crate::config::{Config, ConfigError};
use crate::connection::{send_in_pieces, SendError, SendOutcome};
use crate::http::{self, AdminServer};
use crate::inbox::delivery::Deliver;
use crate::metrics::{self, MetricsError, MetricsHandle};
use crate::router::{GetInFlight, Router, Subscribe, SubscriptionSpec, Unsubscribe};
use crate::status::FeedStatus;
use crate::supervisor::{
    AddFeed, ChangeError, CloseFeeds, GetConnection, GetReadiness, GetStatus, Readiness,
    ReconnectFeed, Reload, ReloadReport, RemoveFeed, ReplaceFeed, SendToFeed, Shutdown, Supervisor,
};
use crate::transports::TransportRegistry;

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A feed's scheme is not served by the builder's transports, or its
    /// transport refuses its settings (the config was checked with other
    /// transports than the ones it runs with: register the same ones with
    /// [`SidecarBuilder::transport`]).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The metrics recorder could not be installed.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The open-file limit is lower than the config may need.
    #[error(transparent)]
    OpenFiles(#[from] http::limits::OpenFilesError),
    /// The admin HTTP server could not bind.
    #[error("cannot listen for HTTP on {addr}: {source} (is another process using it? set [http].listen or --listen)")]
    Http {
        /// The address asked for.
        addr: SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
}

/// Collects what the sidecar starts with.
pub struct SidecarBuilder {
    config: Config,
    config_path: Option<PathBuf>,
    transports: TransportRegistry,
    subscribers: Vec<(SubscriptionSpec, Recipient<Deliver>)>,
    serve_http: bool,
}

impl SidecarBuilder {
    /// Adds (or replaces, by scheme) a transport plugin. A config naming its
    /// scheme must have been checked with a registry that has it too (see
    /// [`Config::load`]); `start` checks the config's feeds again with these transports.
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transports.register(transport);
        self
    }

    /// Runs with exactly these transports, replacing the built-in ones: such
    /// as the registry the config was checked with.
    pub fn transports(mut self, transports: TransportRegistry) -> Self {
        self.transports = transports;
        self
    }

    /// Subscribes an actor before any feed connects, so it misses nothing.
    pub fn subscriber(mut self, spec: SubscriptionSpec, recipient: Recipient<Deliver>) -> Self {
        self.subscribers.push((spec, recipient));
        self
    }

    /// Overrides `[http].listen`.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.config.http.listen = addr;
        self
    }

    /// The file the config came from: enables reloading it (`SIGHUP`, `POST /reload`).
    pub fn config_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_path = Some(path.into());
        self
    }

    /// Runs without the admin HTTP server.
    pub fn without_http(mut self) -> Self {
        self.serve_http = false;
        self
    }

    /// Checks the config's feeds against the builder's transports, then
    /// starts the router, the supervisor with the config's sinks and feeds,
    /// and the admin server. Must run inside an actix system.
    pub async fn start(self) -> Result<Sidecar, StartError> {
        let SidecarBuilder { config, config_path, transports, subscribers, serve_http } = self;
        let origin = config_path
            .as_ref()
            .map_or_else(|| "config".to_owned(), |path| path.display().to_string());
        config.check_transports(&origin, &transports)?;
        http::limits::check_open_files(&config, serve_http)?;
        let metrics = metrics::install()?;
        metrics.set_buckets(&config.metrics.buckets);
        let router = Router::new();
        let routes = router.routes();
        let router = router.start();
        // Library subscribers before any feed starts, so they see the first messages.
        for (spec, recipient) in subscribers {
            // Waited for, so the table holds it before any feed starts.
            let _ = router.send(Subscribe { spec, recipient }).await;
        }
        let http_config = config.http.clone();
        let shutdown_timeout = config.shutdown_timeout;
        let cluster_config = config.cluster.clone();
        // Made before the admin server, which routes feed changes to it, and
        // started once the server's address is known, which it announces.
        let cluster_context: Option<Context<Cluster>> =
            cluster_config.as_ref().map(|_| Context::new());
        let cluster = cluster_context.as_ref().map(Context::address);
        let supervisor = Supervisor::new(config, config_path, transports, router.clone(), routes);
        let hosts = supervisor.hosts();
        let supervisor = supervisor.start();
        let admin = if serve_http {
            let listen = http_config.listen;
            let server = http::start(
                &http_config,
                supervisor.clone(),
                router.clone(),
                metrics.clone(),
                cluster.clone(),
                hosts,
            )
            .map_err(|source| StartError::Http { addr: listen, source })?;
            Some(server)
        } else {
            None
        };
        if let (Some(context), Some(config)) = (cluster_context, cluster_config) {
            let http = admin.as_ref().map(|admin| admin.addr);
            context.run(Cluster::new(config, http, supervisor.clone()));
        }
        Ok(Sidecar { supervisor, router, admin, metrics, shutdown_timeout, cluster })
    }
}

/// A running sidecar.
pub struct Sidecar {
    supervisor: Addr<Supervisor>,
    router: Addr<Router>,
    admin: Option<AdminServer>,
    metrics: MetricsHandle,
    shutdown_timeout: Duration,
    /// The cluster member, in a `[cluster]`.
    cluster: Option<Addr<Cluster>>,
}

/// What a shutdown could not finish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Subscribers that still held messages when the drain time ran out, with their counts.
    pub undelivered: Vec<(String, u64)>,
}

/// How often shutdown looks at what subscribers still hold.
const DRAIN_POLL: Duration = Duration::from_millis(20);

impl Sidecar {
    /// Starts describing a sidecar for `config`, with the built-in transports.
    pub fn builder(config: Config) -> SidecarBuilder {
        SidecarBuilder {
            config,
            config_path: None,
            transports: TransportRegistry::with_defaults(),
            subscribers: Vec::new(),
            serve_http: true,
        }
    }

    /// The admin server's address, when it runs.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|admin| admin.addr)
    }

    /// Subscribes an actor while running (it sees messages from now on).
    pub fn subscribe(&self, spec: SubscriptionSpec, recipient: Recipient<Deliver>) {
        self.router.do_send(Subscribe { spec, recipient });
    }

    /// Removes a subscriber by name; false when none had that name.
    pub async fn unsubscribe(&self, name: &str) -> bool {
        self.router.send(Unsubscribe { name: name.to_owned() }).await.unwrap_or(false)
    }

    /// The status of every feed.
    pub async fn feeds(&self) -> Vec<FeedStatus> {
        self.supervisor.send(GetStatus).await.unwrap_or_default()
    }

    /// Sends a text or binary message to a feed's peer; while the feed is down
    /// it waits in the feed's outbound queue. While the feed is open, what its
    /// writer has not taken yet counts against the same limits: a peer that
    /// is not keeping up makes this fail with [`SendError::Backlog`] (nothing
    /// was sent; retry later).
    pub async fn send(&self, feed: &str, message: Outbound) -> Result<SendOutcome, SendError> {
        let send = SendToFeed { feed: feed.to_owned(), message };
        self.supervisor.send(send).await.unwrap_or(Err(SendError::Unavailable))
    }

    /// Sends a binary message of any size upstream from a stream of bytes,
    /// in fragments as the bytes come, never holding it whole. The feed must
    /// be open; the message does not wait in the outbound queue. If `body`
    /// fails, or this future is dropped, before the end, the message is
    /// abandoned: the connection closes with 1011 and reconnects.
    pub async fn send_stream<S, E>(&self, feed: &str, body: S) -> Result<u64, SendError>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, E>>,
    {
        let lookup = GetConnection { name: feed.to_owned() };
        let actor = self.supervisor.send(lookup).await.map_err(|_| SendError::Unavailable)??;
        send_in_pieces(actor, body).await
    }

    /// Whether every required feed is open.
    pub async fn readiness(&self) -> Option<Readiness> {
        self.supervisor.send(GetReadiness).await.ok()
    }

    /// Re-reads the config file and applies the difference.
    pub async fn reload(&self) -> Result<ReloadReport, ChangeError> {
        self.supervisor.send(Reload).await.unwrap_or(Err(ChangeError::ShuttingDown))
    }

    /// Adds a feed given in the config's `[[feeds]]` shape, as JSON (what
    /// `POST /feeds` does): its status, or why it was refused.
    pub async fn add_feed(&self, feed: serde_json::Value) -> Result<FeedStatus, ChangeError> {
        self.change(AddFeed { feed }).await
    }

    /// Replaces a feed by one given as JSON (what `PUT /feeds/{name}` does):
    /// the old connection closes once the new one is open or, on a sequenced
    /// feed, once the new one takes over delivery; in any case after a
    /// bounded wait. The JSON's `name`, if given, must be `name`.
    pub async fn replace_feed(
        &self,
        name: &str,
        feed: serde_json::Value,
    ) -> Result<FeedStatus, ChangeError> {
        self.change(ReplaceFeed { name: name.to_owned(), feed }).await
    }

    /// Closes a feed (1000) and removes it (what `DELETE /feeds/{name}` does).
    pub async fn remove_feed(&self, name: &str) -> Result<(), ChangeError> {
        self.change(RemoveFeed { name: name.to_owned() }).await
    }

    /// Drops a feed's connection and connects again at once with its backoff
    /// reset, reviving a failed feed (what `POST /feeds/{name}/reconnect` does).
    pub async fn reconnect_feed(&self, name: &str) -> Result<(), ChangeError> {
        self.change(ReconnectFeed { name: name.to_owned() }).await
    }

    /// Asks the supervisor for a change; a supervisor that is gone is shutting down.
    async fn change<M, T>(&self, change: M) -> Result<T, ChangeError>
    where
        M: Message<Result = Result<T, ChangeError>> + Send + 'static,
        T: Send + 'static,
        Supervisor: Handler<M>,
    {
        self.supervisor.send(change).await.unwrap_or(Err(ChangeError::ShuttingDown))
    }

    /// The metrics in Prometheus text format.
    pub fn render_metrics(&self) -> String {
        self.metrics.render()
    }

    /// Shuts down gracefully: in a cluster, releases this replica's leases
    /// (its feeds stop here and the other replicas take them); then refuses
    /// changes, closes every feed (1001), lets
    /// subscribers handle what they hold for up to `shutdown_timeout`, then
    /// stops the admin server and the actors. What was left undelivered is
    /// logged with its count and reported.
    pub async fn stop(self) -> ShutdownReport {
        if let Some(cluster) = &self.cluster {
            // Release the leases first, so that other replicas take the feeds at once.
            let _ = cluster.send(Leave).await;
        }
        let _ = self.supervisor.send(CloseFeeds).await;
        let deadline = actix_rt::time::Instant::now() + self.shutdown_timeout;
        let undelivered = loop {
            let in_flight = self.router.send(GetInFlight).await.unwrap_or_default();
            let holding: Vec<(String, u64)> =
                in_flight.into_iter().filter(|(_, count)| *count > 0).collect();
            if holding.is_empty() || actix_rt::time::Instant::now() >= deadline {
                break holding;
            }
            actix_rt::time::sleep(DRAIN_POLL).await;
        };
        for (subscriber, count) in &undelivered {
            tracing::warn!(%subscriber, undelivered = count, "shutdown timeout reached: messages not handled");
        }
        if let Some(admin) = &self.admin {
            admin.stop().await;
        }
        let _ = self.supervisor.send(Shutdown).await;
        ShutdownReport { undelivered }
    }
}
