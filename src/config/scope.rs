//! What the validation steps share: the [`Context`] they may consult
//! outside the raw config, and the [`Scope`] of one feed or subscriber that
//! collects its errors under their path and reads its sizes, durations and
//! `${VAR}`s. Validation (`validate.rs`) and the steps it calls
//! (`session.rs`, `subscriber.rs`) all import it, so imports run one way.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::checks::{check_header_name, is_token, parse_duration, parse_size};
use super::env::{expand, has_reference};
use super::raw::{RawDuration, RawSize};
use super::{format_size, FieldError};
use crate::transports::TransportRegistry;

/// What validation may consult outside the raw config.
pub(crate) struct Context<'a> {
    /// Directory that relative paths (`tls.ca_file`) are resolved against.
    pub base_dir: &'a Path,
    /// Looks up `${VAR}` references.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Whether a referenced file exists.
    pub file_exists: &'a dyn Fn(&Path) -> bool,
    /// The transports feeds may use: a feed's scheme must be served, and its
    /// transport judges the feed's URL and options.
    pub transports: &'a TransportRegistry,
}

/// Errors of one feed or subscriber, with the path prefix they are under.
pub(super) struct Scope<'a> {
    /// `feeds[1] (weather)`, or empty for a feed given on its own.
    pub prefix: &'a str,
    /// Where errors are collected.
    pub errors: &'a mut Vec<FieldError>,
}

impl Scope<'_> {
    pub(super) fn error(&mut self, field: &str, message: impl Into<String>) {
        let path = match (self.prefix.is_empty(), field.is_empty()) {
            (true, _) => field.to_owned(),
            (false, true) => self.prefix.to_owned(),
            (false, false) => format!("{}.{field}", self.prefix),
        };
        self.errors.push(FieldError::new(path, message));
    }

    /// Expands `${VAR}`s in `text`, reporting every missing variable.
    pub(super) fn expand(
        &mut self,
        field: &str,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<String> {
        match expand(text, env) {
            Ok(expanded) => Some(expanded),
            Err(problems) => {
                for problem in problems {
                    self.error(field, problem.to_string());
                }
                None
            }
        }
    }

    /// A size that must be above 0 and at most `limit`; `default` when absent.
    pub(super) fn size(
        &mut self,
        field: &str,
        raw: Option<&RawSize>,
        default: u64,
        limit: u64,
    ) -> Option<u64> {
        let bytes = match raw {
            None => return Some(default),
            Some(RawSize::Bytes(bytes)) => *bytes,
            Some(RawSize::Text(text)) => match parse_size(text) {
                Ok(bytes) => bytes,
                Err(message) => return self.fail(field, message),
            },
        };
        if bytes == 0 {
            return self.fail(field, "must be greater than 0");
        }
        if bytes > limit {
            let message =
                format!("{} is over the limit of {}", format_size(bytes), format_size(limit));
            return self.fail(field, message);
        }
        Some(bytes)
    }

    /// A duration that must be above 0; `default` when absent.
    pub(super) fn duration(
        &mut self,
        field: &str,
        raw: Option<&RawDuration>,
        default: Duration,
    ) -> Option<Duration> {
        let Some(RawDuration(text)) = raw else { return Some(default) };
        match parse_duration(text) {
            Ok(duration) if duration.is_zero() => self.fail(field, "must be greater than 0"),
            Ok(duration) => Some(duration),
            Err(message) => self.fail(field, message),
        }
    }

    /// Handshake or request headers under `section` (`headers`,
    /// `credentials.http.headers`): names checked, values `${VAR}` expanded
    /// and free of control characters; the valid ones, in order.
    pub(super) fn headers(
        &mut self,
        section: &str,
        raw: &BTreeMap<String, String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<(String, String)> {
        let mut headers = Vec::with_capacity(raw.len());
        for (header, template) in raw {
            let field = if is_token(header) {
                format!("{section}.{header}")
            } else {
                format!("{section}.{header:?}")
            };
            if let Err(message) = check_header_name(header) {
                self.error(&field, message);
            }
            let Some(value) = self.expand(&field, template, env) else { continue };
            if value.bytes().all(|byte| byte == b'\t' || (byte >= 0x20 && byte != 0x7f)) {
                headers.push((header.clone(), value));
            } else {
                let hint = if has_reference(template) {
                    " (is there a trailing newline in the variable?)"
                } else {
                    ""
                };
                let message = format!("value contains a control character such as CR or LF{hint}");
                self.error(&field, message);
            }
        }
        headers
    }

    /// Records an error and gives up on the field.
    pub(super) fn fail<T>(&mut self, field: &str, message: impl Into<String>) -> Option<T> {
        self.error(field, message);
        None
    }
}
