//! [`Secret`]: a value (a token, a header value) that no log line, error,
//! status answer or metric label may show.
//!
//! A leaf module: the config and the sinks' own config types both hold
//! secrets, and neither has to import the other for it.

use std::fmt;

use serde::Serialize;

/// What is shown in place of a secret.
const REDACTED: &str = "***";

/// A secret value: shown as `***` by `Debug` and `Serialize`, read with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}
