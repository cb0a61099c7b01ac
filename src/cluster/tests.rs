//! The cluster's decisions without a NATS server: what a tick asks of NATS
//! (`plan`) from what the watches saw, and the stop of feeds whose leases
//! were not renewed in time, with paused time.

use std::time::{Duration, SystemTime};

use super::*;
use crate::config::Config;
use crate::router::Router;
use crate::transports::TransportRegistry;

const TTL: Duration = Duration::from_secs(3);

fn cluster(me: &str, policy: NatsUnreachable) -> Cluster {
    let router = Router::new();
    let routes = router.routes();
    let supervisor = Supervisor::new(
        Config::default(),
        None,
        TransportRegistry::with_defaults(),
        router.start(),
        routes,
    )
    .start();
    let config = ClusterConfig {
        nats: Vec::new(),
        replica: me.to_owned(),
        lease_ttl: TTL,
        bucket_prefix: "test".to_owned(),
        nats_unreachable: policy,
        seed_feeds: Vec::new(),
    };
    Cluster::new(config, None, supervisor)
}

fn with_feeds(cluster: &mut Cluster, names: &[&str], replicas: &[&str]) {
    for name in names {
        let feed = serde_json::json!({ "name": name, "url": format!("ws://127.0.0.1:9/{name}") });
        cluster.feeds.insert((*name).to_owned(), StoredFeed { origin: Origin::Api, feed });
    }
    for replica in replicas {
        let seen = Seen::new(Announcement { http: None }, 1, SystemTime::now());
        cluster.replicas.insert((*replica).to_owned(), seen);
    }
}

fn acquired(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Acquire { feed } => Some(feed.as_str()),
            _ => None,
        })
        .collect()
}

const FEEDS: [&str; 6] = ["f0", "f1", "f2", "f3", "f4", "f5"];

#[actix::test]
async fn absent_leases_are_taken_where_they_are_placed_then_by_anyone() {
    tokio::time::pause();
    let mut me = cluster("b", NatsUnreachable::StopFeeds);
    with_feeds(&mut me, &FEEDS, &["a", "b"]);
    let placed: Vec<&str> = placement::place(&FEEDS, &["a", "b"])
        .into_iter()
        .filter(|(_, replica)| *replica == "b")
        .map(|(feed, _)| feed)
        .collect();
    let actions = me.plan(Instant::now());
    assert!(matches!(actions[0], Action::Announce));
    assert_eq!(acquired(&actions), placed);
    // Left absent for two ticks (the replica they belong to is slow or
    // gone), any replica takes them.
    tokio::time::advance(me.tick_interval() * 2).await;
    let actions = me.plan(Instant::now());
    assert_eq!(acquired(&actions), FEEDS.to_vec());
}

#[actix::test]
async fn a_held_lease_placed_elsewhere_is_handed_over_and_renewed_meanwhile() {
    tokio::time::pause();
    let mut me = cluster("b", NatsUnreachable::StopFeeds);
    with_feeds(&mut me, &FEEDS, &["a", "b"]);
    let placement = placement::place(&FEEDS, &["a", "b"]);
    let theirs = placement.iter().find(|(_, replica)| **replica == "a").map(|(feed, _)| *feed);
    let theirs = theirs.expect("a feed placed on a");
    let held = Held { revision: 7, renewed: Instant::now(), handover_to: None };
    me.held.insert(theirs.to_owned(), held);
    let renewals: Vec<(String, u64, Option<String>)> = me
        .plan(Instant::now())
        .into_iter()
        .filter_map(|action| match action {
            Action::Renew { feed, revision, handover_to } => Some((feed, revision, handover_to)),
            _ => None,
        })
        .collect();
    assert_eq!(renewals, [(theirs.to_owned(), 7, Some("a".to_owned()))]);
}

#[actix::test]
async fn a_lease_handed_to_us_is_connected_first_and_taken_once_asked_again() {
    tokio::time::pause();
    let mut me = cluster("a", NatsUnreachable::StopFeeds);
    with_feeds(&mut me, &["f0"], &["a", "b"]);
    let lease = Lease { owner: "b".to_owned(), handover_to: Some("a".to_owned()) };
    me.leases.insert("f0".to_owned(), Seen::new(lease, 11, SystemTime::now()));
    let first = me.plan(Instant::now());
    assert!(first.iter().all(|action| !matches!(action, Action::TakeOver { .. })));
    assert!(me.joining.contains("f0"), "connected ahead of taking the lease");
    let second = me.plan(Instant::now());
    let takes: Vec<(&str, u64)> = second
        .iter()
        .filter_map(|action| match action {
            Action::TakeOver { feed, revision } => Some((feed.as_str(), *revision)),
            _ => None,
        })
        .collect();
    assert_eq!(takes, [("f0", 11)]);
    // The owner names someone else instead: the early connection is stopped.
    let lease = Lease { owner: "b".to_owned(), handover_to: None };
    me.leases.insert("f0".to_owned(), Seen::new(lease, 12, SystemTime::now()));
    me.plan(Instant::now());
    assert!(!me.joining.contains("f0"));
}

#[actix::test]
async fn a_lease_of_ours_from_before_a_restart_is_adopted_and_an_expired_one_taken() {
    tokio::time::pause();
    let mut me = cluster("a", NatsUnreachable::StopFeeds);
    with_feeds(&mut me, &["f0"], &["a"]);
    let lease = Lease { owner: "a".to_owned(), handover_to: None };
    me.leases.insert("f0".to_owned(), Seen::new(lease, 3, SystemTime::now()));
    let adopt = me.plan(Instant::now());
    assert!(adopt.iter().any(|action| matches!(action, Action::Adopt { revision: 3, .. })));
    // Unrenewed for lease_ttl, the lease is gone on the server: taken afresh.
    tokio::time::advance(TTL).await;
    let actions = me.plan(Instant::now());
    assert_eq!(acquired(&actions), ["f0"]);
}

#[actix::test]
async fn unrenewed_leases_stop_their_feeds_before_they_expire_unless_kept() {
    tokio::time::pause();
    for (policy, kept) in [(NatsUnreachable::StopFeeds, false), (NatsUnreachable::KeepFeeds, true)]
    {
        let mut me = cluster("a", policy);
        me.held.insert(
            "f0".to_owned(),
            Held { revision: 1, renewed: Instant::now(), handover_to: None },
        );
        tokio::time::advance(TTL / 2).await;
        me.check_unrenewed();
        assert!(me.held.contains_key("f0"), "half the lease time is not yet too late");
        // Two thirds of the lease time without renewal: the server would let
        // another replica take it a third of the lease time later.
        tokio::time::advance(TTL / 6).await;
        me.check_unrenewed();
        assert_eq!(me.held.contains_key("f0"), kept, "{policy:?}");
    }
}

#[actix::test]
async fn removed_feeds_release_their_leases() {
    tokio::time::pause();
    let mut me = cluster("a", NatsUnreachable::StopFeeds);
    with_feeds(&mut me, &[], &["a"]);
    me.held.insert(
        "gone".to_owned(),
        Held { revision: 5, renewed: Instant::now(), handover_to: None },
    );
    let actions = me.plan(Instant::now());
    assert!(actions
        .iter()
        .any(|action| matches!(action, Action::Release { revision: 5, feed } if feed == "gone")));
    assert!(me.held.is_empty());
}
