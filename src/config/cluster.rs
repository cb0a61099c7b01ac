//! `[cluster]`: replicas that share the feed list through NATS JetStream.
//!
//! Checked here, purely: the NATS URLs (`${VAR}` expanded, since they may
//! carry credentials), the replica's name (a NATS KV key, default the host
//! name made key-safe), `lease_ttl`, `bucket_prefix` and what to do while
//! NATS cannot be reached. In a cluster every feed name must also be a KV key.
//!
//! The feeds of the file are kept as written (`seed_feeds`, `${VAR}`
//! unexpanded): they seed the cluster's feed list, and each replica expands
//! the references from its own environment, so no secret is stored in NATS.

use std::time::Duration;

use serde::{Serialize, Serializer};

use super::raw::{RawCluster, RawFeed};
use super::scope::{Context, Scope};
use super::{checks::label, FieldError, Secret, SubscriberConfig};
pub(crate) use crate::nats::shown_url as shown_nats_url;

/// The default `lease_ttl`.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// The default `bucket_prefix`.
pub const DEFAULT_BUCKET_PREFIX: &str = "feedvisor";
/// The shortest `lease_ttl`: renewals run every third of it, and NATS
/// expires entries with a granularity of about a second.
const MIN_LEASE_TTL: Duration = Duration::from_secs(2);

/// `[cluster]`, resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterConfig {
    /// NATS server URLs, `${VAR}` expanded; shown without credentials.
    #[serde(serialize_with = "serialize_urls")]
    pub nats: Vec<Secret>,
    /// This replica's name: its key in the replica bucket and the owner of its leases.
    pub replica: String,
    /// How long a lease (and the replica's announcement) lives without
    /// renewal; renewed every third of it.
    #[serde(serialize_with = "serialize_duration")]
    pub lease_ttl: Duration,
    /// The KV buckets are `<prefix>-replicas`, `<prefix>-leases`, `<prefix>-feeds`.
    pub bucket_prefix: String,
    /// What a replica does with its feeds while it cannot renew their leases.
    pub nats_unreachable: NatsUnreachable,
    /// The file's `[[feeds]]` as written (`${VAR}` unexpanded), as JSON:
    /// what the cluster's feed list is seeded with.
    #[serde(skip)]
    pub seed_feeds: Vec<serde_json::Value>,
}

impl ClusterConfig {
    /// The bucket of replica announcements.
    pub fn replicas_bucket(&self) -> String {
        format!("{}-replicas", self.bucket_prefix)
    }

    /// The bucket of feed leases.
    pub fn leases_bucket(&self) -> String {
        format!("{}-leases", self.bucket_prefix)
    }

    /// The bucket of the feed list.
    pub fn feeds_bucket(&self) -> String {
        format!("{}-feeds", self.bucket_prefix)
    }
}

/// `nats_unreachable`: the trade-off while a replica cannot renew its leases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NatsUnreachable {
    /// Stop the feeds before their leases could expire on the server, so
    /// that no feed ever has two owners (at most once; the default).
    #[default]
    StopFeeds,
    /// Keep the feeds running: nothing is missed, but another replica that
    /// still reaches NATS may take the leases and connect them too (duplicates).
    KeepFeeds,
}

/// Whether `key` can be a NATS KV key (and so a replica name, or a feed name in a cluster).
pub(crate) fn is_kv_key(key: &str) -> bool {
    key.split('.').all(|part| {
        !part.is_empty()
            && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '='))
    })
}

/// The host name made a KV key: other characters become `-`.
fn host_replica_name(host: &str) -> Option<String> {
    let name: String = host
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') { c } else { '-' })
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Checks `[cluster]` and, in a cluster, that every feed name is a KV key.
pub(super) fn cluster(
    raw: &RawCluster,
    feeds: &[RawFeed],
    context: &Context<'_>,
    errors: &mut Vec<FieldError>,
) -> Option<ClusterConfig> {
    let mut scope = Scope { prefix: "cluster", errors };
    let mut nats = Vec::new();
    if raw.nats.is_empty() {
        scope.error("nats", "list at least one NATS server, such as [\"nats://127.0.0.1:4222\"]");
    }
    for (index, template) in raw.nats.iter().enumerate() {
        let field = format!("nats[{index}]");
        let Some(url) = scope.expand(&field, template, context.env) else { continue };
        match crate::nats::check_url(&url) {
            Ok(()) => nats.push(Secret::new(url)),
            Err(problem) => scope.error(&field, problem),
        }
    }
    let replica = match &raw.replica {
        Some(template) => scope.expand("replica", template, context.env).and_then(|name| {
            if is_kv_key(&name) && !name.contains('.') {
                Some(name)
            } else {
                scope.fail(
                    "replica",
                    format!(
                        "{name:?} is not a valid replica name: use letters, digits, '-' and '_'"
                    ),
                )
            }
        }),
        None => {
            let host = (context.env)("HOSTNAME")
                .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok());
            match host.as_deref().and_then(host_replica_name) {
                Some(name) => Some(name),
                None => scope.fail("replica", "the host name is unknown: set replica = \"...\""),
            }
        }
    };
    let lease_ttl = scope.duration("lease_ttl", raw.lease_ttl.as_ref(), DEFAULT_LEASE_TTL);
    let lease_ttl = match lease_ttl {
        Some(ttl) if ttl < MIN_LEASE_TTL => scope.fail(
            "lease_ttl",
            format!("must be at least {}", humantime::format_duration(MIN_LEASE_TTL)),
        ),
        other => other,
    };
    let bucket_prefix =
        raw.bucket_prefix.clone().unwrap_or_else(|| DEFAULT_BUCKET_PREFIX.to_owned());
    let bucket_prefix = if bucket_prefix.is_empty()
        || !bucket_prefix.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    {
        scope.fail(
            "bucket_prefix",
            format!(
                "{bucket_prefix:?} cannot start a bucket name: use letters, digits, '-' and '_'"
            ),
        )
    } else {
        Some(bucket_prefix)
    };
    let nats_unreachable = match raw.nats_unreachable.as_deref() {
        None | Some("stop_feeds") => Some(NatsUnreachable::StopFeeds),
        Some("keep_feeds") => Some(NatsUnreachable::KeepFeeds),
        Some(other) => scope.fail(
            "nats_unreachable",
            format!("unknown value {other:?}: use \"stop_feeds\" (the default) or \"keep_feeds\""),
        ),
    };
    for (index, feed) in feeds.iter().enumerate() {
        let Some(name) = feed.name.as_deref() else { continue };
        if !is_kv_key(name) {
            let prefix = label("feeds", index, Some(name));
            errors.push(FieldError::new(
                format!("{prefix}.name"),
                format!("{name:?} cannot be a NATS KV key, which a feed in a [cluster] needs: no leading, trailing or double '.'"),
            ));
        }
    }
    Some(ClusterConfig {
        nats: if nats.len() == raw.nats.len() && !nats.is_empty() { nats } else { return None },
        replica: replica?,
        lease_ttl: lease_ttl?,
        bucket_prefix: bucket_prefix?,
        nats_unreachable: nats_unreachable?,
        seed_feeds: Vec::new(),
    })
}

/// Refuses a sink that needs the `[cluster]` NATS connection when there is none.
pub(super) fn check_subscribers(
    clustered: bool,
    subscribers: &[SubscriberConfig],
    errors: &mut Vec<FieldError>,
) {
    if clustered {
        return;
    }
    for (index, subscriber) in subscribers.iter().enumerate() {
        if subscriber.sink.uses_cluster_connection() {
            let prefix = label("subscribers", index, Some(&subscriber.name));
            errors.push(FieldError::new(
                format!("{prefix}.nats"),
                "list the NATS servers to publish to, or add a [cluster] section whose connection it uses",
            ));
        }
    }
}

/// The `[[feeds]]` tables of config `text` as written, as JSON.
pub(super) fn seed_feeds(text: &str) -> Vec<serde_json::Value> {
    let Ok(table) = toml::from_str::<toml::Table>(text) else { return Vec::new() };
    let Some(toml::Value::Array(feeds)) = table.get("feeds") else { return Vec::new() };
    feeds.iter().filter_map(|feed| serde_json::to_value(feed).ok()).collect()
}

fn serialize_urls<S: Serializer>(urls: &[Secret], serializer: S) -> Result<S::Ok, S::Error> {
    let shown: Vec<String> = urls.iter().map(|url| shown_nats_url(url.expose())).collect();
    shown.serialize(serializer)
}

fn serialize_duration<S: Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&humantime::format_duration(*duration).to_string())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn kv_keys_follow_the_nats_rules() {
        assert!(is_kv_key("stocks"));
        assert!(is_kv_key("eu.stocks-1"));
        assert!(!is_kv_key(".stocks"));
        assert!(!is_kv_key("stocks."));
        assert!(!is_kv_key("a..b"));
        assert!(!is_kv_key(""));
        assert!(!is_kv_key("a b"));
    }

    fn errors(text: &str) -> Vec<String> {
        let env = |name: &str| (name == "HOSTNAME").then(|| "host-1".to_owned());
        let transports = crate::transports::TransportRegistry::with_defaults();
        match super::super::Config::from_toml_str_with_env(
            text,
            Path::new("c.toml"),
            &env,
            &transports,
        ) {
            Ok(_) => Vec::new(),
            Err(error) => error.errors.into_iter().map(|error| error.path).collect(),
        }
    }

    #[test]
    fn every_bad_cluster_setting_is_named() {
        let text = r#"
            [cluster]
            nats = ["http://x:1", "nats://"]
            replica = "a.b"
            lease_ttl = "1s"
            bucket_prefix = "no spaces"
            nats_unreachable = "panic"
            [[feeds]]
            name = "trailing."
            url = "ws://127.0.0.1:1/"
        "#;
        assert_eq!(
            errors(text),
            [
                "cluster.nats[0]",
                "cluster.nats[1]",
                "cluster.replica",
                "cluster.lease_ttl",
                "cluster.bucket_prefix",
                "cluster.nats_unreachable",
                "feeds[0] (trailing.).name",
            ]
        );
    }

    #[test]
    fn defaults_and_the_seed_are_as_documented() {
        let text = "[cluster]\nnats = [\"nats://127.0.0.1:4222\"]\n[[feeds]]\nname = \"s\"\nurl = \"ws://h/${TOKEN}\"\n";
        let env = |name: &str| match name {
            "HOSTNAME" => Some("pod-0".to_owned()),
            "TOKEN" => Some("secret".to_owned()),
            _ => None,
        };
        let transports = crate::transports::TransportRegistry::with_defaults();
        let config = super::super::Config::from_toml_str_with_env(
            text,
            Path::new("c.toml"),
            &env,
            &transports,
        )
        .unwrap_or_else(|error| panic!("{error}"));
        let cluster = config.cluster.expect("cluster");
        assert_eq!(cluster.replica, "pod-0");
        assert_eq!(cluster.lease_ttl, DEFAULT_LEASE_TTL);
        assert_eq!(cluster.bucket_prefix, DEFAULT_BUCKET_PREFIX);
        assert_eq!(cluster.nats_unreachable, NatsUnreachable::StopFeeds);
        assert_eq!(
            cluster.seed_feeds,
            [serde_json::json!({ "name": "s", "url": "ws://h/${TOKEN}" })]
        );
    }

    #[test]
    fn a_nats_sink_without_servers_needs_a_cluster() {
        let text = "[[subscribers]]\nname = \"bus\"\nfeeds = [\"*\"]\nsink = \"nats\"\n";
        assert_eq!(errors(text), ["subscribers[0] (bus).nats"]);
        let own = format!("{text}nats = [\"nats://127.0.0.1:4222\"]\n");
        assert_eq!(errors(&own), Vec::<String>::new());
    }

    #[test]
    fn host_names_become_replica_names() {
        assert_eq!(host_replica_name("web-1.example.com\n").as_deref(), Some("web-1-example-com"));
        assert_eq!(host_replica_name("  "), None);
    }
}
