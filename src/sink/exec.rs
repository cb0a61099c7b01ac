//! Placeholder while the exec sink is written.

use actix::prelude::*;

use crate::delivery::Deliver;

/// The exec sink.
pub struct ExecSink;

impl ExecSink {
    /// A sink named `name`.
    pub fn new(_name: &str, _command: Vec<String>) -> Self {
        ExecSink
    }
}

impl Actor for ExecSink {
    type Context = Context<Self>;
}

impl Handler<Deliver> for ExecSink {
    type Result = ();

    fn handle(&mut self, _: Deliver, _: &mut Context<Self>) {}
}
