//! The pure step from raw config to resolved config: every field is checked,
//! defaults applied and `${VAR}` expanded, and every error is collected with
//! its path (`feeds[1] (weather).url`) instead of stopping at the first.
//!
//! Pure: the environment, the file system and the transports (which judge
//! the URL and options of the feeds they serve) are reached only through the
//! [`Context`] the caller passes in.

use std::collections::HashMap;
use std::net::SocketAddr;

use feedvisor_transport_api::{DeliveryMode, FeedOptions, Framing, OptionProblem, TlsOptions};

use super::admin;
use super::checks::{check_name, check_pointer, is_token, label, parse_url};
use super::compression;
use super::credentials;
use super::env::shown_as_written;
use super::limits;
use super::metrics;
use super::network;
use super::raw::{RawConfig, RawDefaults, RawFeed, RawHttp, RawMode};
use super::scope::{Context, Scope};
use super::session::{self, Heartbeat};
use super::subscribe;
use super::subscriber;
use super::HeartbeatKind;
use super::{
    Config, FeedConfig, FeedDefaults, FieldError, HeartbeatConfig, HttpConfig, Secret, Unexpanded,
    DEFAULT_SHUTDOWN_TIMEOUT,
};
use crate::transports::TransportRegistry;

/// Largest accepted `chunk_size`: room for one chunk is made per read.
const MAX_CHUNK_SIZE: u64 = 16 << 20;

/// Largest accepted `max_message_size`: a message is buffered whole.
pub(super) const MAX_MESSAGE_SIZE_LIMIT: u64 = 1 << 30;

/// The `on_open` placeholder for the last sequence number seen, which needs `sequence`.
const LAST_SEQ: &str = "{{last_seq}}";

/// Checks and resolves a whole config.
pub(crate) fn config(raw: &RawConfig, context: &Context<'_>) -> Result<Config, Vec<FieldError>> {
    let mut errors = Vec::new();
    let http = http(&raw.http, context, &mut errors);
    let mut top = Scope { prefix: "", errors: &mut errors };
    let shutdown_timeout = top
        .duration("shutdown_timeout", raw.shutdown_timeout.as_ref(), DEFAULT_SHUTDOWN_TIMEOUT)
        .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT);
    let workers = match raw.workers {
        Some(0) => top.fail("workers", "must be at least 1 (leave it out for one per core)"),
        Some(workers) if workers > MAX_WORKERS => {
            top.fail("workers", format!("must be at most {MAX_WORKERS}"))
        }
        workers => workers,
    };
    let defaults = defaults(&raw.defaults, context, &mut errors);
    let metrics = metrics::metrics(
        raw.metrics.as_ref(),
        &mut Scope { prefix: "metrics", errors: &mut errors },
    );

    let mut feeds = Vec::with_capacity(raw.feeds.len());
    let mut feed_index: HashMap<&str, usize> = HashMap::new();
    for (index, raw_feed) in raw.feeds.iter().enumerate() {
        let prefix = label("feeds", index, raw_feed.name.as_deref());
        if let Some(name) = raw_feed.name.as_deref().filter(|name| check_name(name).is_ok()) {
            if let Some(first) = feed_index.get(name) {
                let message =
                    format!("duplicate feed name {name:?}: already used by feeds[{first}]");
                errors.push(FieldError::new(format!("{prefix}.name"), message));
            } else {
                feed_index.insert(name, index);
            }
        }
        if let Some(feed) = feed(raw_feed, &defaults, &prefix, context, &mut errors) {
            feeds.push(feed);
        }
    }

    let mut subscribers = Vec::with_capacity(raw.subscribers.len());
    let mut subscriber_index: HashMap<&str, usize> = HashMap::new();
    for (index, raw_subscriber) in raw.subscribers.iter().enumerate() {
        let prefix = label("subscribers", index, raw_subscriber.name.as_deref());
        if let Some(name) = raw_subscriber.name.as_deref().filter(|name| check_name(name).is_ok()) {
            if let Some(first) = subscriber_index.get(name) {
                let message = format!(
                    "duplicate subscriber name {name:?}: already used by subscribers[{first}]"
                );
                errors.push(FieldError::new(format!("{prefix}.name"), message));
            } else {
                subscriber_index.insert(name, index);
            }
        }
        let mut scope = Scope { prefix: &prefix, errors: &mut errors };
        if let Some(subscriber) =
            subscriber::subscriber(raw_subscriber, &feed_index, context, &mut scope)
        {
            subscribers.push(subscriber);
        }
    }

    let cluster = raw.cluster.as_ref().and_then(|raw_cluster| {
        super::cluster::cluster(raw_cluster, &raw.feeds, context, &mut errors)
    });
    super::cluster::check_subscribers(cluster.is_some(), &subscribers, &mut errors);
    super::conflate::check_stream_feeds(&raw.subscribers, &subscribers, &feeds, &mut errors);
    let hosts = limits::hosts(&raw.hosts, &mut errors);

    if errors.is_empty() {
        Ok(Config {
            http,
            defaults,
            feeds,
            subscribers,
            shutdown_timeout,
            workers,
            metrics,
            cluster,
            hosts,
        })
    } else {
        Err(errors)
    }
}

/// The most worker threads `workers` may ask for.
const MAX_WORKERS: usize = 256;

fn http(raw: &RawHttp, context: &Context<'_>, errors: &mut Vec<FieldError>) -> HttpConfig {
    let mut config = HttpConfig::default();
    if let Some(raw_subscribe) = &raw.subscribe {
        let mut scope = Scope { prefix: "http.subscribe", errors: &mut *errors };
        config.subscribe = subscriber::endpoint(raw_subscribe, &mut scope);
    }
    if let Some(template) = &raw.token {
        let mut scope = Scope { prefix: "", errors: &mut *errors };
        match scope.expand("http.token", template, context.env) {
            Some(token) if token.trim().is_empty() => {
                scope.error("http.token", "is empty: set a token or leave the field out");
            }
            Some(token) => config.token = Some(Secret::new(token)),
            None => {}
        }
    }
    if let Some(text) = &raw.listen {
        match text.parse::<SocketAddr>() {
            Ok(listen) => config.listen = listen,
            Err(_) => errors.push(FieldError::new(
                "http.listen",
                format!("invalid address {text:?}: use IP:PORT, such as \"127.0.0.1:9900\""),
            )),
        }
    }
    {
        let mut scope = Scope { prefix: "http", errors: &mut *errors };
        config.tls = raw.tls.as_ref().and_then(|tls| admin::tls(tls, context, &mut scope));
        (config.max_connections, config.backlog) =
            admin::limits(raw, config.subscribe.max_clients, &mut scope);
    }
    config.allow_public = raw.allow_public.unwrap_or(false);
    // Found by trying: 0.0.0.0 without a token started with an info line,
    // open to every machine that can reach the port.
    if !config.listen.ip().is_loopback() && raw.token.is_none() && !config.allow_public {
        errors.push(FieldError::new(
            "http.listen",
            format!(
                "{} is reachable from other machines and [http].token is not set: \
                 set a token, or allow_public = true to serve without one",
                config.listen
            ),
        ));
    }
    config
}

/// `[defaults]` over the built-in defaults; a field with an error keeps its
/// built-in value, so that feeds are still checked against something sane.
fn defaults(
    raw: &RawDefaults,
    context: &Context<'_>,
    errors: &mut Vec<FieldError>,
) -> FeedDefaults {
    let builtin = FeedDefaults::default();
    let mut scope = Scope { prefix: "defaults", errors };
    let max_message_size = scope
        .size(
            "max_message_size",
            raw.max_message_size.as_ref(),
            builtin.max_message_size,
            MAX_MESSAGE_SIZE_LIMIT,
        )
        .unwrap_or(builtin.max_message_size);
    let chunk_size = scope
        .size("chunk_size", raw.chunk_size.as_ref(), builtin.chunk_size, MAX_CHUNK_SIZE)
        .unwrap_or(builtin.chunk_size);
    let handshake_timeout = scope
        .duration("handshake_timeout", raw.handshake_timeout.as_ref(), builtin.handshake_timeout)
        .unwrap_or(builtin.handshake_timeout);
    let reconnect = session::reconnect(raw.reconnect.as_ref(), &builtin.reconnect, &mut scope)
        .unwrap_or(builtin.reconnect);
    let builtin_heartbeat =
        Heartbeat { config: builtin.heartbeat.clone(), message_as_written: None };
    let heartbeat =
        session::heartbeat(raw.heartbeat.as_ref(), &builtin_heartbeat, context.env, &mut scope)
            .unwrap_or(builtin_heartbeat);
    let idle_timeout =
        session::idle_timeout(raw.idle_timeout.as_ref(), builtin.idle_timeout, &mut scope)
            .unwrap_or(builtin.idle_timeout);
    let outbound_queue =
        session::outbound_queue(raw.outbound_queue.as_ref(), &builtin.outbound_queue, &mut scope)
            .unwrap_or(builtin.outbound_queue);
    let tls = network::tls(raw.tls.as_ref(), &builtin.tls, context, &mut scope);
    let proxy = network::proxy(raw.proxy.as_deref(), &builtin.proxy, context, &mut scope);
    let credentials = credentials::credentials(raw.credentials.as_ref(), None, context, &mut scope);
    let outbound_rate = limits::outbound_rate(raw.outbound_rate.as_ref(), None, &mut scope)
        .unwrap_or(builtin.outbound_rate);
    FeedDefaults {
        credentials,
        tls,
        proxy,
        stream: raw.mode.map_or(builtin.stream, |mode| mode == RawMode::Stream),
        max_message_size,
        chunk_size,
        handshake_timeout,
        reconnect,
        heartbeat: heartbeat.config,
        idle_timeout,
        outbound_queue,
        required: raw.required.unwrap_or(builtin.required),
        unexpanded_heartbeat_message: heartbeat.message_as_written,
        outbound_rate,
    }
}

/// Checks and resolves one feed; errors go to `errors` under `prefix`.
pub(crate) fn feed(
    raw: &RawFeed,
    defaults: &FeedDefaults,
    prefix: &str,
    context: &Context<'_>,
    errors: &mut Vec<FieldError>,
) -> Option<FeedConfig> {
    let before = errors.len();
    let mut scope = Scope { prefix, errors };

    let name = match raw.name.as_deref().map(check_name) {
        None => scope.fail("name", "required"),
        Some(Err(message)) => scope.fail("name", message),
        Some(Ok(())) => raw.name.clone(),
    };
    let zero_gap = super::legs::zero_gap(raw, stream_mode(raw, defaults), context, &mut scope);
    let first_leg = raw.urls.as_ref().and_then(|urls| urls.first()).filter(|_| raw.url.is_none());
    let url = match raw.url.as_deref().or(first_leg.map(String::as_str)) {
        None if raw.urls.is_some() => None,
        None => {
            scope.fail("url", "required: the upstream address, such as \"wss://example.com/feed\"")
        }
        Some(text) => scope.expand("url", text, context.env).and_then(|expanded| {
            parse_url(&expanded).map_err(|message| scope.error("url", message)).ok()
        }),
    };
    let transport = url.as_ref().and_then(|url| {
        let served = context.transports.get(url.scheme());
        served.map_err(|unknown| scope.error("url", unknown.to_string())).ok()
    });
    let stream = raw.mode.map_or(defaults.stream, |mode| mode == RawMode::Stream);
    if let Some(Err(message)) = raw.topic.as_deref().map(check_pointer) {
        scope.error("topic", message);
    }

    let headers = scope.headers("headers", &raw.headers, context.env);

    for (index, protocol) in raw.subprotocols.iter().enumerate() {
        let field = format!("subprotocols[{index}]");
        if protocol.is_empty() {
            scope.error(&field, "must not be empty");
        } else if !is_token(protocol) {
            scope.error(
                &field,
                format!("{protocol:?} is not a valid subprotocol name (an HTTP token)"),
            );
        } else if raw.subprotocols[..index].contains(protocol) {
            scope.error(&field, format!("duplicate subprotocol {protocol:?}"));
        }
    }

    if let Some(Err(message)) = raw.sequence.as_deref().map(check_pointer) {
        scope.error("sequence", message);
    }
    let mut on_open = Vec::with_capacity(raw.on_open.len());
    for (index, template) in raw.on_open.iter().enumerate() {
        let field = format!("on_open[{index}]");
        if template.contains(LAST_SEQ) && raw.sequence.is_none() {
            let message = format!(
                "{LAST_SEQ} needs `sequence`: the JSON pointer to each message's sequence number"
            );
            scope.error(&field, message);
        }
        if let Some(message) = scope.expand(&field, template, context.env) {
            on_open.push(message);
        }
    }

    let limit = MAX_MESSAGE_SIZE_LIMIT;
    let max_message_size = scope.size(
        "max_message_size",
        raw.max_message_size.as_ref(),
        defaults.max_message_size,
        limit,
    );
    if raw.chunk_size.is_some() && !stream {
        scope.error("chunk_size", "only used when mode = \"stream\"");
    }
    let chunk_size =
        scope.size("chunk_size", raw.chunk_size.as_ref(), defaults.chunk_size, MAX_CHUNK_SIZE);
    let mode = if stream {
        let chunk_size = chunk_size.unwrap_or(defaults.chunk_size);
        DeliveryMode::Stream { chunk_size: usize::try_from(chunk_size).unwrap_or(usize::MAX) }
    } else {
        DeliveryMode::Message
    };
    let framing: Option<Framing> = raw.framing.map(Framing::from);
    let handshake_timeout = scope.duration(
        "handshake_timeout",
        raw.handshake_timeout.as_ref(),
        defaults.handshake_timeout,
    );

    // Which schemes use TLS and a proxy is the transport's rule; paths are ours.
    let mut tls = network::tls(raw.tls.as_ref(), &defaults.tls, context, &mut scope);
    let proxy = network::proxy(raw.proxy.as_deref(), &defaults.proxy, context, &mut scope);

    let reconnect = session::reconnect(raw.reconnect.as_ref(), &defaults.reconnect, &mut scope);
    let inherited_heartbeat = Heartbeat {
        config: defaults.heartbeat.clone(),
        message_as_written: defaults.unexpanded_heartbeat_message.clone(),
    };
    let mut heartbeat =
        session::heartbeat(raw.heartbeat.as_ref(), &inherited_heartbeat, context.env, &mut scope);
    let idle_timeout =
        session::idle_timeout(raw.idle_timeout.as_ref(), defaults.idle_timeout, &mut scope);
    let outbound_queue =
        session::outbound_queue(raw.outbound_queue.as_ref(), &defaults.outbound_queue, &mut scope);
    let credentials = credentials::credentials(
        raw.credentials.as_ref(),
        defaults.credentials.as_ref(),
        context,
        &mut scope,
    );
    let heartbeat_config = heartbeat.as_ref().and_then(|heartbeat| heartbeat.config.as_ref());
    credentials::check_messages(raw, credentials.as_ref(), heartbeat_config, &mut scope);
    let timestamp = metrics::timestamp(raw.timestamp.as_ref(), &mut scope);
    let stale_after = metrics::stale_after(raw.stale_after.as_ref(), &mut scope);
    let outbound_rate = limits::outbound_rate(raw.outbound_rate.as_ref(), None, &mut scope);

    let compression = compression::compression(raw, &mut scope);
    let decode = compression::decode(raw, stream, &mut scope);
    let subscribe = subscribe::subscribe(raw, stream, &mut scope);
    let mut framing_used = false;
    let mut inherited_tls_unused = false;
    if let (Some(url), Some(transport)) = (&url, &transport) {
        let header_names: Vec<&str> = raw.headers.keys().map(String::as_str).collect();
        let options = FeedOptions {
            url,
            header_names: &header_names,
            subprotocols: &raw.subprotocols,
            mode,
            framing,
            tls: &tls,
            protocol_pings: heartbeat
                .as_ref()
                .is_some_and(|heartbeat| asks_protocol_pings(heartbeat.config.as_ref())),
            compression,
        };
        // A heartbeat the feed did not ask for itself (the built-in default or
        // [defaults]) that its transport cannot do, such as protocol pings on
        // TCP, is off for this feed rather than an error: such feeds watch
        // liveness with an application ping or idle_timeout.
        let chose_heartbeat = raw.heartbeat.as_ref().is_some_and(|h| h.interval.is_some());
        for problem in transport.check(&options) {
            if is_heartbeat(&problem) && !chose_heartbeat {
                if let Some(heartbeat) = heartbeat.as_mut() {
                    heartbeat.config = None;
                }
            } else if is_unused_tls(&problem) && raw.tls.is_none() {
                // [defaults.tls] on a feed whose scheme has no TLS: not this feed's.
                inherited_tls_unused = true;
            } else {
                scope.error(&problem.field, problem.message);
            }
        }
        framing_used = uses_framing(transport.check(&FeedOptions {
            framing: Some(framing.unwrap_or_default()),
            protocol_pings: false,
            ..options
        }));
    }

    if inherited_tls_unused {
        tls = TlsOptions::default();
    }
    if errors.len() != before {
        return None;
    }
    let heartbeat = heartbeat?;
    let unexpanded = Unexpanded {
        url: raw.url.clone().or(first_leg.cloned()).filter(|url| shown_as_written(url)),
        on_open: if raw.on_open.iter().any(|message| shown_as_written(message)) {
            raw.on_open.clone()
        } else {
            Vec::new()
        },
        heartbeat_message: heartbeat.message_as_written,
    };
    Some(FeedConfig {
        name: name?,
        url: url?,
        mode,
        topic: raw.topic.clone(),
        headers,
        subprotocols: raw.subprotocols.clone(),
        framing: framing.unwrap_or_default(),
        framing_used,
        on_open,
        max_message_size: max_message_size?,
        handshake_timeout: handshake_timeout?,
        tls,
        proxy,
        reconnect: reconnect?,
        heartbeat: heartbeat.config,
        idle_timeout: idle_timeout?,
        outbound_queue: outbound_queue?,
        sequence: raw.sequence.clone(),
        required: raw.required.unwrap_or(defaults.required),
        timestamp: timestamp?,
        stale_after: stale_after?,
        compression,
        decode,
        subscribe: subscribe?,
        outbound_rate: outbound_rate?,
        unexpanded,
        credentials,
        redundancy: zero_gap.as_ref().and_then(|zero_gap| zero_gap.redundancy.clone()),
        rotate_every: zero_gap?.rotate_every,
    })
}

/// Whether a feed is in stream mode, its own `mode` or `[defaults]`'.
fn stream_mode(raw: &RawFeed, defaults: &FeedDefaults) -> bool {
    raw.mode.map_or(defaults.stream, |mode| mode == RawMode::Stream)
}

/// A transport's refusal of a TLS setting on a scheme without TLS.
fn is_unused_tls(problem: &OptionProblem) -> bool {
    problem.field.starts_with("tls.") && problem.message.starts_with("only used by")
}

/// Whether a heartbeat is protocol pings (rather than an application message).
fn asks_protocol_pings(heartbeat: Option<&HeartbeatConfig>) -> bool {
    heartbeat.is_some_and(|heartbeat| heartbeat.kind == HeartbeatKind::Protocol)
}

/// A transport's problem with the heartbeat (`heartbeat`, `heartbeat.interval`, ...).
fn is_heartbeat(problem: &OptionProblem) -> bool {
    problem.field == "heartbeat" || problem.field.starts_with("heartbeat.")
}

/// Whether a transport that found `problems` with a feed that sets a framing
/// has a use for it: it refuses a framing it does not use.
fn uses_framing(problems: Vec<OptionProblem>) -> bool {
    !problems.iter().any(|problem| problem.field == "framing")
}

/// Checks feeds that were resolved already (with whatever registry) against
/// `transports`, the registry they will run with: each scheme must be served
/// and each feed must pass its transport's rules.
pub(crate) fn resolved_feeds(
    feeds: &[FeedConfig],
    transports: &TransportRegistry,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (index, feed) in feeds.iter().enumerate() {
        let prefix = label("feeds", index, Some(&feed.name));
        let mut scope = Scope { prefix: &prefix, errors: &mut errors };
        let header_names: Vec<&str> = feed.headers.iter().map(|(name, _)| name.as_str()).collect();
        let options = FeedOptions {
            url: &feed.url,
            header_names: &header_names,
            subprotocols: &feed.subprotocols,
            mode: feed.mode,
            framing: feed.written_framing(),
            tls: &feed.tls,
            protocol_pings: asks_protocol_pings(feed.heartbeat.as_ref()),
            compression: feed.compression,
        };
        match transports.check(&options) {
            Ok(problems) => {
                for problem in problems {
                    scope.error(&problem.field, problem.message);
                }
            }
            Err(unknown) => scope.error("url", unknown.to_string()),
        }
    }
    errors
}
