//! The router: hands each inbound batch to every matching subscriber.
//!
//! The router owns the subscription table. Connection actors send it one
//! [`Route`] per batch. Each subscriber has a bounded queue here and holds
//! at most one [`Deliver`] batch at a time: when it is done with one (drops
//! it), the next batch of what queued meanwhile goes out. A full queue
//! follows the subscriber's policy: drop the oldest, drop the newest (both
//! counted), or close the [`FlowGate`]s of the feeds that fill it until it
//! drains (backpressure). So a slow subscriber costs the others nothing,
//! and memory stays bounded by the queues. Payloads are shared, never
//! copied. Which subscribers want a feed is worked out once per feed and
//! cached until the table changes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use ::metrics::{Counter, Gauge};
use actix::prelude::*;
use wildmatch::WildMatch;

use crate::config::{SubscriberConfig, SubscriberOverflow};
use crate::delivery::{Deliver, Delivered, DoneNotice, FeedMessage, LatencySampler};
use crate::flow::FlowGate;
use crate::metrics;

/// Messages that may wait for a subscriber unless it asks otherwise.
pub const DEFAULT_QUEUE: usize = crate::config::DEFAULT_QUEUE;

/// The most messages in one [`Deliver`].
pub const MAX_BATCH: usize = 1024;

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
    pub fn with_metric_label(mut self, label: impl Into<String>) -> Self {
        self.metric_label = Some(label.into());
        self
    }

    /// Sets the queue bound and the overflow policy.
    pub fn with_queue(mut self, queue: usize, overflow: SubscriberOverflow) -> Self {
        self.queue = queue.max(1);
        self.overflow = overflow;
        self
    }

    /// The subscription a config's `[[subscribers]]` entry asks for.
    pub fn from_config(config: &SubscriberConfig) -> Self {
        SubscriptionSpec {
            name: config.name.clone(),
            feeds: config.feeds.clone(),
            topics: config.topics.clone(),
            queue: config.queue,
            overflow: config.overflow,
            metric_label: None,
        }
    }

    /// Narrows the subscription to the given topic patterns.
    pub fn with_topics(mut self, topics: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.topics = Some(topics.into_iter().map(Into::into).collect());
        self
    }
}

/// The metric handles of one subscriber, resolved once.
struct SubscriberMetrics {
    label: String,
    depth: Gauge,
    delivered: Counter,
    dropped_oldest: Counter,
    dropped_newest: Counter,
    dropped_gone: Counter,
    dropped_unsubscribed: Counter,
    /// Delivery latency per feed, resolved on first use.
    latency: HashMap<Arc<str>, Arc<LatencySampler>>,
}

impl SubscriberMetrics {
    fn new(label: String) -> Self {
        SubscriberMetrics {
            depth: metrics::subscriber_queue_depth(&label),
            delivered: metrics::subscriber_delivered(&label),
            dropped_oldest: metrics::subscriber_dropped(&label, "drop_oldest"),
            dropped_newest: metrics::subscriber_dropped(&label, "drop_newest"),
            dropped_gone: metrics::subscriber_dropped(&label, "subscriber_gone"),
            dropped_unsubscribed: metrics::subscriber_dropped(&label, "unsubscribed"),
            latency: HashMap::new(),
            label,
        }
    }

    fn latency(&mut self, feed: &Arc<str>) -> Arc<LatencySampler> {
        let label = &self.label;
        self.latency
            .entry(feed.clone())
            .or_insert_with(|| {
                Arc::new(LatencySampler::new(metrics::delivery_latency(feed, label)))
            })
            .clone()
    }
}

/// A subscription: its patterns, its queue and where its batches go.
struct Subscription {
    id: u64,
    name: String,
    feeds: Vec<WildMatch>,
    topics: Option<Vec<WildMatch>>,
    recipient: Recipient<Deliver>,
    /// Batches waiting for the subscriber, oldest first; each from one feed.
    queue: VecDeque<Vec<FeedMessage>>,
    /// Messages in `queue`.
    queued: usize,
    capacity: usize,
    overflow: SubscriberOverflow,
    /// Messages in the batch the subscriber holds now (0: it holds none).
    outstanding: usize,
    /// Gates this subscriber holds closed (backpressure), one entry each.
    closed_gates: Vec<Arc<FlowGate>>,
    metrics: SubscriberMetrics,
    /// What this subscriber last added to its depth gauge, which subscribers
    /// with a shared label add up.
    reported_depth: usize,
}

impl Subscription {
    /// Brings the depth gauge up to date by the change since the last report,
    /// so that subscribers sharing a label add up instead of overwriting.
    fn report_depth(&mut self) {
        let depth = self.queued;
        if depth > self.reported_depth {
            self.metrics.depth.increment((depth - self.reported_depth) as f64);
        } else if depth < self.reported_depth {
            self.metrics.depth.decrement((self.reported_depth - depth) as f64);
        }
        self.reported_depth = depth;
    }

    fn wants_feed(&self, feed: &str) -> bool {
        self.feeds.iter().any(|pattern| pattern.matches(feed))
    }

    fn wants(&self, message: &FeedMessage) -> bool {
        match (&self.topics, &message.topic) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(patterns), Some(topic)) => patterns.iter().any(|pattern| pattern.matches(topic)),
        }
    }

    /// Drops the `count` oldest queued messages.
    fn drop_front(&mut self, mut count: usize) {
        while count > 0 {
            let Some(front) = self.queue.front_mut() else { break };
            let taken = count.min(front.len());
            if taken == front.len() {
                self.queue.pop_front();
            } else {
                front.drain(..taken);
            }
            self.queued -= taken;
            count -= taken;
        }
    }

    /// Queues a batch by the overflow policy; closes `gate` when a
    /// backpressure queue goes over its bound.
    fn enqueue(&mut self, mut batch: Vec<FeedMessage>, gate: &Arc<FlowGate>) {
        if batch.is_empty() {
            return;
        }
        match self.overflow {
            SubscriberOverflow::DropNewest => {
                let room = self.capacity.saturating_sub(self.queued);
                if batch.len() > room {
                    self.metrics.dropped_newest.increment((batch.len() - room) as u64);
                    batch.truncate(room);
                }
            }
            SubscriberOverflow::DropOldest => {
                if batch.len() > self.capacity {
                    let excess = batch.len() - self.capacity;
                    self.metrics.dropped_oldest.increment(excess as u64);
                    batch.drain(..excess);
                }
                let excess = (self.queued + batch.len()).saturating_sub(self.capacity);
                if excess > 0 {
                    self.metrics.dropped_oldest.increment(excess as u64);
                    self.drop_front(excess);
                }
            }
            SubscriberOverflow::Backpressure => {
                let over = self.queued + batch.len() > self.capacity;
                if over && !self.closed_gates.iter().any(|closed| Arc::ptr_eq(closed, gate)) {
                    gate.close();
                    self.closed_gates.push(gate.clone());
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        self.queued += batch.len();
        self.queue.push_back(batch);
    }

    /// Opens the gates this subscriber closed, once it has drained to half its queue.
    fn open_gates_if_drained(&mut self) {
        if self.queued <= self.capacity / 2 {
            for gate in self.closed_gates.drain(..) {
                gate.open();
            }
        }
    }

    /// The next batch: the oldest queued messages of one feed, up to [`MAX_BATCH`]
    /// (small batches of the same feed are merged).
    fn next_batch(&mut self) -> Vec<FeedMessage> {
        let Some(mut batch) = self.queue.pop_front() else { return Vec::new() };
        if batch.len() > MAX_BATCH {
            let rest = batch.split_off(MAX_BATCH);
            self.queue.push_front(rest);
        }
        while let Some(next) = self.queue.front_mut() {
            let same_feed = next.first().map(|m| &m.feed) == batch.first().map(|m| &m.feed);
            if !same_feed || batch.len() + next.len() > MAX_BATCH {
                break;
            }
            batch.append(next);
            self.queue.pop_front();
        }
        self.queued -= batch.len();
        batch
    }
}

/// The subscription table.
#[derive(Default)]
pub struct Router {
    subscriptions: HashMap<u64, Subscription>,
    /// For each feed seen, the subscriptions that want it, in subscription
    /// order (cleared when the table changes).
    routes: HashMap<Arc<str>, Vec<u64>>,
    next_id: u64,
}

impl Router {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn targets(&mut self, feed: &Arc<str>) -> Vec<u64> {
        let subscriptions = &self.subscriptions;
        self.routes
            .entry(feed.clone())
            .or_insert_with(|| {
                let mut ids: Vec<u64> = subscriptions
                    .values()
                    .filter(|subscription| subscription.wants_feed(feed))
                    .map(|subscription| subscription.id)
                    .collect();
                ids.sort_unstable();
                ids
            })
            .clone()
    }

    /// Sends the subscriber its next batch if it holds none.
    fn flush(&mut self, id: u64, ctx: &mut Context<Self>) {
        let Some(subscription) = self.subscriptions.get_mut(&id) else { return };
        if subscription.outstanding > 0 {
            return;
        }
        let batch = subscription.next_batch();
        subscription.open_gates_if_drained();
        subscription.report_depth();
        self.send(id, batch, ctx);
    }

    /// Hands a batch to the subscriber, which must hold none.
    fn send(&mut self, id: u64, batch: Vec<FeedMessage>, ctx: &mut Context<Self>) {
        let Some(subscription) = self.subscriptions.get_mut(&id) else { return };
        let Some(first) = batch.first() else { return };
        let latency = subscription.metrics.latency(&first.feed);
        let count = batch.len();
        let done = DoneNotice { router: ctx.address().recipient(), subscription: id };
        match subscription.recipient.try_send(Deliver::new(batch, latency, done)) {
            Ok(()) => subscription.outstanding = count,
            Err(SendError::Full(deliver)) => {
                // Its mailbox is busy with other messages: queue behind them.
                subscription.outstanding = count;
                subscription.recipient.do_send(deliver);
            }
            Err(SendError::Closed(deliver)) => {
                let lost = deliver.disarm().len();
                self.remove_gone(id, lost);
            }
        }
    }

    /// Removes a subscriber whose actor is gone, counting what it will never get.
    fn remove_gone(&mut self, id: u64, lost_in_batch: usize) {
        let Some(mut subscription) = self.subscriptions.remove(&id) else { return };
        let lost = lost_in_batch + subscription.queued;
        subscription.metrics.dropped_gone.increment(lost as u64);
        subscription.queue.clear();
        subscription.queued = 0;
        subscription.report_depth();
        for gate in subscription.closed_gates.drain(..) {
            gate.open();
        }
        tracing::warn!(subscriber = %subscription.name, lost, "subscriber stopped; removed");
        self.routes.clear();
    }

    fn insert(&mut self, spec: SubscriptionSpec, recipient: Recipient<Deliver>) {
        let SubscriptionSpec { name, feeds, topics, queue, overflow, metric_label } = spec;
        self.remove_named(&name);
        self.next_id += 1;
        let label = metric_label.unwrap_or_else(|| name.clone());
        let subscription = Subscription {
            id: self.next_id,
            feeds: feeds.iter().map(|pattern| WildMatch::new(pattern)).collect(),
            topics: topics
                .map(|topics| topics.iter().map(|pattern| WildMatch::new(pattern)).collect()),
            recipient,
            queue: VecDeque::new(),
            queued: 0,
            capacity: queue.max(1),
            overflow,
            outstanding: 0,
            closed_gates: Vec::new(),
            metrics: SubscriberMetrics::new(label),
            reported_depth: 0,
            name,
        };
        self.subscriptions.insert(subscription.id, subscription);
        self.routes.clear();
    }

    /// Removes the subscription named `name`; what it had queued is dropped
    /// (it asked to go) and counted, and the gates it held closed open.
    fn remove_named(&mut self, name: &str) -> bool {
        let Some(id) = self.subscriptions.values().find(|s| s.name == name).map(|s| s.id) else {
            return false;
        };
        if let Some(mut subscription) = self.subscriptions.remove(&id) {
            for gate in subscription.closed_gates.drain(..) {
                gate.open();
            }
            subscription.metrics.dropped_unsubscribed.increment(subscription.queued as u64);
            subscription.queue.clear();
            subscription.queued = 0;
            subscription.report_depth();
        }
        self.routes.clear();
        true
    }
}

impl Actor for Router {
    type Context = Context<Self>;
}

/// Adds a subscriber to the table (replacing one of the same name).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe {
    /// What the subscriber wants.
    pub spec: SubscriptionSpec,
    /// Where its batches go.
    pub recipient: Recipient<Deliver>,
}

impl Handler<Subscribe> for Router {
    type Result = ();

    fn handle(&mut self, message: Subscribe, _: &mut Context<Self>) {
        let Subscribe { spec, recipient } = message;
        tracing::debug!(subscriber = %spec.name, feeds = ?spec.feeds, topics = ?spec.topics, "subscribed");
        self.insert(spec, recipient);
    }
}

/// Removes a subscriber by name.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Unsubscribe {
    /// The name it subscribed with.
    pub name: String,
}

impl Handler<Unsubscribe> for Router {
    type Result = bool;

    fn handle(&mut self, message: Unsubscribe, _: &mut Context<Self>) -> bool {
        self.remove_named(&message.name)
    }
}

/// Asks how many messages each subscriber has not handled yet (queued, or in
/// the batch it holds), by subscriber name.
#[derive(Message)]
#[rtype(result = "Vec<(String, u64)>")]
pub struct GetInFlight;

impl Handler<GetInFlight> for Router {
    type Result = MessageResult<GetInFlight>;

    fn handle(&mut self, _: GetInFlight, _: &mut Context<Self>) -> Self::Result {
        let mut pending: Vec<(String, u64)> = self
            .subscriptions
            .values()
            .map(|s| (s.name.clone(), (s.queued + s.outstanding) as u64))
            .collect();
        pending.sort();
        MessageResult(pending)
    }
}

impl Handler<Delivered> for Router {
    type Result = ();

    fn handle(&mut self, delivered: Delivered, ctx: &mut Context<Self>) {
        let Some(subscription) = self.subscriptions.get_mut(&delivered.subscription) else {
            return;
        };
        subscription.metrics.delivered.increment(subscription.outstanding as u64);
        subscription.outstanding = 0;
        self.flush(delivered.subscription, ctx);
    }
}

/// A batch of messages from one feed, to be handed to its subscribers.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Route {
    /// The feed all messages came from.
    pub feed: Arc<str>,
    /// The messages, oldest first.
    pub messages: Vec<FeedMessage>,
    /// The feed's gate, closed by backpressure subscribers whose queue is full.
    pub gate: Arc<FlowGate>,
}

impl Handler<Route> for Router {
    type Result = ();

    fn handle(&mut self, route: Route, ctx: &mut Context<Self>) {
        let Route { feed, messages, gate } = route;
        let targets = self.targets(&feed);
        let mut messages = Some(messages);
        for (position, id) in targets.iter().enumerate() {
            let Some(subscription) = self.subscriptions.get_mut(id) else { continue };
            let last = position + 1 == targets.len();
            let batch: Vec<FeedMessage> = if subscription.topics.is_none() {
                // Every message: the last subscriber takes the batch itself, the others a copy.
                if last { messages.take() } else { messages.clone() }.unwrap_or_default()
            } else {
                messages.iter().flatten().filter(|m| subscription.wants(m)).cloned().collect()
            };
            // Idle with nothing queued: hand the batch over as it is.
            if subscription.outstanding == 0
                && subscription.queued == 0
                && !batch.is_empty()
                && batch.len() <= MAX_BATCH.min(subscription.capacity)
            {
                self.send(*id, batch, ctx);
                continue;
            }
            subscription.enqueue(batch, &gate);
            subscription.report_depth();
            self.flush(*id, ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant, SystemTime};

    use bytes::Bytes;
    use tokio::sync::mpsc;

    use super::*;
    use crate::delivery::DataKind;

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
        fn handle(&mut self, deliver: Deliver, _: &mut Context<Self>) {
            let texts =
                deliver.messages.iter().filter_map(|m| m.text().map(str::to_owned)).collect();
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

    /// A router, with the recorder installed first so that its handles are live.
    fn start_router() -> Addr<Router> {
        metrics::install().expect("recorder");
        Router::new().start()
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
        FeedMessage {
            feed: feed.into(),
            topic: topic.map(Into::into),
            kind: DataKind::Text,
            payload: Bytes::copy_from_slice(text.as_bytes()),
            received_at: SystemTime::now(),
            received: Instant::now(),
            gap_before: None,
            chunk: None,
        }
    }

    fn route(feed: &str, messages: Vec<FeedMessage>, gate: &Arc<FlowGate>) -> Route {
        Route { feed: feed.into(), messages, gate: gate.clone() }
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
    async fn settle(router: &Addr<Router>) {
        for _ in 0..3 {
            let _ = router.send(GetInFlight).await;
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
        let router = start_router();
        let gate = FlowGate::new();
        let (all, mut all_rx) = collector();
        let (ms, mut ms_rx) = collector();
        router.do_send(Subscribe { spec: SubscriptionSpec::new("all", ["sto*"]), recipient: all });
        router.do_send(Subscribe {
            spec: SubscriptionSpec::new("ms", ["stocks"]).with_topics(["MS*", "AAPL"]),
            recipient: ms,
        });
        let batch = vec![
            message("stocks", Some("AAPL"), "1"),
            message("stocks", Some("GOOG"), "2"),
            message("stocks", Some("MSFT"), "3"),
            message("stocks", None, "4"),
        ];
        router.do_send(route("stocks", batch, &gate));
        assert_eq!(texts(&next(&mut all_rx).await), ["1", "2", "3", "4"]);
        assert_eq!(texts(&next(&mut ms_rx).await), ["1", "3"]);
    }

    #[actix::test]
    async fn several_subscribers_each_get_the_batch_in_order() {
        let router = start_router();
        let gate = FlowGate::new();
        let (first, mut first_rx) = collector();
        let (second, mut second_rx) = collector();
        router.do_send(Subscribe { spec: SubscriptionSpec::new("a", ["*"]), recipient: first });
        router.do_send(Subscribe {
            spec: SubscriptionSpec::new("b", ["w?ather"]),
            recipient: second,
        });
        let batch = vec![message("weather", None, "x"), message("weather", None, "y")];
        router.do_send(route("weather", batch, &gate));
        assert_eq!(texts(&next(&mut first_rx).await), ["x", "y"]);
        assert_eq!(texts(&next(&mut second_rx).await), ["x", "y"]);
    }

    #[actix::test]
    async fn no_matching_subscriber_gets_nothing() {
        let router = start_router();
        let gate = FlowGate::new();
        let (only_stocks, mut stocks_rx) = collector();
        router.do_send(Subscribe {
            spec: SubscriptionSpec::new("s", ["stocks"]).with_topics(["AAPL"]),
            recipient: only_stocks,
        });
        router.do_send(route("weather", vec![message("weather", None, "w")], &gate));
        router.do_send(route("stocks", vec![message("stocks", Some("IBM"), "ibm")], &gate));
        router.do_send(route("stocks", vec![message("stocks", Some("AAPL"), "aapl")], &gate));
        // The first delivery is the AAPL one: nothing was sent for the others.
        assert_eq!(texts(&next(&mut stocks_rx).await), ["aapl"]);
    }

    #[actix::test]
    async fn unsubscribe_stops_delivery() {
        let router = start_router();
        let gate = FlowGate::new();
        let (gone, mut gone_rx) = collector();
        let (kept, mut kept_rx) = collector();
        router.do_send(Subscribe { spec: SubscriptionSpec::new("gone", ["*"]), recipient: gone });
        router.do_send(Subscribe { spec: SubscriptionSpec::new("kept", ["*"]), recipient: kept });
        let removed = router.send(Unsubscribe { name: "gone".into() }).await.expect("router alive");
        assert!(removed);
        router.do_send(route("f", vec![message("f", None, "m")], &gate));
        assert_eq!(texts(&next(&mut kept_rx).await), ["m"]);
        assert!(gone_rx.try_recv().is_err());
    }

    /// Sends `count` single-message batches numbered from `first`.
    fn send_numbered(
        router: &Addr<Router>,
        feed: &str,
        first: usize,
        count: usize,
        gate: &Arc<FlowGate>,
    ) {
        for n in first..first + count {
            router.do_send(route(feed, vec![message(feed, None, &n.to_string())], gate));
        }
    }

    #[actix::test]
    async fn drop_oldest_keeps_the_newest_and_counts_every_drop() {
        let router = start_router();
        let gate = FlowGate::new();
        let (stalled, mut seen) = holder();
        let spec = SubscriptionSpec::new("oldest-sub", ["oldest"])
            .with_queue(3, SubscriberOverflow::DropOldest);
        router.do_send(Subscribe { spec, recipient: stalled.clone().recipient() });
        send_numbered(&router, "oldest", 1, 10, &gate);
        assert_eq!(next(&mut seen).await, ["1"], "the first goes straight out, then it stalls");
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
        let router = start_router();
        let gate = FlowGate::new();
        let (stalled, mut seen) = holder();
        let spec = SubscriptionSpec::new("newest-sub", ["newest"])
            .with_queue(3, SubscriberOverflow::DropNewest);
        router.do_send(Subscribe { spec, recipient: stalled.clone().recipient() });
        send_numbered(&router, "newest", 1, 10, &gate);
        assert_eq!(next(&mut seen).await, ["1"]);
        settle(&router).await;
        let dropped = r#"subscriber="newest-sub",reason="drop_newest""#;
        assert_eq!(sample(metrics::SUBSCRIBER_DROPPED, dropped), Some(6.0));
        stalled.do_send(Release);
        assert_eq!(next(&mut seen).await, ["2", "3", "4"]);
    }

    #[actix::test]
    async fn backpressure_closes_the_feeds_gate_until_the_queue_drains() {
        let router = start_router();
        let gate = FlowGate::new();
        let (stalled, mut seen) = holder();
        let spec =
            SubscriptionSpec::new("bp-sub", ["bp"]).with_queue(4, SubscriberOverflow::Backpressure);
        router.do_send(Subscribe { spec, recipient: stalled.clone().recipient() });
        send_numbered(&router, "bp", 1, 1, &gate);
        assert_eq!(next(&mut seen).await, ["1"]);
        send_numbered(&router, "bp", 2, 4, &gate);
        settle(&router).await;
        assert!(!gate.is_closed(), "four queued: not over the bound yet");
        // In-flight batches still arrive after the gate closes: none is dropped.
        send_numbered(&router, "bp", 6, 3, &gate);
        settle(&router).await;
        assert!(gate.is_closed(), "a full backpressure queue closes the gate");
        let pending = router.send(GetInFlight).await.expect("router alive");
        assert_eq!(pending, [("bp-sub".to_owned(), 8)], "1 held + 7 queued, nothing dropped");
        stalled.do_send(Release);
        assert_eq!(next(&mut seen).await, ["2", "3", "4", "5", "6", "7", "8"]);
        settle(&router).await;
        assert!(!gate.is_closed(), "drained: the gate opens again");
    }

    #[actix::test]
    async fn a_stalled_subscriber_costs_a_fast_one_nothing() {
        let router = start_router();
        let gate = FlowGate::new();
        let (stalled, _seen) = holder();
        let (fast, mut fast_rx) = collector();
        let slow_spec =
            SubscriptionSpec::new("slow", ["shared"]).with_queue(2, SubscriberOverflow::DropOldest);
        router.do_send(Subscribe { spec: slow_spec, recipient: stalled.recipient() });
        router.do_send(Subscribe {
            spec: SubscriptionSpec::new("fast", ["shared"]),
            recipient: fast,
        });
        send_numbered(&router, "shared", 0, 500, &gate);
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
        let router = start_router();
        let gate = FlowGate::new();
        let (stalled, mut seen) = holder();
        let spec =
            SubscriptionSpec::new("dies", ["d"]).with_queue(10, SubscriberOverflow::DropOldest);
        router.do_send(Subscribe { spec, recipient: stalled.clone().recipient() });
        send_numbered(&router, "d", 1, 4, &gate);
        assert_eq!(next(&mut seen).await, ["1"]);
        settle(&router).await;
        // It stops holding batch 1, with 2..=4 queued: those three are lost, and counted.
        stalled.do_send(Stop);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let pending = router.send(GetInFlight).await.expect("router alive");
            if pending.is_empty() {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "still subscribed: {pending:?}");
            tokio::task::yield_now().await;
        }
        let gone = r#"subscriber="dies",reason="subscriber_gone""#;
        assert_eq!(sample(metrics::SUBSCRIBER_DROPPED, gone), Some(3.0));
    }
}
