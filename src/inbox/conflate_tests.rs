use super::*;
use crate::inbox::delivery::{Chunk, DataKind};
use crate::inbox::Segment;
use crate::metrics;

/// One inbox state and what its pushes are counted against.
struct Case {
    state: InboxState,
    metrics: SubscriberMetrics,
    label: String,
    latency: Arc<LatencySampler>,
    pointer: KeyPointer,
    capacity: usize,
}

impl Case {
    /// An empty state holding `capacity` messages, keyed by `/s`, counted as `label`.
    fn new(label: &str, capacity: usize) -> Self {
        metrics::install().expect("recorder");
        Case {
            state: InboxState::default(),
            metrics: SubscriberMetrics::new(label.to_owned()),
            label: label.to_owned(),
            latency: Arc::new(LatencySampler::new(metrics::delivery_latency("conflate", label))),
            pointer: KeyPointer::new("/s").expect("a pointer"),
            capacity,
        }
    }

    /// Pushes `batch` as `Inbox::push` does: the policy first, then what it left as a segment.
    fn push(&mut self, mut batch: Vec<FeedMessage>) {
        let Case { state, metrics, latency, pointer, capacity, .. } = self;
        make_room(state, &mut batch, latency, pointer, *capacity, metrics);
        if !batch.is_empty() {
            state.queued += batch.len();
            state.queue.push_back(Segment { latency: latency.clone(), messages: batch });
        }
    }

    /// Takes up to `max` messages as `Inbox::take_batch` does, as text.
    fn take(&mut self, max: usize) -> Vec<String> {
        let mut messages = Vec::new();
        let mut timings = Vec::new();
        take(&mut self.state, &mut messages, &mut timings, max);
        for segment in self.state.queue.drain(..) {
            messages.extend(segment.messages);
        }
        self.state.queued -= messages.len();
        messages.iter().map(|m| String::from_utf8_lossy(&m.payload).into_owned()).collect()
    }

    /// This case's count of drops for `reason`.
    fn dropped(&self, reason: &str) -> u64 {
        dropped(&self.label, reason)
    }
}

/// The count of subscriber `label`'s drops for `reason` in `/metrics`.
fn dropped(label: &str, reason: &str) -> u64 {
    let rendered = metrics::install().expect("recorder").render();
    let prefix =
        format!("{}{{subscriber=\"{label}\",reason=\"{reason}\"}} ", metrics::SUBSCRIBER_DROPPED);
    rendered
        .lines()
        .find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} series"))
}

fn on(feed: &str, payload: &str) -> FeedMessage {
    FeedMessage::text_for_test(feed, payload)
}

/// A message of feed `f` keyed `s`, numbered `n`.
fn tick(s: &str, n: u32) -> FeedMessage {
    on("f", &format!(r#"{{"s":"{s}","n":{n}}}"#))
}

fn ticks(list: &[(&str, u32)]) -> Vec<FeedMessage> {
    list.iter().map(|(s, n)| tick(s, *n)).collect()
}

fn texts(list: &[(&str, u32)]) -> Vec<String> {
    list.iter().map(|(s, n)| format!(r#"{{"s":"{s}","n":{n}}}"#)).collect()
}

#[test]
fn a_subscriber_that_keeps_up_queues_plainly_and_nothing_is_conflated() {
    let mut case = Case::new("conflate-plain", 4);
    case.push(ticks(&[("A", 1), ("A", 2)]));
    case.push(ticks(&[("A", 3), ("B", 1)]));
    assert!(case.state.pending.is_none(), "within the bound nothing is keyed");
    assert_eq!(case.take(1024), texts(&[("A", 1), ("A", 2), ("A", 3), ("B", 1)]));
    assert_eq!(case.dropped("conflated"), 0);
}

#[test]
fn behind_only_the_latest_per_key_waits_in_the_order_keys_first_became_pending() {
    let mut case = Case::new("conflate-order", 3);
    case.push(ticks(&[("A", 1), ("B", 1), ("A", 2)]));
    // Full: the next push keys all that waits.
    case.push(ticks(&[("C", 1)]));
    case.push(ticks(&[("B", 2), ("A", 3), ("C", 2), ("A", 4)]));
    assert_eq!(case.state.queued, 3);
    assert_eq!(case.dropped("conflated"), 5, "A1, A2, A3, B1 and C1 were replaced");
    assert_eq!(case.take(1024), texts(&[("A", 4), ("B", 2), ("C", 2)]));
    assert!(case.state.pending.is_none(), "all taken: plain queueing again");
    assert_eq!(case.state.queued, 0);
}

#[test]
fn a_key_taken_becomes_pending_again_behind_the_others() {
    let mut case = Case::new("conflate-again", 2);
    case.push(ticks(&[("A", 1), ("B", 1), ("A", 2)]));
    assert_eq!(case.take(1), texts(&[("A", 2)]), "one taken, B still pending");
    assert!(case.state.pending.is_some(), "conflation lasts until all is taken");
    case.push(ticks(&[("A", 3), ("B", 2)]));
    assert_eq!(case.take(1024), texts(&[("B", 2), ("A", 3)]));
    assert_eq!(case.dropped("conflated"), 2);
}

#[test]
fn more_keys_than_the_queue_push_out_the_oldest_counted_as_conflate_overflow() {
    let mut case = Case::new("conflate-keys", 2);
    case.push(ticks(&[("A", 1), ("B", 1)]));
    case.push(ticks(&[("C", 1)]));
    case.push(ticks(&[("D", 1), ("C", 2)]));
    assert_eq!(case.state.queued, 2, "the bound holds");
    assert_eq!(case.dropped("conflate_overflow"), 2, "A and B pushed out");
    assert_eq!(case.dropped("conflated"), 1, "C1 replaced");
    assert_eq!(case.dropped("drop_oldest"), 0);
    assert_eq!(case.take(1024), texts(&[("C", 2), ("D", 1)]));
}

#[test]
fn key_less_messages_wait_as_entries_of_their_own_and_are_never_replaced() {
    let mut case = Case::new("conflate-keyless", 10);
    let mut binary = on("f", r#"{"s":"A"}"#);
    binary.kind = DataKind::Binary;
    let mut piece = on("f", r#"{"s":"A"}"#);
    piece.chunk = Some(Chunk { message: 1, offset: 0, last: true, aborted: false });
    let batch = vec![
        on("f", "not json"),
        tick("A", 1),
        on("f", r#"{"t":"no key"}"#),
        on("f", r#"{"s":null}"#),
        on("f", "not json"),
        piece,
    ];
    // Nine plain ones fill it, then everything is keyed.
    case.push((0..9).map(|n| tick("Z", n)).collect());
    case.push(batch);
    case.push(vec![tick("A", 2), binary]);
    let taken = case.take(1024);
    assert_eq!(
        taken,
        [
            r#"{"s":"Z","n":8}"#,
            "not json",
            r#"{"s":"A"}"#,
            r#"{"t":"no key"}"#,
            r#"{"s":null}"#,
            "not json",
            r#"{"s":"A"}"#,
        ],
        "key-less ones keep their places; A's entry holds its latest, a binary frame's JSON"
    );
    assert_eq!(case.dropped("conflated"), 8 + 2, "Z0..Z7, then A1 and A2");
    assert_eq!(case.dropped("conflate_overflow"), 0);
}

#[test]
fn keys_are_per_feed_and_per_kind_of_scalar_and_compared_decoded() {
    let mut case = Case::new("conflate-kinds-wide", 8);
    case.push(vec![on("f", r#"{"s":"AB"}"#)]);
    let mut behind: Vec<FeedMessage> = (0..8).map(|n| tick("Z", n)).collect();
    behind.extend([
        on("g", r#"{"s":"AB"}"#),
        on("f", r#"{"s":1}"#),
        on("f", r#"{"s":"1"}"#),
        on("f", r#"{"s":true}"#),
        on("f", r#"{"s":"A\u0042","n":2}"#),
    ]);
    case.push(behind);
    assert_eq!(
        case.take(1024),
        [
            r#"{"s":"A\u0042","n":2}"#,
            r#"{"s":"Z","n":7}"#,
            r#"{"s":"AB"}"#,
            r#"{"s":1}"#,
            r#"{"s":"1"}"#,
            r#"{"s":true}"#,
        ]
    );
    assert_eq!(case.dropped("conflated"), 7 + 1);
}

#[test]
fn key_pointers_are_checked_when_made() {
    assert_eq!(KeyPointer::new("/symbol").map(|p| p.as_str().to_owned()), Ok("/symbol".into()));
    assert_eq!(KeyPointer::new(""), Err(KeyPointerError::Empty));
    let no_slash = KeyPointer::new("symbol").expect_err("no leading slash").to_string();
    assert!(no_slash.contains("start it with '/'"), "{no_slash}");
    let escape = KeyPointer::new("/a~2").expect_err("bad escape").to_string();
    assert!(escape.contains("'~' must be followed by 0 or 1"), "{escape}");
    let empty = KeyPointerError::Empty.to_string();
    assert!(empty.contains("such as \"/symbol\""), "{empty}");
}

/// A subscriber that holds each batch until released, reporting what it took.
struct Holder {
    held: Vec<crate::inbox::Deliver>,
    seen: tokio::sync::mpsc::UnboundedSender<Vec<String>>,
}

impl actix::Actor for Holder {
    type Context = actix::Context<Self>;
}

impl actix::Handler<crate::inbox::Deliver> for Holder {
    type Result = ();

    fn handle(&mut self, mut deliver: crate::inbox::Deliver, _: &mut Self::Context) {
        let texts = deliver.messages().iter().filter_map(|m| m.text().map(str::to_owned));
        let _ = self.seen.send(texts.collect());
        self.held.push(deliver);
    }
}

/// Lets go of the batch held.
#[derive(actix::Message)]
#[rtype(result = "()")]
struct Release;

impl actix::Handler<Release> for Holder {
    type Result = ();

    fn handle(&mut self, _: Release, _: &mut Self::Context) {
        self.held.clear();
    }
}

#[actix::test]
async fn a_library_subscriber_holding_its_batch_gets_the_latest_of_each_key_next() {
    use actix::Actor;

    metrics::install().expect("recorder");
    let (seen, mut batches) = tokio::sync::mpsc::unbounded_channel();
    let holder = Holder { held: Vec::new(), seen }.start();
    let pointer = KeyPointer::new("/s").expect("a pointer");
    let inbox = crate::inbox::Inbox::new(
        1,
        "conflate-lib".into(),
        "conflate-lib".into(),
        3,
        crate::inbox::SubscriberOverflow::Conflate(pointer),
        holder.clone().recipient(),
        None,
    );
    let latency = inbox.latency_for(&Arc::from("f"));
    let gate = crate::flow::FlowGate::new();
    let mut next = async || {
        let batch = tokio::time::timeout(std::time::Duration::from_secs(5), batches.recv());
        batch.await.expect("a batch in time").expect("holder alive")
    };
    inbox.push(ticks(&[("A", 1)]), &latency, &gate);
    assert_eq!(next().await, texts(&[("A", 1)]), "the first goes straight out and is held");
    for (s, n) in [("A", 2), ("B", 1), ("A", 3), ("C", 1), ("B", 2)] {
        inbox.push(ticks(&[(s, n)]), &latency, &gate);
    }
    assert_eq!(inbox.in_flight(), 1 + 3, "the held one and one entry per key");
    holder.do_send(Release);
    assert_eq!(next().await, texts(&[("A", 3), ("B", 2), ("C", 1)]));
    holder.do_send(Release);
    // Caught up: plain queueing again, nothing keyed.
    inbox.push(ticks(&[("A", 4)]), &latency, &gate);
    assert_eq!(next().await, texts(&[("A", 4)]));
    assert!(!gate.is_closed(), "conflation never closes the gate");
    assert_eq!(dropped("conflate-lib", "conflated"), 2, "A2 and B1 replaced");
}

#[test]
fn a_gap_announced_on_a_replaced_message_moves_to_its_successor() {
    let mut case = Case::new("conflate-gaps", 1);
    case.push(ticks(&[("A", 1)]));
    let mut after_gap = tick("A", 5);
    after_gap.gap_before = Some(3);
    let mut after_another = tick("A", 9);
    after_another.gap_before = Some(2);
    case.push(vec![after_gap, tick("A", 6), after_another, tick("A", 10)]);
    let mut messages = Vec::new();
    take(&mut case.state, &mut messages, &mut Vec::new(), 1024);
    let gaps: Vec<_> = messages.iter().map(|m| (m.payload.clone(), m.gap_before)).collect();
    assert_eq!(gaps, [(Bytes::from(texts(&[("A", 10)]).remove(0)), Some(5))]);
}
