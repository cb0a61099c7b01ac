//! Placeholder while the webhook sink is written.

use actix::prelude::*;

use crate::delivery::Deliver;

/// The webhook sink.
pub struct WebhookSink;

impl WebhookSink {
    /// A sink named `name`.
    pub fn new(_name: &str, _sink: crate::config::SinkConfig) -> Self {
        WebhookSink
    }
}

impl Actor for WebhookSink {
    type Context = Context<Self>;
}

impl Handler<Deliver> for WebhookSink {
    type Result = ();

    fn handle(&mut self, _: Deliver, _: &mut Context<Self>) {}
}
