//! The router: hands each inbound batch to every matching subscriber.
//!
//! The router owns the subscription table. Connection actors send it one
//! [`Route`] per batch; it sends each matching subscriber one [`Deliver`]
//! holding the messages that subscriber asked for (payloads shared, not
//! copied). Which subscribers want a feed is worked out once per feed and
//! cached until the table changes.

use std::collections::HashMap;
use std::sync::Arc;

use ::metrics::Histogram;
use actix::prelude::*;
use wildmatch::WildMatch;

use crate::delivery::{Deliver, FeedMessage, InFlight};
use crate::metrics;

/// What a subscriber wants: feeds and, optionally, topics, by glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionSpec {
    /// The subscriber's name (a metric label: keep it short and fixed).
    pub name: String,
    /// Feed names or patterns (`*` and `?`).
    pub feeds: Vec<String>,
    /// Topic patterns; `None` takes every message, topic or not.
    pub topics: Option<Vec<String>>,
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
        }
    }

    /// Narrows the subscription to the given topic patterns.
    pub fn with_topics(mut self, topics: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.topics = Some(topics.into_iter().map(Into::into).collect());
        self
    }
}

/// A subscription with its patterns compiled.
struct Subscription {
    name: String,
    feeds: Vec<WildMatch>,
    topics: Option<Vec<WildMatch>>,
    recipient: Recipient<Deliver>,
    /// Messages handed over and not yet handled.
    in_flight: Arc<InFlight>,
}

impl Subscription {
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
}

/// One subscriber's route from a feed: where to send and the latency histogram.
struct RouteTarget {
    subscription: usize,
    latency: Histogram,
}

/// The subscription table.
#[derive(Default)]
pub struct Router {
    subscriptions: Vec<Subscription>,
    /// For each feed seen, the subscriptions that want it (cleared when the table changes).
    routes: HashMap<Arc<str>, Vec<RouteTarget>>,
}

impl Router {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn targets(&mut self, feed: &Arc<str>) -> &[RouteTarget] {
        let subscriptions = &self.subscriptions;
        self.routes.entry(feed.clone()).or_insert_with(|| {
            subscriptions
                .iter()
                .enumerate()
                .filter(|(_, subscription)| subscription.wants_feed(feed))
                .map(|(index, subscription)| RouteTarget {
                    subscription: index,
                    latency: metrics::delivery_latency(feed, &subscription.name),
                })
                .collect()
        })
    }
}

impl Actor for Router {
    type Context = Context<Self>;
}

/// Adds a subscriber to the table.
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
        // A subscriber replaced under the same name keeps counting what is still in flight.
        let in_flight = self
            .subscriptions
            .iter()
            .find(|subscription| subscription.name == spec.name)
            .map(|subscription| subscription.in_flight.clone());
        self.subscriptions.retain(|subscription| subscription.name != spec.name);
        let name = spec.name;
        let in_flight = in_flight
            .unwrap_or_else(|| Arc::new(InFlight::new(metrics::subscriber_in_flight(&name))));
        self.subscriptions.push(Subscription {
            name: name.clone(),
            feeds: spec.feeds.iter().map(|pattern| WildMatch::new(pattern)).collect(),
            topics: spec
                .topics
                .map(|topics| topics.iter().map(|pattern| WildMatch::new(pattern)).collect()),
            recipient,
            in_flight,
        });
        self.routes.clear();
    }
}

/// Asks how many messages each subscriber holds but has not handled yet.
#[derive(Message)]
#[rtype(result = "Vec<(String, u64)>")]
pub struct GetInFlight;

impl Handler<GetInFlight> for Router {
    type Result = MessageResult<GetInFlight>;

    fn handle(&mut self, _: GetInFlight, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.subscriptions
                .iter()
                .map(|subscription| (subscription.name.clone(), subscription.in_flight.get()))
                .collect(),
        )
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
        let before = self.subscriptions.len();
        self.subscriptions.retain(|subscription| subscription.name != message.name);
        self.routes.clear();
        self.subscriptions.len() != before
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
}

impl Handler<Route> for Router {
    type Result = ();

    fn handle(&mut self, route: Route, _: &mut Context<Self>) {
        let Route { feed, messages } = route;
        self.targets(&feed);
        let Some(targets) = self.routes.get(&feed) else { return };
        let mut messages = Some(messages);
        for (position, target) in targets.iter().enumerate() {
            let subscription = &self.subscriptions[target.subscription];
            let batch = if subscription.topics.is_none() {
                // Every message: the last subscriber takes the batch itself, the others a clone.
                if position + 1 == targets.len() {
                    messages.take().unwrap_or_default()
                } else {
                    messages.clone().unwrap_or_default()
                }
            } else {
                messages
                    .iter()
                    .flatten()
                    .filter(|message| subscription.wants(message))
                    .cloned()
                    .collect()
            };
            if batch.is_empty() {
                continue;
            }
            let in_flight = subscription.in_flight.clone();
            subscription.recipient.do_send(Deliver::new(batch, target.latency.clone(), in_flight));
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

    fn collector() -> (Recipient<Deliver>, mpsc::UnboundedReceiver<Vec<FeedMessage>>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (Collector(sender).start().recipient(), receiver)
    }

    fn message(feed: &str, topic: Option<&str>, text: &'static str) -> FeedMessage {
        FeedMessage {
            feed: feed.into(),
            topic: topic.map(Into::into),
            kind: DataKind::Text,
            payload: Bytes::from_static(text.as_bytes()),
            received_at: SystemTime::now(),
            received: Instant::now(),
            gap_before: None,
        }
    }

    fn texts(batch: &[FeedMessage]) -> Vec<&str> {
        batch.iter().filter_map(FeedMessage::text).collect()
    }

    async fn next(receiver: &mut mpsc::UnboundedReceiver<Vec<FeedMessage>>) -> Vec<FeedMessage> {
        tokio::time::timeout(Duration::from_secs(5), receiver.recv())
            .await
            .expect("a delivery within 5s")
            .expect("collector alive")
    }

    #[actix::test]
    async fn feed_and_topic_patterns_select_messages() {
        let router = Router::new().start();
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
        router.do_send(Route { feed: "stocks".into(), messages: batch });
        assert_eq!(texts(&next(&mut all_rx).await), ["1", "2", "3", "4"]);
        assert_eq!(texts(&next(&mut ms_rx).await), ["1", "3"]);
    }

    #[actix::test]
    async fn several_subscribers_each_get_the_batch_in_order() {
        let router = Router::new().start();
        let (first, mut first_rx) = collector();
        let (second, mut second_rx) = collector();
        router.do_send(Subscribe { spec: SubscriptionSpec::new("a", ["*"]), recipient: first });
        router.do_send(Subscribe {
            spec: SubscriptionSpec::new("b", ["w?ather"]),
            recipient: second,
        });
        let batch = vec![message("weather", None, "x"), message("weather", None, "y")];
        router.do_send(Route { feed: "weather".into(), messages: batch });
        assert_eq!(texts(&next(&mut first_rx).await), ["x", "y"]);
        assert_eq!(texts(&next(&mut second_rx).await), ["x", "y"]);
    }

    #[actix::test]
    async fn no_matching_subscriber_drops_nothing_it_should_not() {
        let router = Router::new().start();
        let (only_stocks, mut stocks_rx) = collector();
        router.do_send(Subscribe {
            spec: SubscriptionSpec::new("s", ["stocks"]).with_topics(["AAPL"]),
            recipient: only_stocks,
        });
        router.do_send(Route {
            feed: "weather".into(),
            messages: vec![message("weather", None, "w")],
        });
        router.do_send(Route {
            feed: "stocks".into(),
            messages: vec![message("stocks", Some("IBM"), "ibm")],
        });
        router.do_send(Route {
            feed: "stocks".into(),
            messages: vec![message("stocks", Some("AAPL"), "aapl")],
        });
        // The first delivery is the AAPL one: nothing was sent for the others.
        assert_eq!(texts(&next(&mut stocks_rx).await), ["aapl"]);
    }

    #[actix::test]
    async fn unsubscribe_stops_delivery() {
        let router = Router::new().start();
        let (gone, mut gone_rx) = collector();
        let (kept, mut kept_rx) = collector();
        router.do_send(Subscribe { spec: SubscriptionSpec::new("gone", ["*"]), recipient: gone });
        router.do_send(Subscribe { spec: SubscriptionSpec::new("kept", ["*"]), recipient: kept });
        let removed = router.send(Unsubscribe { name: "gone".into() }).await.expect("router alive");
        assert!(removed);
        router.do_send(Route { feed: "f".into(), messages: vec![message("f", None, "m")] });
        assert_eq!(texts(&next(&mut kept_rx).await), ["m"]);
        assert!(gone_rx.try_recv().is_err());
    }
}
