//! Placeholder while the file sink is written.

use actix::prelude::*;

use crate::delivery::Deliver;

/// The file sink.
pub struct FileSink;

impl FileSink {
    /// A sink named `name`.
    pub fn new(_name: &str, _path: std::path::PathBuf) -> Self {
        FileSink
    }
}

impl Actor for FileSink {
    type Context = Context<Self>;
}

impl Handler<Deliver> for FileSink {
    type Result = ();

    fn handle(&mut self, _: Deliver, _: &mut Context<Self>) {}
}
