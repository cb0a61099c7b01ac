//! Liveness of an open connection: heartbeat pings (protocol or application
//! level) that must be answered within a timeout, and an idle timeout for
//! feeds that must never go quiet. Either one failing closes the connection
//! and reconnects: a peer that froze mid-stream is found out.

use std::time::Duration;

use actix_rt::time::Instant;

use actix::prelude::*;
use bytes::Bytes;

use feedvisor_transport_api::{close_code, Outbound, TransportError};

use super::FeedConnection;
use crate::config::HeartbeatKind;

/// A heartbeat ping awaiting its answer.
#[derive(Debug, Clone, Copy)]
pub(super) struct PendingPing {
    /// Which ping (protocol pings carry it as their payload).
    pub id: u64,
    /// When it was sent, for the round-trip time.
    pub sent_at: Instant,
}

impl FeedConnection {
    /// Starts the heartbeat and idle timers of a connection that just opened.
    pub(super) fn start_liveness(&mut self, ctx: &mut Context<Self>) {
        let generation = self.generation;
        if let Some(heartbeat) = &self.feed.heartbeat {
            let handle = ctx.run_interval(heartbeat.interval, move |actor, ctx| {
                if actor.generation == generation {
                    actor.send_heartbeat(ctx);
                }
            });
            if let Some(link) = self.link.as_mut() {
                link.heartbeat = Some(handle);
            }
        }
        if let Some(idle) = self.feed.idle_timeout {
            self.check_idle_after(idle, ctx);
        }
    }

    /// Sends a ping unless the last one is still waiting for its answer.
    fn send_heartbeat(&mut self, ctx: &mut Context<Self>) {
        let Some(heartbeat) = self.feed.heartbeat.clone() else { return };
        if self.link.as_ref().is_none_or(|link| link.ping.is_some()) {
            return;
        }
        // An application ping is a data message: it cannot go out in the
        // middle of a message sent in pieces (a protocol ping can).
        let application = matches!(heartbeat.kind, HeartbeatKind::Application { .. });
        if application && self.pieces.is_some() {
            return;
        }
        self.pings_sent += 1;
        let id = self.pings_sent;
        let message = match &heartbeat.kind {
            HeartbeatKind::Protocol => Outbound::Ping(Bytes::copy_from_slice(&id.to_be_bytes())),
            HeartbeatKind::Application { message, .. } => {
                Outbound::text(self.credentials.fill(message.clone()))
            }
        };
        if !self.send_ping(message) {
            return;
        }
        if let Some(link) = self.link.as_mut() {
            link.ping = Some(PendingPing { id, sent_at: Instant::now() });
        }
        let generation = self.generation;
        ctx.run_later(heartbeat.timeout, move |actor, ctx| {
            let pending = actor.link.as_ref().and_then(|link| link.ping);
            if actor.generation == generation && pending.is_some_and(|ping| ping.id == id) {
                let error = TransportError::Timeout {
                    what: "heartbeat (ping unanswered)".to_owned(),
                    after: heartbeat.timeout,
                };
                tracing::warn!(feed = %actor.name, %error, "peer stopped answering");
                actor.close_and_reconnect(close_code::GOING_AWAY, error.to_string(), ctx);
            }
        });
    }

    /// A protocol pong: the answer to our pending ping when it carries its id.
    pub(super) fn pong_received(&mut self, payload: &[u8]) {
        let Some(link) = self.link.as_mut() else { return };
        let Some(ping) = link.ping else { return };
        if payload == ping.id.to_be_bytes() {
            link.ping = None;
            self.metrics.ping_rtt.record(ping.sent_at.elapsed().as_secs_f64());
        }
    }

    /// True when `payload` answers an application-level heartbeat; such
    /// messages are taken here and not delivered.
    pub(super) fn is_heartbeat_reply(&mut self, payload: &[u8]) -> bool {
        let Some(heartbeat) = &self.feed.heartbeat else { return false };
        let HeartbeatKind::Application { reply, .. } = &heartbeat.kind else { return false };
        if !reply.matches(payload) {
            return false;
        }
        if let Some(ping) = self.link.as_mut().and_then(|link| link.ping.take()) {
            self.metrics.ping_rtt.record(ping.sent_at.elapsed().as_secs_f64());
        }
        true
    }

    /// Checks for silence when `delay` has passed; checks again for the rest if something came.
    fn check_idle_after(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        let generation = self.generation;
        ctx.run_later(delay, move |actor, ctx| {
            if actor.generation != generation {
                return;
            }
            let (Some(link), Some(idle)) = (&actor.link, actor.feed.idle_timeout) else { return };
            let quiet = link.last_inbound.elapsed();
            if quiet < idle {
                actor.check_idle_after(idle - quiet, ctx);
                return;
            }
            let error =
                TransportError::Timeout { what: "idle (nothing received)".to_owned(), after: idle };
            tracing::warn!(feed = %actor.name, %error, "feed went quiet");
            actor.close_and_reconnect(close_code::GOING_AWAY, error.to_string(), ctx);
        });
    }
}
