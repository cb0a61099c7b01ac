//! Checks of the settings that govern a feed's session once it is up or
//! down: `reconnect`, `heartbeat`, `idle_timeout` and `outbound_queue`.
//!
//! Each table is merged field by field over a base: the built-in defaults
//! for `[defaults]`, and the resolved `[defaults]` for a feed. A field
//! checks only what it sets; a rule between two fields (`max` against
//! `initial`, `timeout` against `interval`) is checked when the table sets
//! either, and is reported at the field the table set, so an inherited value
//! is never blamed where it was not written.

use std::time::Duration;

use super::checks::{check_pointer, parse_duration};
use super::env::shown_as_written;
use super::raw::{RawDuration, RawHeartbeat, RawOutboundQueue, RawReconnect};
use super::scope::Scope;
use super::{format_duration, HeartbeatConfig, HeartbeatKind, OutboundQueueConfig, ReplyMatch};
use crate::backoff::{PolicyKind, ReconnectPolicy};

/// `reconnect = { ... }` over `base`; `None` after an error.
pub(super) fn reconnect(
    raw: Option<&RawReconnect>,
    base: &ReconnectPolicy,
    scope: &mut Scope<'_>,
) -> Option<ReconnectPolicy> {
    let Some(raw) = raw else { return Some(*base) };
    let initial = scope.duration("reconnect.initial", raw.initial.as_ref(), base.initial);
    let max = scope.duration("reconnect.max", raw.max.as_ref(), base.max);
    let reset_after =
        scope.duration("reconnect.reset_after", raw.reset_after.as_ref(), base.reset_after);
    let max_retry_after = scope.duration(
        "reconnect.max_retry_after",
        raw.max_retry_after.as_ref(),
        base.max_retry_after,
    );
    let multiplier = match raw.multiplier {
        None => Some(base.multiplier),
        Some(multiplier) if multiplier.is_finite() && multiplier >= 1.0 => Some(multiplier),
        Some(multiplier) => scope.fail(
            "reconnect.multiplier",
            format!("{multiplier} is not a number of at least 1.0 (1.0 keeps delays constant)"),
        ),
    };
    let policy = ReconnectPolicy {
        kind: raw.policy.unwrap_or(base.kind),
        initial: initial?,
        max: max?,
        multiplier: multiplier?,
        jitter: raw.jitter.unwrap_or(base.jitter),
        max_attempts: raw.max_attempts.unwrap_or(base.max_attempts),
        reset_after: reset_after?,
        max_retry_after: max_retry_after?,
    };
    // A fixed policy never reaches `max`, so only an exponential one needs it above `initial`.
    let sets_bounds = raw.policy.is_some() || raw.initial.is_some() || raw.max.is_some();
    if policy.kind == PolicyKind::Exponential && policy.max < policy.initial && sets_bounds {
        return if raw.max.is_some() || raw.initial.is_none() {
            let initial = format_duration(policy.initial);
            scope.fail("reconnect.max", format!("must be at least `initial` ({initial})"))
        } else {
            let max = format_duration(policy.max);
            scope.fail("reconnect.initial", format!("must be at most `max` ({max})"))
        };
    }
    Some(policy)
}

/// A resolved heartbeat, with what is needed to show it.
#[derive(Debug, Clone, Default)]
pub(super) struct Heartbeat {
    /// `None`: off.
    pub config: Option<HeartbeatConfig>,
    /// The application message as written, when it uses `${VAR}`.
    pub message_as_written: Option<String>,
}

/// `heartbeat = { ... }` over `base`; `${VAR}` in `message` expanded with
/// `env`; `None` after an error.
pub(super) fn heartbeat(
    raw: Option<&RawHeartbeat>,
    base: &Heartbeat,
    env: &dyn Fn(&str) -> Option<String>,
    scope: &mut Scope<'_>,
) -> Option<Heartbeat> {
    let Some(raw) = raw else { return Some(base.clone()) };
    let before = scope.errors.len();
    // A heartbeat that is off keeps the built-in timeout and kind, for a feed
    // that turns it on with just an `interval`.
    let inherited = base.config.clone().unwrap_or_else(|| HeartbeatConfig {
        interval: Duration::ZERO,
        ..HeartbeatConfig::default()
    });

    let interval = match &raw.interval {
        None => Some(inherited.interval),
        Some(RawDuration(text)) => {
            parse_duration(text).map_err(|message| scope.error("heartbeat.interval", message)).ok()
        }
    };
    let timeout = scope.duration("heartbeat.timeout", raw.timeout.as_ref(), inherited.timeout);

    if raw.reply_pointer.is_some() && raw.reply.is_none() {
        scope.error("heartbeat.reply_pointer", "needs `reply`: the value expected at the pointer");
    }
    let kind = match (&raw.message, &raw.reply) {
        (None, None) => Some((inherited.kind, base.message_as_written.clone())),
        (Some(_), None) => {
            let hint = "what the upstream's answer contains, such as \"pong\"";
            scope.fail("heartbeat.message", format!("needs `reply`: {hint}"))
        }
        (None, Some(_)) => {
            let hint = "the application ping to send, such as '{\"op\":\"ping\"}'";
            scope.fail("heartbeat.reply", format!("needs `message`: {hint}"))
        }
        (Some(template), Some(value)) => {
            if template.is_empty() {
                scope.error("heartbeat.message", "must not be empty");
            }
            if value.is_empty() {
                scope.error("heartbeat.reply", "must not be empty");
            }
            let reply = match &raw.reply_pointer {
                None => ReplyMatch::Substring(value.clone()),
                Some(pointer) => {
                    if let Err(message) = check_pointer(pointer) {
                        scope.error("heartbeat.reply_pointer", message);
                    }
                    ReplyMatch::Pointer { pointer: pointer.clone(), value: value.clone() }
                }
            };
            scope.expand("heartbeat.message", template, env).map(|message| {
                let written = shown_as_written(template).then(|| template.clone());
                (HeartbeatKind::Application { message, reply }, written)
            })
        }
    };
    let (Some(interval), Some(timeout), Some((kind, message_as_written))) =
        (interval, timeout, kind)
    else {
        return None;
    };

    if interval.is_zero() {
        let unused = "unused while the heartbeat is off (`interval` is \"0s\")";
        let set = [
            ("heartbeat.timeout", raw.timeout.is_some()),
            ("heartbeat.message", raw.message.is_some()),
            ("heartbeat.reply", raw.reply.is_some()),
            ("heartbeat.reply_pointer", raw.reply_pointer.is_some()),
        ];
        for (field, _) in set.into_iter().filter(|(_, set)| *set) {
            scope.error(field, unused);
        }
    } else if timeout >= interval && (raw.interval.is_some() || raw.timeout.is_some()) {
        if raw.timeout.is_some() || raw.interval.is_none() {
            let interval = format_duration(interval);
            scope.error(
                "heartbeat.timeout",
                format!("must be shorter than `interval` ({interval})"),
            );
        } else {
            let timeout = format_duration(timeout);
            scope.error("heartbeat.interval", format!("must be longer than `timeout` ({timeout})"));
        }
    }
    if scope.errors.len() != before {
        return None;
    }
    if interval.is_zero() {
        return Some(Heartbeat::default());
    }
    Some(Heartbeat {
        config: Some(HeartbeatConfig { interval, timeout, kind }),
        message_as_written,
    })
}

/// `idle_timeout` over `base`: `"0s"` is off.
pub(super) fn idle_timeout(
    raw: Option<&RawDuration>,
    base: Option<Duration>,
    scope: &mut Scope<'_>,
) -> Option<Option<Duration>> {
    optional_duration("idle_timeout", raw, base, scope)
}

/// A duration that `"0s"` turns off, `base` when absent; `None` after an error.
pub(super) fn optional_duration(
    field: &str,
    raw: Option<&RawDuration>,
    base: Option<Duration>,
    scope: &mut Scope<'_>,
) -> Option<Option<Duration>> {
    let Some(RawDuration(text)) = raw else { return Some(base) };
    match parse_duration(text) {
        Ok(duration) => Some(Some(duration).filter(|duration| !duration.is_zero())),
        Err(message) => scope.fail(field, message),
    }
}

/// `outbound_queue = { ... }` over `base`; `None` after an error.
pub(super) fn outbound_queue(
    raw: Option<&RawOutboundQueue>,
    base: &OutboundQueueConfig,
    scope: &mut Scope<'_>,
) -> Option<OutboundQueueConfig> {
    let Some(raw) = raw else { return Some(*base) };
    let max_messages = match raw.max_messages {
        Some(0) => scope.fail("outbound_queue.max_messages", "must be greater than 0"),
        Some(count) => Some(count),
        None => Some(base.max_messages),
    };
    let max_bytes =
        scope.size("outbound_queue.max_bytes", raw.max_bytes.as_ref(), base.max_bytes, u64::MAX);
    Some(OutboundQueueConfig {
        max_messages: max_messages?,
        max_bytes: max_bytes?,
        overflow: raw.overflow.unwrap_or(base.overflow),
    })
}
