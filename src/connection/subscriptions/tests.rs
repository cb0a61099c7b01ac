//! Generated subscriptions on a memory feed with paused time: batching, ids,
//! reply matching, timeouts, staleness and states across reconnects.

use std::time::Duration;

use feedvisor_transport_api::Outbound;
use feedvisor_transport_memory::MemoryPeer;

use super::{bounded, judge, Verdict, MAX_REASON};
use crate::config::AckConfig;
use crate::connection::tests::{next_outbound, start, Harness};
use crate::status::{SubscriptionStatus, TopicState};

const TEMPLATE: &str = r#"template = '{"op":"sub","id":{{id}},"args":{{topics}}}'"#;
const ACK: &str = r#"ack = { id = "/id", error = "/error", timeout = "5s" }"#;

/// The next text message the feed sent to its peer.
async fn next_text(peer: &mut MemoryPeer) -> String {
    match next_outbound(peer).await {
        Outbound::Text(bytes) => String::from_utf8(bytes.to_vec()).expect("UTF-8"),
        other => panic!("expected a text message, got {other:?}"),
    }
}

fn status(harness: &Harness) -> SubscriptionStatus {
    SubscriptionStatus::of(harness.shared.subscriptions().snapshot(None))
}

fn state_of(harness: &Harness, topic: &str) -> TopicState {
    let status = status(harness);
    let found = status.by_topic.iter().find(|entry| entry.topic == topic);
    found.unwrap_or_else(|| panic!("no topic {topic}")).state
}

#[actix::test]
async fn topics_go_out_after_on_open_in_batches_of_per_message_each_with_its_id() {
    let extra = format!(
        "on_open = ['hello']\nsubscribe = {{ {TEMPLATE}, topics = [\"A\", \"B\", \"C\", \"D\", \"E\"], per_message = 2 }}"
    );
    let mut harness = start("batches", &extra).await;
    let mut peer = harness.accept().await;
    assert_eq!(next_text(&mut peer).await, "hello");
    assert_eq!(next_text(&mut peer).await, r#"{"op":"sub","id":1,"args":["A","B"]}"#);
    assert_eq!(next_text(&mut peer).await, r#"{"op":"sub","id":2,"args":["C","D"]}"#);
    assert_eq!(next_text(&mut peer).await, r#"{"op":"sub","id":3,"args":["E"]}"#);
    // Without `ack`, a topic handed to the connection counts as active.
    assert_eq!(status(&harness).active, 5);
    assert_eq!(harness.metric("feedvisor_subscription_requests_total", ""), Some(3.0));
}

#[actix::test]
async fn replies_settle_their_batch_and_are_not_delivered_while_data_is() {
    let extra = format!(
        "topic = \"/t\"\nsubscribe = {{ {TEMPLATE}, topics = [\"A\", \"B\", \"C\"], per_message = 2, {ACK} }}"
    );
    let (mut harness, peer) = opened("replies", &extra, 2).await;
    assert_eq!(status(&harness).pending, 3);

    peer.send_text(r#"{"id":2,"error":{"code":7},"msg":"x"}"#);
    // An error pointer at an object finds nothing: that reply is no rejection...
    peer.send_text(r#"{"id":1,"result":null}"#);
    peer.send_text(r#"{"id":"2","error":"unknown topic C"}"#);
    peer.send_text(r#"{"id":9,"result":null}"#);
    peer.send_text(r#"{"t":"A","price":1}"#);
    let delivered = harness.route().await.messages;
    let payloads: Vec<&[u8]> = delivered.iter().map(|m| &m.payload[..]).collect();
    // ...but an acknowledgement of batch 2, consumed like the first reply.
    // A second reply to batch 2 and one to id 9 answer no batch waiting on
    // this connection: they are delivered, as is the data.
    let expected: [&[u8]; 3] = [
        br#"{"id":"2","error":"unknown topic C"}"#,
        br#"{"id":9,"result":null}"#,
        br#"{"t":"A","price":1}"#,
    ];
    assert_eq!(payloads, expected);
    assert_eq!(state_of(&harness, "A"), TopicState::Active);
    assert_eq!(state_of(&harness, "B"), TopicState::Active);
    // Batch 2 was settled by its first reply; the second one changed nothing.
    assert_eq!(state_of(&harness, "C"), TopicState::Active);
    assert_eq!(
        harness.metric("feedvisor_subscription_replies_total", ",result=\"ack\""),
        Some(2.0)
    );
}

#[actix::test]
async fn a_rejection_keeps_the_reason_and_is_not_sent_again_on_reconnect() {
    let extra = format!("subscribe = {{ {TEMPLATE}, topics = [\"A\", \"BAD\"], {ACK} }}");
    let (mut harness, peer) = opened("rejections", &extra, 2).await;
    peer.send_text(r#"{"id":1}"#);
    peer.send_text(r#"{"id":2,"error":"unknown topic BAD"}"#);
    harness.settle().await;
    let status = status(&harness);
    let bad = status.by_topic.iter().find(|topic| topic.topic == "BAD").expect("BAD");
    assert_eq!(
        (bad.state, bad.reason.as_deref()),
        (TopicState::Rejected, Some("unknown topic BAD"))
    );
    assert_eq!((status.active, status.rejected), (1, 1));

    peer.close(1001, "going away");
    harness.settle().await;
    assert_eq!(state_of(&harness, "A"), TopicState::Pending, "waits for the next connection");
    assert_eq!(state_of(&harness, "BAD"), TopicState::Rejected);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut peer = harness.accept().await;
    // Ids start again at 1 on each connection; only A is sent.
    assert_eq!(next_text(&mut peer).await, r#"{"op":"sub","id":1,"args":["A"]}"#);
    peer.send_text(r#"{"id":1}"#);
    harness.settle().await;
    assert_eq!(state_of(&harness, "A"), TopicState::Active);
    assert_eq!(harness.metric("feedvisor_subscription_requests_total", ""), Some(3.0));
    let topics = |state: &str| {
        harness.metric("feedvisor_subscription_topics", &format!(",state=\"{state}\""))
    };
    assert_eq!((topics("active"), topics("rejected")), (Some(1.0), Some(1.0)));
}

#[actix::test]
async fn replay_rejected_sends_rejected_topics_again_on_reconnect() {
    let extra =
        format!("subscribe = {{ {TEMPLATE}, topics = [\"BAD\"], {ACK}, replay_rejected = true }}");
    let (mut harness, peer) = opened("replayed", &extra, 1).await;
    peer.send_text(r#"{"id":1,"error":"not now"}"#);
    harness.settle().await;
    assert_eq!(state_of(&harness, "BAD"), TopicState::Rejected);
    peer.close(1001, "going away");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut peer = harness.accept().await;
    assert_eq!(next_text(&mut peer).await, r#"{"op":"sub","id":1,"args":["BAD"]}"#);
    assert_eq!(state_of(&harness, "BAD"), TopicState::Pending);
}

/// A feed `name` subscribing to topic A with replies matched, once A's
/// subscribe message went out on its first connection.
async fn subscribed_to_a(name: &str) -> (Harness, MemoryPeer) {
    let extra = format!("subscribe = {{ {TEMPLATE}, topics = [\"A\"], {ACK} }}");
    opened(name, &extra, 1).await
}

/// A feed `name` with `extra`, once `sent` messages went out on its first connection.
async fn opened(name: &str, extra: &str, sent: usize) -> (Harness, MemoryPeer) {
    let mut harness = start(name, extra).await;
    let mut peer = harness.accept().await;
    for _ in 0..sent {
        next_text(&mut peer).await;
    }
    (harness, peer)
}

#[actix::test]
async fn a_batch_without_reply_times_out_and_a_late_reply_still_counts() {
    let (harness, peer) = subscribed_to_a("timeouts").await;
    tokio::time::sleep(Duration::from_millis(4_999)).await;
    harness.settle().await;
    assert_eq!(state_of(&harness, "A"), TopicState::Pending);
    tokio::time::sleep(Duration::from_millis(1)).await;
    harness.settle().await;
    assert_eq!(state_of(&harness, "A"), TopicState::TimedOut);
    assert_eq!(harness.metric("feedvisor_subscription_timeouts_total", ""), Some(1.0));
    peer.send_text(r#"{"id":1}"#);
    harness.settle().await;
    assert_eq!(state_of(&harness, "A"), TopicState::Active);
}

#[actix::test]
async fn a_batch_held_by_outbound_rate_starts_its_reply_timeout_when_it_is_due_to_go() {
    let extra = format!(
        "outbound_rate = {{ messages = 1, per = \"2s\" }}\nsubscribe = {{ {TEMPLATE}, topics = [\"A\", \"B\", \"C\", \"D\"], {ACK} }}"
    );
    let (harness, _peer) = opened("paced-acks", &extra, 1).await;
    // One message every 2 s: B, C and D go out at 2, 4 and 6 s, so their
    // 5 s timeouts end at 7, 9 and 11 s; A's (sent at once) at 5 s.
    tokio::time::sleep(Duration::from_secs(6)).await;
    harness.settle().await;
    assert_eq!(state_of(&harness, "A"), TopicState::TimedOut);
    for topic in ["B", "C", "D"] {
        assert_eq!(state_of(&harness, topic), TopicState::Pending, "{topic}");
    }
    tokio::time::sleep(Duration::from_millis(5_500)).await;
    harness.settle().await;
    assert_eq!(state_of(&harness, "D"), TopicState::TimedOut);
}

#[actix::test]
async fn a_timeout_armed_on_a_lost_connection_does_not_touch_the_next_one() {
    let (mut harness, peer) = subscribed_to_a("timeout-generations").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    peer.close(1001, "going away");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut peer = harness.accept().await;
    next_text(&mut peer).await;
    // The first connection's timer (5 s after its send) passes: nothing times out.
    tokio::time::sleep(Duration::from_secs(2)).await;
    harness.settle().await;
    assert_eq!(state_of(&harness, "A"), TopicState::Pending);
}

#[actix::test]
async fn a_topic_without_data_for_stale_after_is_stale_until_data_comes() {
    let extra = format!(
        "topic = \"/t\"\nsubscribe = {{ {TEMPLATE}, topics = [\"A\", \"B\"], {ACK}, stale_after = \"4s\" }}"
    );
    let (harness, peer) = opened("staleness", &extra, 2).await;
    peer.send_text(r#"{"id":1}"#);
    peer.send_text(r#"{"id":2}"#);
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        peer.send_text(r#"{"t":"A"}"#);
        harness.settle().await;
    }
    let status = status(&harness);
    let stale: Vec<&str> =
        status.by_topic.iter().filter(|t| t.stale).map(|t| t.topic.as_str()).collect();
    assert_eq!(stale, ["B"]);
    assert_eq!(harness.metric("feedvisor_subscription_stale_topics", ""), Some(1.0));
    peer.send_text(r#"{"t":"B"}"#);
    harness.settle().await;
    assert_eq!(self::status(&harness).stale, 0);
    assert_eq!(harness.metric("feedvisor_subscription_stale_total", ""), Some(1.0));
}

fn ack(extra: impl FnOnce(&mut AckConfig)) -> AckConfig {
    let mut ack = AckConfig {
        id: "/id".to_owned(),
        error: None,
        success: None,
        success_value: None,
        reason: None,
        timeout: Duration::from_secs(1),
    };
    extra(&mut ack);
    ack
}

#[test]
fn success_pointers_and_values_decide_and_the_reason_comes_from_its_pointer() {
    let bybit = ack(|ack| {
        ack.id = "/req_id".to_owned();
        ack.success = Some("/success".to_owned());
        ack.success_value = Some("true".to_owned());
        ack.reason = Some("/ret_msg".to_owned());
    });
    let ok = br#"{"success":true,"ret_msg":"","req_id":"3"}"#;
    assert_eq!(judge(&bybit, ok), Some((3, Verdict::Ack)));
    let refused = br#"{"success":false,"ret_msg":"error:invalid topic","req_id":"4"}"#;
    assert_eq!(judge(&bybit, refused), Some((4, Verdict::Rejected("error:invalid topic".into()))));
    let no_id = br#"{"success":true}"#;
    assert_eq!(judge(&bybit, no_id), None);
    assert_eq!(judge(&bybit, br#"{"req_id":true}"#), None, "an id is a number or a string of one");
    let absent = ack(|ack| ack.success = Some("/result".to_owned()));
    let verdict = judge(&absent, br#"{"id":1}"#);
    assert_eq!(verdict, Some((1, Verdict::Rejected("the reply has nothing at /result".into()))));
}

#[test]
fn reasons_are_bounded_and_lose_control_characters() {
    let long = "é".repeat(300);
    let cut = bounded(long);
    assert!(cut.len() <= MAX_REASON + '…'.len_utf8(), "{}", cut.len());
    assert!(cut.ends_with('…'));
    assert_eq!(bounded("a\nb\u{1b}c".to_owned()), "a b c");
}
