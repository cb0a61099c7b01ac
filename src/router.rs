//! The router: owns the subscription table and publishes it to the feeds.
//!
//! The router is not on the per-message path. It keeps the table of
//! subscriptions (feed and topic glob patterns, each with its subscriber's
//! [`Inbox`]) and, on every change, publishes an immutable snapshot in
//! [`Routes`]. Each connection actor keeps a [`FeedRoutes`]: the targets of
//! its own feed, worked out once per published version (one atomic load per
//! batch tells it whether the table changed), and pushes each batch straight
//! into its targets' inboxes. The inboxes bound what waits for each
//! subscriber and apply its overflow policy (see [`crate::inbox`]); payloads
//! are shared, never copied.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use actix::prelude::*;
use wildmatch::WildMatch;

use crate::flow::FlowGate;
use crate::inbox::delivery::{batch_vec, recycle, Deliver, FeedMessage, LatencySampler};
use crate::inbox::SubscriberOverflow;
use crate::inbox::{Inbox, InboxGone};

/// Messages that may wait for a subscriber unless it asks otherwise.
pub(crate) const DEFAULT_QUEUE: usize = crate::inbox::DEFAULT_QUEUE;

/// What a subscriber wants: feeds and, optionally, topics, by glob pattern;
/// and how many messages may wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSpec {
    /// The subscriber's name (a metric label: keep it short and fixed).
    pub name: String,
    /// Feed names or patterns (`*` and `?`).
    pub feeds: Vec<String>,
    /// Topic patterns; `None` takes every message, topic or not.
    pub topics: Option<Vec<String>>,
    /// Messages that may wait for the subscriber (default 1024).
    pub queue: usize,
    /// What happens when they are more (default drop_oldest).
    pub overflow: SubscriberOverflow,
    /// The `subscriber` label of its metrics; `None`: the name. Subscribers
    /// that come and go (WebSocket clients) share one label, so that labels
    /// stay a small fixed set.
    pub metric_label: Option<String>,
}

impl SubscriptionSpec {
    /// A subscription to the given feeds, every topic.
    pub fn new(
        name: impl Into<String>,
        feeds: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        SubscriptionSpec {
            name: name.into(),
            feeds: feeds.into_iter().map(Into::into).collect(),
            topics: None,
            queue: DEFAULT_QUEUE,
            overflow: SubscriberOverflow::default(),
            metric_label: None,
        }
    }

    /// Reports metrics under `label` instead of the subscriber's name.
    pub(crate) fn with_metric_label(mut self, label: impl Into<String>) -> Self {
        self.metric_label = Some(label.into());
        self
    }

    /// Sets the queue bound and the overflow policy.
    pub fn with_queue(mut self, queue: usize, overflow: SubscriberOverflow) -> Self {
        self.queue = queue.max(1);
        self.overflow = overflow;
        self
    }

    /// Narrows the subscription to the given topic patterns.
    pub fn with_topics(mut self, topics: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.topics = Some(topics.into_iter().map(Into::into).collect());
        self
    }
}

/// One subscription as the feeds see it.
struct TableEntry {
    /// Feed name patterns.
    feeds: Vec<WildMatch>,
    /// Topic patterns; `None` takes every message.
    topics: Option<Arc<[WildMatch]>>,
    /// Where its messages go.
    inbox: Arc<Inbox>,
}

/// An immutable snapshot of the subscription table, in subscription order.
#[derive(Default)]
pub(crate) struct RouteTable {
    entries: Vec<TableEntry>,
}

/// The table the router last published; connection actors read it.
///
/// Readers check [`Routes::version`] (one atomic load) and take the lock only
/// when it changed, which happens only when subscriptions change.
pub(crate) struct Routes {
    /// Bumped (inside the write lock) after every publication; starts at 1,
    /// so that 0 means "never read" to a [`FeedRoutes`].
    version: AtomicU64,
    table: RwLock<Arc<RouteTable>>,
}

impl Default for Routes {
    fn default() -> Self {
        Routes { version: AtomicU64::new(1), table: RwLock::default() }
    }
}

impl Routes {
    /// The current table and its version, read together.
    fn snapshot(&self) -> (u64, Arc<RouteTable>) {
        let table = self.table.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        (self.version.load(Ordering::Acquire), table.clone())
    }

    fn publish(&self, table: RouteTable) {
        let mut current = self.table.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        *current = Arc::new(table);
        self.version.fetch_add(1, Ordering::AcqRel);
    }
}

/// Where one subscriber wants a feed's messages.
struct Target {
    inbox: Arc<Inbox>,
    topics: Option<Arc<[WildMatch]>>,
    latency: Arc<LatencySampler>,
}

impl Target {
    fn wants(&self, message: &FeedMessage) -> bool {
        match (&self.topics, &message.topic) {
            (None, _) => true,
            // A discontinuity event has no topic and reaches every subscriber of its feed.
            (Some(_), None) => message.discontinuity.is_some(),
            (Some(patterns), Some(topic)) => patterns.iter().any(|pattern| pattern.matches(topic)),
        }
    }
}

/// One feed's view of the table: the subscribers that want it, worked out
/// once per published version. A connection actor owns one and hands it
/// every batch.
pub(crate) struct FeedRoutes {
    routes: Arc<Routes>,
    feed: Arc<str>,
    /// The version `targets` was worked out from (0: never).
    version: u64,
    targets: Vec<Target>,
}

impl FeedRoutes {
    /// The routes of `feed` in the table `routes` publishes.
    pub(crate) fn new(routes: Arc<Routes>, feed: Arc<str>) -> Self {
        FeedRoutes { routes, feed, version: 0, targets: Vec::new() }
    }

    fn refresh(&mut self) {
        if self.routes.version.load(Ordering::Acquire) == self.version {
            return;
        }
        let (version, table) = self.routes.snapshot();
        let feed = &self.feed;
        self.targets = table
            .entries
            .iter()
            .filter(|entry| entry.feeds.iter().any(|pattern| pattern.matches(feed)))
            .map(|entry| Target {
                inbox: entry.inbox.clone(),
                topics: entry.topics.clone(),
                latency: entry.inbox.latency_for(feed),
            })
            .collect();
        self.version = version;
    }

    /// Hands a batch of this feed to every subscriber that wants it; `gate`
    /// is the feed's, closed by backpressure subscribers whose inbox is full.
    pub(crate) fn publish(&mut self, messages: Vec<FeedMessage>, gate: &Arc<FlowGate>) {
        if messages.is_empty() {
            return;
        }
        self.refresh();
        let mut messages = Some(messages);
        let count = self.targets.len();
        for (position, target) in self.targets.iter().enumerate() {
            let last = position + 1 == count;
            let batch: Vec<FeedMessage> = if target.topics.is_none() && last {
                // Every message: the last subscriber takes the batch itself, the others a copy.
                messages.take().unwrap_or_default()
            } else {
                let all = messages.as_deref().unwrap_or_default();
                let mut copy = batch_vec(all.len());
                if target.topics.is_none() {
                    copy.extend_from_slice(all);
                } else {
                    copy.extend(all.iter().filter(|m| target.wants(m)).cloned());
                }
                copy
            };
            target.inbox.push(batch, &target.latency, gate);
        }
        if let Some(unrouted) = messages {
            recycle(unrouted);
        }
    }
}

/// A subscription as the router keeps it.
struct Subscription {
    name: String,
    feeds: Vec<String>,
    topics: Option<Vec<String>>,
    inbox: Arc<Inbox>,
}

/// The subscription table's owner.
#[derive(Default)]
pub(crate) struct Router {
    /// By subscription number, which is subscription order.
    subscriptions: BTreeMap<u64, Subscription>,
    /// What the feeds read.
    routes: Arc<Routes>,
    next_id: u64,
}

impl Router {
    /// An empty table.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The table this router publishes, for connection actors (see [`FeedRoutes`]).
    pub(crate) fn routes(&self) -> Arc<Routes> {
        self.routes.clone()
    }

    /// Publishes the table as it is now.
    fn publish(&self) {
        let entries = self
            .subscriptions
            .values()
            .map(|subscription| TableEntry {
                feeds: subscription.feeds.iter().map(|pattern| WildMatch::new(pattern)).collect(),
                topics: subscription
                    .topics
                    .as_ref()
                    .map(|topics| topics.iter().map(|pattern| WildMatch::new(pattern)).collect()),
                inbox: subscription.inbox.clone(),
            })
            .collect();
        self.routes.publish(RouteTable { entries });
    }

    fn insert(
        &mut self,
        spec: SubscriptionSpec,
        recipient: Recipient<Deliver>,
        ctx: &Context<Self>,
    ) {
        let SubscriptionSpec { name, feeds, topics, queue, overflow, metric_label } = spec;
        self.remove_named(&name);
        self.next_id += 1;
        let label = metric_label.unwrap_or_else(|| name.clone());
        let inbox = Inbox::new(
            self.next_id,
            name.clone(),
            label,
            queue,
            overflow,
            recipient,
            Some(ctx.address().recipient()),
        );
        self.subscriptions.insert(self.next_id, Subscription { name, feeds, topics, inbox });
        self.publish();
    }

    /// Removes the subscription named `name`; what it had queued is dropped
    /// (it asked to go) and counted, and the gates it held closed open.
    fn remove_named(&mut self, name: &str) -> bool {
        let Some(id) = self.subscriptions.iter().find(|(_, s)| s.name == name).map(|(id, _)| *id)
        else {
            return false;
        };
        if let Some(subscription) = self.subscriptions.remove(&id) {
            subscription.inbox.unsubscribed();
        }
        self.publish();
        true
    }
}

impl Actor for Router {
    type Context = Context<Self>;
}

/// Adds a subscriber to the table (replacing one of the same name).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Subscribe {
    /// What the subscriber wants.
    pub spec: SubscriptionSpec,
    /// Where its batches go.
    pub recipient: Recipient<Deliver>,
}

impl Handler<Subscribe> for Router {
    type Result = ();

    fn handle(&mut self, message: Subscribe, ctx: &mut Context<Self>) {
        let Subscribe { spec, recipient } = message;
        tracing::debug!(subscriber = %spec.name, feeds = ?spec.feeds, topics = ?spec.topics, "subscribed");
        self.insert(spec, recipient, ctx);
    }
}

/// Removes a subscriber by name.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct Unsubscribe {
    /// The name it subscribed with.
    pub name: String,
}

impl Handler<Unsubscribe> for Router {
    type Result = bool;

    /// A subscriber that asked to go leaves `/metrics` too (one replaced by
    /// a new subscription of the same name keeps its series).
    fn handle(&mut self, message: Unsubscribe, _: &mut Context<Self>) -> bool {
        let inbox = self.subscriptions.values().find(|s| s.name == message.name);
        let inbox = inbox.map(|subscription| subscription.inbox.clone());
        let removed = self.remove_named(&message.name);
        if let Some(inbox) = inbox {
            inbox.forget_metrics();
        }
        removed
    }
}

/// Asks how many messages each subscriber has not handled yet (queued, or in
/// the batch it holds), by subscriber name.
#[derive(Message)]
#[rtype(result = "Vec<(String, u64)>")]
pub(crate) struct GetInFlight;

impl Handler<GetInFlight> for Router {
    type Result = MessageResult<GetInFlight>;

    fn handle(&mut self, _: GetInFlight, _: &mut Context<Self>) -> Self::Result {
        let mut pending: Vec<(String, u64)> = self
            .subscriptions
            .values()
            .map(|s| (s.name.clone(), s.inbox.in_flight() as u64))
            .collect();
        pending.sort();
        MessageResult(pending)
    }
}

impl Handler<InboxGone> for Router {
    type Result = ();

    fn handle(&mut self, gone: InboxGone, _: &mut Context<Self>) {
        if self.subscriptions.remove(&gone.subscription).is_some() {
            self.publish();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::*;
    use crate::metrics;

    /// A subscriber that forwards what it receives to the test.
    struct Collector(mpsc::UnboundedSender<Vec<FeedMessage>>);

    impl Actor for Collector {
        type Context = Context<Self>;
    }

    impl Handler<Deliver> for Collector {
        type Result = ();
        fn handle(&mut self, mut deliver: Deliver, _: &mut Context<Self>) {
            let _ = self.0.send(deliver.take());
        }
    }

    /// A subscriber that keeps every batch until told to let go: a stalled consumer.
    struct Holder {
        held: Vec<Deliver>,
        seen: mpsc::UnboundedSender<Vec<String>>,
    }

    impl Actor for Holder {
        type Context = Context<Self>;
    }

    impl Handler<Deliver> for Holder {
        type Result = ();
        fn handle(&mut self, mut deliver: Deliver, _: &mut Context<Self>) {
            let texts =
                deliver.messages().iter().filter_map(|m| m.text().map(str::to_owned)).collect();
            let _ = self.seen.send(texts);
            self.held.push(deliver);
        }
    }

    /// Lets go of every held batch.
    #[derive(Message)]
    #[rtype(result = "()")]
    struct Release;

    impl Handler<Release> for Holder {
        type Result = ();
        fn handle(&mut self, _: Release, _: &mut Context<Self>) {
            self.held.clear();
        }
    }

    /// A router and the feeds' side of its table, as connection actors use it.
    struct Table {
        router: Addr<Router>,
        routes: Arc<Routes>,
        feeds: HashMap<String, FeedRoutes>,
    }

    impl Table {
        /// A router, with the recorder installed first so that its handles are live.
        fn start() -> Self {
            metrics::install().expect("recorder");
            let router = Router::new();
            let routes = router.routes();
            Table { router: router.start(), routes, feeds: HashMap::new() }
        }

        /// Subscribes, and waits until the table is published.
        async fn subscribe(&self, spec: SubscriptionSpec, recipient: Recipient<Deliver>) {
            self.router.send(Subscribe { spec, recipient }).await.expect("router alive");
        }

        /// Publishes a batch of `feed` as its connection actor would.
        fn route(&mut self, feed: &str, messages: Vec<FeedMessage>, gate: &Arc<FlowGate>) {
            let routes = self.routes.clone();
            self.feeds
                .entry(feed.to_owned())
                .or_insert_with(|| FeedRoutes::new(routes, feed.into()))
                .publish(messages, gate);
        }

        async fn in_flight(&self) -> Vec<(String, u64)> {
            self.router.send(GetInFlight).await.expect("router alive")
        }
    }

    fn collector() -> (Recipient<Deliver>, mpsc::UnboundedReceiver<Vec<FeedMessage>>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (Collector(sender).start().recipient(), receiver)
    }

    fn holder() -> (Addr<Holder>, mpsc::UnboundedReceiver<Vec<String>>) {
        let (seen, receiver) = mpsc::unbounded_channel();
        (Holder { held: Vec::new(), seen }.start(), receiver)
    }

    fn message(feed: &str, topic: Option<&str>, text: &str) -> FeedMessage {
        FeedMessage { topic: topic.map(Into::into), ..FeedMessage::text_for_test(feed, text) }
    }

    fn texts(batch: &[FeedMessage]) -> Vec<&str> {
        batch.iter().filter_map(FeedMessage::text).collect()
    }

    async fn next<T>(receiver: &mut mpsc::UnboundedReceiver<T>) -> T {
        tokio::time::timeout(Duration::from_secs(5), receiver.recv())
            .await
            .expect("a delivery within 5s")
            .expect("subscriber alive")
    }

    /// Lets the router and subscribers handle what is queued for them.
    async fn settle(router: &Table) {
        for _ in 0..3 {
            let _ = router.in_flight().await;
            tokio::task::yield_now().await;
        }
    }

    fn sample(name: &str, labels: &str) -> Option<f64> {
        let rendered = metrics::install().expect("recorder").render();
        let prefix = format!("{name}{{{labels}}} ");
        rendered.lines().find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
    }

    #[actix::test]
    async fn feed_and_topic_patterns_select_messages() {
        let mut router = Table::start();
        let gate = FlowGate::new();
        let (all, mut all_rx) = collector();
        let (ms, mut ms_rx) = collector();
        router.subscribe(SubscriptionSpec::new("all", ["sto*"]), all).await;
        router
            .subscribe(SubscriptionSpec::new("ms", ["stocks"]).with_topics(["MS*", "AAPL"]), ms)
            .await;
        let batch = vec![
            message("stocks", Some("AAPL"), "1"),
            message("stocks", Some("GOOG"), "2"),
            message("stocks", Some("MSFT"), "3"),
            message("stocks", None, "4"),
        ];
        router.route("stocks", batch, &gate);
        assert_eq!(texts(&next(&mut all_rx).await), ["1", "2", "3", "4"]);
        assert_eq!(texts(&next(&mut ms_rx).await), ["1", "3"]);
    }

    #[actix::test]
    async fn several_subscribers_each_get_the_batch_in_order() {
        let mut router = Table::start();
        let gate = FlowGate::new();
        let (first, mut first_rx) = collector();
        let (second, mut second_rx) = collector();
        router.subscribe(SubscriptionSpec::new("a", ["*"]), first).await;
        router.subscribe(SubscriptionSpec::new("b", ["w?ather"]), second).await;
        let batch = vec![message("weather", None, "x"), message("weather", None, "y")];
        router.route("weather", batch, &gate);
        assert_eq!(texts(&next(&mut first_rx).await), ["x", "y"]);
        assert_eq!(texts(&next(&mut second_rx).await), ["x", "y"]);
    }

    #[actix::test]
    async fn no_matching_subscriber_gets_nothing() {
        let mut router = Table::start();
        let gate = FlowGate::new();
        let (only_stocks, mut stocks_rx) = collector();
        router
            .subscribe(SubscriptionSpec::new("s", ["stocks"]).with_topics(["AAPL"]), only_stocks)
            .await;
        router.route("weather", vec![message("weather", None, "w")], &gate);
        router.route("stocks", vec![message("stocks", Some("IBM"), "ibm")], &gate);
        router.route("stocks", vec![message("stocks", Some("AAPL"), "aapl")], &gate);
        // The first delivery is the AAPL one: nothing was sent for the others.
        assert_eq!(texts(&next(&mut stocks_rx).await), ["aapl"]);
    }

    #[actix::test]
    async fn unsubscribe_stops_delivery() {
        let mut router = Table::start();
        let gate = FlowGate::new();
        let (gone, mut gone_rx) = collector();
        let (kept, mut kept_rx) = collector();
        router.subscribe(SubscriptionSpec::new("gone", ["*"]), gone).await;
        router.subscribe(SubscriptionSpec::new("kept", ["*"]), kept).await;
        let removed =
            router.router.send(Unsubscribe { name: "gone".into() }).await.expect("router alive");
        assert!(removed);
        router.route("f", vec![message("f", None, "m")], &gate);
        assert_eq!(texts(&next(&mut kept_rx).await), ["m"]);
        assert!(gone_rx.try_recv().is_err());
    }

    /// Sends `count` single-message batches numbered from `first`.
    fn send_numbered(
        router: &mut Table,
        feed: &str,
        first: usize,
        count: usize,
        gate: &Arc<FlowGate>,
    ) {
        for n in first..first + count {
            router.route(feed, vec![message(feed, None, &n.to_string())], gate);
        }
    }

    #[actix::test]
    async fn drop_oldest_keeps_the_newest_and_counts_every_drop() {
        let mut router = Table::start();
        let gate = FlowGate::new();
        let (stalled, mut seen) = holder();
        let spec = SubscriptionSpec::new("oldest-sub", ["oldest"])
            .with_queue(3, SubscriberOverflow::DropOldest);
        router.subscribe(spec, stalled.clone().recipient()).await;
        send_numbered(&mut router, "oldest", 1, 1, &gate);
        assert_eq!(next(&mut seen).await, ["1"], "the first goes straight out, then it stalls");
        send_numbered(&mut router, "oldest", 2, 9, &gate);
        settle(&router).await;
        let labels = r#"subscriber="oldest-sub""#;
        assert_eq!(sample(metrics::SUBSCRIBER_QUEUE_DEPTH, labels), Some(3.0));
        let dropped = r#"subscriber="oldest-sub",reason="drop_oldest""#;
        assert_eq!(sample(metrics::SUBSCRIBER_DROPPED, dropped), Some(6.0));
        stalled.do_send(Release);
        assert_eq!(next(&mut seen).await, ["8", "9", "10"], "order kept");
        stalled.do_send(Release);
        settle(&router).await;
        assert_eq!(sample(metrics::SUBSCRIBER_QUEUE_DEPTH, labels), Some(0.0));
        assert_eq!(sample(metrics::SUBSCRIBER_DELIVERED, labels), Some(4.0));
        assert!(!gate.is_closed(), "drop policies never close the gate");
    }

    #[actix::test]
    async fn drop_newest_keeps_the_oldest_and_counts_every_drop() {
        let mut router = Table::start();
        let gate = FlowGate::new();
        let (stalled, mut seen) = holder();
        let spec = SubscriptionSpec::new("newest-sub", ["newest"])
            .with_queue(3, SubscriberOverflow::DropNewest);
        router.subscribe(spec, stalled.clone().recipient()).await;
        send_numbered(&mut router, "newest", 1, 1, &gate);
        assert_eq!(next(&mut seen).await, ["1"]);
        send_numbered(&mut router, "newest", 2, 9, &gate);
        settle(&router).await;
        let dropped = r#"subscriber="newest-sub",reason="drop_newest""#;
        assert_eq!(sample(metrics::SUBSCRIBER_DROPPED, dropped), Some(6.0));
        stalled.do_send(Release);
        assert_eq!(next(&mut seen).await, ["2", "3", "4"]);
    }

    #[actix::test]
    async fn backpressure_closes_the_feeds_gate_until_the_queue_drains() {
        let mut router = Table::start();
        let gate = FlowGate::new();
        let (stalled, mut seen) = holder();
        let spec =
            SubscriptionSpec::new("bp-sub", ["bp"]).with_queue(4, SubscriberOverflow::Backpressure);
        router.subscribe(spec, stalled.clone().recipient()).await;
        send_numbered(&mut router, "bp", 1, 1, &gate);
        assert_eq!(next(&mut seen).await, ["1"]);
        send_numbered(&mut router, "bp", 2, 4, &gate);
        settle(&router).await;
        assert!(!gate.is_closed(), "four queued: not over the bound yet");
        // In-flight batches still arrive after the gate closes: none is dropped.
        send_numbered(&mut router, "bp", 6, 3, &gate);
        settle(&router).await;
        assert!(gate.is_closed(), "a full backpressure queue closes the gate");
        let pending = router.in_flight().await;
        assert_eq!(pending, [("bp-sub".to_owned(), 8)], "1 held + 7 queued, nothing dropped");
        stalled.do_send(Release);
        assert_eq!(next(&mut seen).await, ["2", "3", "4", "5", "6", "7", "8"]);
        settle(&router).await;
        assert!(!gate.is_closed(), "drained: the gate opens again");
    }

    #[actix::test]
    async fn a_stalled_subscriber_costs_a_fast_one_nothing() {
        let mut router = Table::start();
        let gate = FlowGate::new();
        let (stalled, mut seen) = holder();
        let (fast, mut fast_rx) = collector();
        let slow_spec =
            SubscriptionSpec::new("slow", ["shared"]).with_queue(2, SubscriberOverflow::DropOldest);
        router.subscribe(slow_spec, stalled.recipient()).await;
        router.subscribe(SubscriptionSpec::new("fast", ["shared"]), fast).await;
        send_numbered(&mut router, "shared", 0, 1, &gate);
        assert_eq!(next(&mut seen).await, ["0"], "the slow one takes its first and stalls");
        send_numbered(&mut router, "shared", 1, 499, &gate);
        let mut received = Vec::new();
        while received.len() < 500 {
            received.extend(
                next(&mut fast_rx).await.iter().filter_map(|m| m.text().map(str::to_owned)),
            );
        }
        let expected: Vec<String> = (0..500).map(|n| n.to_string()).collect();
        assert_eq!(received, expected);
        settle(&router).await;
        let dropped = r#"subscriber="slow",reason="drop_oldest""#;
        assert_eq!(
            sample(metrics::SUBSCRIBER_DROPPED, dropped),
            Some(497.0),
            "500 - 1 held - 2 queued"
        );
    }

    #[actix::test]
    async fn a_busy_subscriber_is_woken_once_for_what_every_feed_pushed_meanwhile() {
        let mut router = Table::start();
        let gate = FlowGate::new();
        let (stalled, mut seen) = holder();
        router.subscribe(SubscriptionSpec::new("many", ["*"]), stalled.clone().recipient()).await;
        router.route("a", vec![message("a", None, "a1")], &gate);
        assert_eq!(next(&mut seen).await, ["a1"]);
        // While it holds that batch, three feeds deliver.
        router.route("b", vec![message("b", None, "b1"), message("b", None, "b2")], &gate);
        router.route("c", vec![message("c", None, "c1")], &gate);
        router.route("a", vec![message("a", None, "a2")], &gate);
        settle(&router).await;
        assert!(seen.try_recv().is_err(), "nothing more while it holds a batch");
        stalled.do_send(Release);
        assert_eq!(next(&mut seen).await, ["b1", "b2", "c1", "a2"], "one batch, in arrival order");
        stalled.do_send(Release);
        settle(&router).await;
        assert!(seen.try_recv().is_err(), "and no empty batches after it");
    }

    #[actix::test]
    async fn a_feed_that_published_before_the_first_subscriber_reaches_it() {
        let mut router = Table::start();
        let gate = FlowGate::new();
        router.route("early", vec![message("early", None, "nobody")], &gate);
        let (recipient, mut received) = collector();
        router.subscribe(SubscriptionSpec::new("late", ["early"]), recipient).await;
        router.route("early", vec![message("early", None, "seen")], &gate);
        assert_eq!(texts(&next(&mut received).await), ["seen"]);
    }

    /// A subscriber that never looks at what it is handed.
    struct Ignorer(mpsc::UnboundedSender<()>);

    impl Actor for Ignorer {
        type Context = Context<Self>;
    }

    impl Handler<Deliver> for Ignorer {
        type Result = ();
        fn handle(&mut self, _: Deliver, _: &mut Context<Self>) {
            let _ = self.0.send(());
        }
    }

    #[actix::test]
    async fn a_batch_the_subscriber_never_reads_is_delivered_all_the_same() {
        let mut router = Table::start();
        let gate = FlowGate::new();
        let (rung, mut rings) = mpsc::unbounded_channel();
        let ignorer = Ignorer(rung).start();
        router.subscribe(SubscriptionSpec::new("ignorer", ["i"]), ignorer.recipient()).await;
        for round in 0..3 {
            router.route("i", vec![message("i", None, &round.to_string())], &gate);
            next(&mut rings).await;
        }
        settle(&router).await;
        assert!(rings.try_recv().is_err(), "one ring per batch, no spinning on unread ones");
        let labels = r#"subscriber="ignorer""#;
        assert_eq!(sample(metrics::SUBSCRIBER_DELIVERED, labels), Some(3.0));
        assert_eq!(router.in_flight().await, [("ignorer".to_owned(), 0)]);
    }

    /// Blocks the router's thread until the test lets go.
    #[derive(Message)]
    #[rtype(result = "()")]
    struct Block(std::sync::mpsc::Receiver<()>);

    impl Handler<Block> for Router {
        type Result = ();
        fn handle(&mut self, block: Block, _: &mut Context<Self>) {
            let _ = block.0.recv();
        }
    }

    #[actix::test]
    async fn a_stalled_router_does_not_hold_up_deliveries() {
        metrics::install().expect("recorder");
        let arbiter = Arbiter::new();
        let router = Router::new();
        let routes = router.routes();
        let router = Router::start_in_arbiter(&arbiter.handle(), |_| router);
        let (recipient, mut received) = collector();
        let spec = SubscriptionSpec::new("while-stalled", ["f"]);
        router.send(Subscribe { spec, recipient }).await.expect("router alive");
        let (release, blocked) = std::sync::mpsc::channel();
        router.do_send(Block(blocked));
        let gate = FlowGate::new();
        let mut feed = FeedRoutes::new(routes, "f".into());
        for n in 0..100 {
            feed.publish(vec![message("f", None, &n.to_string())], &gate);
        }
        let mut texts_seen = Vec::new();
        while texts_seen.len() < 100 {
            texts_seen.extend(
                next(&mut received).await.iter().filter_map(|m| m.text().map(str::to_owned)),
            );
        }
        assert_eq!(texts_seen, (0..100).map(|n| n.to_string()).collect::<Vec<_>>());
        let _ = release.send(());
        arbiter.stop();
    }

    /// Stops the holder, as a subscriber that crashes would.
    #[derive(Message)]
    #[rtype(result = "()")]
    struct Stop;

    impl Handler<Stop> for Holder {
        type Result = ();
        fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
            ctx.stop();
        }
    }

    #[actix::test]
    async fn a_subscriber_whose_actor_stopped_is_removed_and_its_losses_counted() {
        let mut router = Table::start();
        let gate = FlowGate::new();
        let (stalled, mut seen) = holder();
        let spec =
            SubscriptionSpec::new("dies", ["d"]).with_queue(10, SubscriberOverflow::DropOldest);
        router.subscribe(spec, stalled.clone().recipient()).await;
        send_numbered(&mut router, "d", 1, 1, &gate);
        assert_eq!(next(&mut seen).await, ["1"]);
        send_numbered(&mut router, "d", 2, 3, &gate);
        settle(&router).await;
        // It stops holding batch 1, with 2..=4 queued: those three are lost, and counted.
        stalled.do_send(Stop);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let pending = router.in_flight().await;
            if pending.is_empty() {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "still subscribed: {pending:?}");
            tokio::task::yield_now().await;
        }
        let gone = r#"subscriber="dies",reason="subscriber_gone""#;
        assert_eq!(sample(metrics::SUBSCRIBER_DROPPED, gone), Some(3.0));
    }

    mod properties {
        use proptest::prelude::*;
        use wildmatch::WildMatch;

        /// The glob the docs describe, written the obvious way: `*` is any
        /// run of characters (none included), `?` exactly one, anything else itself.
        fn reference(pattern: &[char], text: &[char]) -> bool {
            match (pattern.first(), text.first()) {
                (None, _) => text.is_empty(),
                (Some('*'), _) => {
                    reference(&pattern[1..], text)
                        || (!text.is_empty() && reference(pattern, &text[1..]))
                }
                (Some('?'), Some(_)) => reference(&pattern[1..], &text[1..]),
                (Some(want), Some(got)) => want == got && reference(&pattern[1..], &text[1..]),
                (Some(_), None) => false,
            }
        }

        /// Patterns and topics over a small alphabet (with a non-ASCII
        /// letter), so that matches are common.
        fn word(globs: bool) -> impl Strategy<Value = String> {
            let letters = if globs { "[ab.é*?]{0,12}" } else { "[ab.é]{0,12}" };
            proptest::string::string_regex(letters).expect("a valid regex")
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2048))]

            /// Feed and topic patterns are compiled with `WildMatch::new`,
            /// as the route table does, and match as the reference says.
            #[test]
            fn topic_patterns_match_as_the_reference_glob_does(
                pattern in word(true),
                topic in word(false),
            ) {
                let chars = |text: &str| text.chars().collect::<Vec<char>>();
                let expected = reference(&chars(&pattern), &chars(&topic));
                prop_assert_eq!(WildMatch::new(&pattern).matches(&topic), expected);
            }
        }
    }
}
