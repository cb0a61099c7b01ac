//! The config's sinks under supervision, like the connection actors: a sink
//! actor that stops without being asked to (a write error it cannot get
//! past, a panic) is started again after a delay from
//! [`SINK_RESTART_POLICY`], subscribed to the router under the same name,
//! counted in `feedvisor_subscriber_restarts_total` and logged.
//!
//! Every sink actor holds a [`SinkWatch`] that sends [`SinkStopped`] with the
//! actor's incarnation when the actor goes. A stop that was asked for is
//! recognised here, not by the sink: a sink removed by a reload has no
//! entry any more, one replaced by a reload has a newer incarnation, and
//! once shutdown began (`accepting_changes` false) nothing is restarted.
//! What arrives for a sink while it is down waits in its inbox, or is
//! counted there as dropped (`subscriber_gone`), until the new actor
//! subscribes and takes the inbox's place.

use actix::prelude::*;
use actix_rt::time::Instant;

use super::Supervisor;
use crate::backoff::Backoff;
use crate::config::{SinkConfig, SubscriberConfig};
use crate::inbox::delivery::Deliver;
use crate::metrics;
use crate::router::{Subscribe, SubscriptionSpec, Unsubscribe};
use crate::sink::{SinkStopped, SinkWatch};

/// When a sink that stopped unasked is started again: the sinks' restart
/// policy, which exec sinks also restart their children by.
pub(super) use crate::sink::RESTART_POLICY as SINK_RESTART_POLICY;

/// Starts a sink actor: its subscriber name, its settings, the watch it must hold.
pub(super) type SinkStarter = Box<dyn Fn(&str, &SinkConfig, SinkWatch) -> Recipient<Deliver>>;

/// One config sink and its current actor.
pub(super) struct SinkEntry {
    /// The `[[subscribers]]` entry it was made from (a reload compares it).
    pub(super) config: SubscriberConfig,
    /// Which actor is current: stop notices of others are stale.
    incarnation: u64,
    /// When the current actor started, to tell a quick stop from a healthy run.
    started: Instant,
    /// The restart delays: how many quick stops in a row.
    backoff: Backoff,
}

impl Supervisor {
    /// Starts a config sink and subscribes it (replacing one of the same name,
    /// whose actor then stops, asked to).
    pub(super) fn start_sink(&mut self, subscriber: SubscriberConfig, ctx: &mut Context<Self>) {
        let incarnation = self.spawn_sink(&subscriber, ctx);
        metrics::subscriber_restarts(&subscriber.name).increment(0);
        let entry = SinkEntry {
            config: subscriber,
            incarnation,
            started: Instant::now(),
            backoff: Backoff::new(SINK_RESTART_POLICY),
        };
        self.sinks.insert(entry.config.name.clone(), entry);
    }

    /// Unsubscribes a config sink; its actor stops once the router lets go of
    /// it, and is not restarted.
    pub(super) fn stop_sink(&mut self, name: &str) {
        if self.sinks.remove(name).is_some() {
            self.router.do_send(Unsubscribe { name: name.to_owned() });
        }
    }

    /// Starts an actor for `subscriber` and subscribes it; returns its incarnation.
    fn spawn_sink(&mut self, subscriber: &SubscriberConfig, ctx: &mut Context<Self>) -> u64 {
        self.incarnations += 1;
        let incarnation = self.incarnations;
        let watch = SinkWatch::new(ctx.address().recipient(), &subscriber.name, incarnation);
        let recipient = (self.start_sink_actor)(&subscriber.name, &subscriber.sink, watch);
        let spec = SubscriptionSpec {
            name: subscriber.name.clone(),
            feeds: subscriber.feeds.clone(),
            topics: subscriber.topics.clone(),
            queue: subscriber.queue,
            overflow: subscriber.overflow.clone(),
            metric_label: None,
        };
        self.router.do_send(Subscribe { spec, recipient });
        incarnation
    }

    /// The delay is over: starts actor `incarnation + 1` of sink `name`,
    /// unless the sink was removed or replaced meanwhile, or shutdown began.
    fn restart_sink(&mut self, name: &str, incarnation: u64, ctx: &mut Context<Self>) {
        if !self.accepting_changes {
            return;
        }
        let Some(config) = self.current_sink(name, incarnation).map(|entry| entry.config.clone())
        else {
            return;
        };
        let incarnation = self.spawn_sink(&config, ctx);
        if let Some(entry) = self.sinks.get_mut(name) {
            entry.incarnation = incarnation;
            entry.started = Instant::now();
        }
        metrics::subscriber_restarts(name).increment(1);
        tracing::info!(subscriber = %name, sink = config.sink.kind().as_str(), "sink restarted");
    }

    /// The entry of sink `name` if `incarnation` is its current actor.
    fn current_sink(&mut self, name: &str, incarnation: u64) -> Option<&mut SinkEntry> {
        self.sinks.get_mut(name).filter(|entry| entry.incarnation == incarnation)
    }
}

impl Handler<SinkStopped> for Supervisor {
    type Result = ();

    /// A sink actor is gone: if it was the current one and nobody asked it to
    /// stop, schedules its restart.
    fn handle(&mut self, stopped: SinkStopped, ctx: &mut Context<Self>) {
        if !self.accepting_changes {
            return;
        }
        let SinkStopped { subscriber, incarnation } = stopped;
        let Some(entry) = self.current_sink(&subscriber, incarnation) else { return };
        let up_for = entry.started.elapsed();
        entry.backoff.connection_ended(up_for);
        let policy = *entry.backoff.policy();
        #[allow(
            clippy::disallowed_methods,
            reason = "the caller picks the random source that backoff.rs takes as an argument"
        )]
        let delay = entry.backoff.next_delay(&mut rand::rng(), None).unwrap_or(policy.max);
        tracing::error!(
            subscriber = %subscriber,
            sink = entry.config.sink.kind().as_str(),
            up_for = ?up_for,
            restart_in = ?delay,
            "sink stopped unexpectedly; restarting it"
        );
        ctx.run_later(delay, move |supervisor, ctx| {
            supervisor.restart_sink(&subscriber, incarnation, ctx);
        });
    }
}

#[cfg(test)]
mod tests;
