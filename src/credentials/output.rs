//! A provider's output: one JSON object, every field optional,
//! `{"url": "...", "headers": {...}, "values": {...}, "expires_at": "RFC 3339"}`.
//!
//! Parsed into a `serde_json::Value` first, whose syntax errors name a line
//! and column but never the text, then checked field by field; no error
//! quotes a value.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use url::Url;

use super::{Credentials, FetchError};

/// What a provider's output must satisfy beyond its shape.
pub(crate) struct Expect<'a> {
    /// `exec ./get-token.sh`, for errors.
    pub provider: &'a str,
    /// The feed's URL scheme: a URL given must keep it (the transport is chosen by it).
    pub scheme: &'a str,
    /// The values the feed's messages use: each must be given.
    pub values: &'a [String],
}

/// Parses and checks one output.
pub(crate) fn parse(output: &[u8], expect: &Expect<'_>) -> Result<Credentials, FetchError> {
    let invalid =
        |reason: String| FetchError::Invalid { provider: expect.provider.to_owned(), reason };
    let document: Value = serde_json::from_slice(output)
        .map_err(|error| invalid(format!("not JSON ({})", syntax_position(&error))))?;
    let Value::Object(fields) = document else {
        return Err(invalid("not a JSON object".to_owned()));
    };
    let mut credentials = Credentials::default();
    for (field, value) in fields {
        match field.as_str() {
            "url" => credentials.url = Some(url(value, expect).map_err(invalid)?),
            "headers" => credentials.headers = headers(value).map_err(invalid)?,
            "values" => credentials.values = values(value).map_err(invalid)?,
            "expires_at" => credentials.expires_at = Some(expires_at(value).map_err(invalid)?),
            other => {
                let shown: String = other.chars().take(40).collect();
                return Err(invalid(format!(
                    "unknown field {shown:?}: use url, headers, values and expires_at"
                )));
            }
        }
    }
    if let Some(missing) = expect.values.iter().find(|name| !credentials.values.contains_key(*name))
    {
        return Err(invalid(format!(
            "no value {missing:?}, which the feed's messages use as {{{{credentials.{missing}}}}}"
        )));
    }
    Ok(credentials)
}

/// Where a JSON syntax error is, without the text around it.
fn syntax_position(error: &serde_json::Error) -> String {
    format!("line {}, column {}", error.line(), error.column())
}

fn url(value: Value, expect: &Expect<'_>) -> Result<Url, String> {
    let Value::String(text) = value else { return Err("url is not a string".to_owned()) };
    let url = Url::parse(&text).map_err(|error| format!("url is not a URL ({error})"))?;
    if url.scheme() != expect.scheme {
        return Err(format!(
            "url has the scheme {:?}, the feed's is {:?}: a provider cannot change the transport",
            url.scheme(),
            expect.scheme
        ));
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err("url carries user:password@ or a #fragment, which are never sent".to_owned());
    }
    Ok(url)
}

fn headers(value: Value) -> Result<Vec<(String, String)>, String> {
    let Value::Object(map) = value else { return Err("headers is not an object".to_owned()) };
    let mut headers = Vec::with_capacity(map.len());
    for (name, value) in map {
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte));
        if !valid_name {
            return Err("a header name is not an HTTP token".to_owned());
        }
        let Value::String(value) = value else {
            return Err(format!("header {name:?} is not a string"));
        };
        if value.bytes().any(|byte| (byte < 0x20 && byte != b'\t') || byte == 0x7f) {
            return Err(format!("header {name:?} holds a control character such as CR or LF"));
        }
        headers.push((name, value));
    }
    Ok(headers)
}

fn values(value: Value) -> Result<BTreeMap<String, String>, String> {
    let Value::Object(map) = value else { return Err("values is not an object".to_owned()) };
    let mut values = BTreeMap::new();
    for (name, value) in map {
        let text = match value {
            Value::String(text) => text,
            Value::Number(number) => number.to_string(),
            Value::Bool(flag) => flag.to_string(),
            _ => return Err(format!("value {name:?} is not a string, number or boolean")),
        };
        values.insert(name, text);
    }
    Ok(values)
}

/// RFC 3339, `Z` or a numeric offset, fractions of a second allowed.
fn expires_at(value: Value) -> Result<SystemTime, String> {
    let Value::String(text) = value else {
        return Err(
            "expires_at is not a string (RFC 3339, such as \"2026-05-01T12:00:00Z\")".to_owned()
        );
    };
    parse_rfc3339(&text).ok_or_else(|| {
        "expires_at is not an RFC 3339 time, such as \"2026-05-01T12:00:00Z\"".to_owned()
    })
}

/// An RFC 3339 time with `Z` or an offset such as `+02:00`.
pub(crate) fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    let (utc, offset) = match split_offset(text) {
        Some((base, offset)) => (format!("{base}Z"), offset),
        None => (text.to_owned(), 0),
    };
    let at = humantime::parse_rfc3339(&utc).ok()?;
    let shift = Duration::from_secs(offset.unsigned_abs());
    // 12:00+02:00 is 10:00Z: a positive offset is subtracted.
    if offset >= 0 {
        at.checked_sub(shift)
    } else {
        at.checked_add(shift)
    }
}

/// `2026-05-01T12:00:00+02:00` as `2026-05-01T12:00:00` and +7200 seconds.
fn split_offset(text: &str) -> Option<(&str, i64)> {
    let at = text.len().checked_sub(6)?;
    let (base, offset) = (text.get(..at)?, text.get(at..)?.as_bytes());
    let sign = match offset.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digit = |index: usize| {
        offset.get(index).filter(|byte| byte.is_ascii_digit()).map(|byte| i64::from(byte - b'0'))
    };
    if offset.get(3) != Some(&b':') {
        return None;
    }
    let hours = digit(1)? * 10 + digit(2)?;
    let minutes = digit(4)? * 10 + digit(5)?;
    Some((base, sign * (hours * 3600 + minutes * 60)))
}
