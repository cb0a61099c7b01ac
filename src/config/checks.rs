//! Checks of single values, shared by the validation steps: names, JSON
//! pointers, URLs, header names, sizes and durations. Each returns the
//! problem in words of ours, for the caller to put at its path; [`label`]
//! names an entry in those paths, for serde's errors and ours alike.

use std::time::Duration;

use url::Url;

/// Parses a size such as `"64KiB"`, `"1MiB"`, `"1.5 MB"` (decimal) or
/// `"1024"` (bytes) into bytes.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let valid = text.starts_with(|c: char| c.is_ascii_digit());
    match text.parse::<bytesize::ByteSize>() {
        Ok(size) if valid => Ok(size.as_u64()),
        _ => Err(format!(
            "invalid size {text:?}: \
             use a number of bytes with an optional unit, such as \"64KiB\" or \"1MiB\""
        )),
    }
}

/// Parses a duration with a unit, such as `"10s"`, `"500ms"` or `"1m 30s"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|_| {
        format!("invalid duration {text:?}: use a number with a unit, such as \"10s\" or \"500ms\"")
    })
}

/// Parses a feed URL. Which schemes are served and what their URLs need is
/// the business of the transports (see `Transport::check`); this checks only
/// what holds for every feed. Messages never quote the URL, which may hold a token.
pub(super) fn parse_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|error| format!("invalid URL: {error}"))?;
    if url.fragment().is_some() {
        return Err("a feed URL cannot have a #fragment".to_owned());
    }
    // Never sent by any transport, so such a feed would fail every connect;
    // and credentials in a URL end up wherever URLs are shown.
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL (user@ or user:password@) are not sent: \
                    put them in a header, such as headers.Authorization = \"Bearer ${TOKEN}\""
            .to_owned());
    }
    Ok(url)
}

/// The longest feed or subscriber name, in bytes: names are metric labels,
/// repeated on every series of a feed.
pub(crate) const MAX_NAME_LENGTH: usize = 128;

/// Feed and subscriber names become metric labels: `[A-Za-z0-9_.-]+`, at
/// most [`MAX_NAME_LENGTH`] bytes.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.len() > MAX_NAME_LENGTH {
        return Err(format!(
            "is {} bytes long: names are metric labels, at most {MAX_NAME_LENGTH} bytes",
            name.len()
        ));
    }
    match name.chars().find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        Some(bad) => {
            Err(format!("{name:?} contains {bad:?}: use only letters, digits, '_', '.' and '-'"))
        }
        None => Ok(()),
    }
}

/// `feeds[1] (weather)`: the entry's index, and its name when it is valid.
pub(super) fn label(section: &str, index: usize, name: Option<&str>) -> String {
    match name.filter(|name| check_name(name).is_ok()) {
        Some(name) => format!("{section}[{index}] ({name})"),
        None => format!("{section}[{index}]"),
    }
}

/// A JSON pointer (RFC 6901): empty, or `/`-separated with `~0` and `~1` escapes.
pub(super) fn check_pointer(pointer: &str) -> Result<(), String> {
    crate::pointer::check_syntax(pointer)
}

/// A header name must be an HTTP token; which headers a transport sets
/// itself is its own rule (see `Transport::check`).
pub(super) fn check_header_name(name: &str) -> Result<(), String> {
    if is_token(name) {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid header name"))
    }
}

/// An HTTP token (RFC 9110): header names and subprotocols.
pub(super) fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte))
}

/// The candidate within two edits of `name`, for "did you mean" hints.
pub(super) fn closest<'a>(
    name: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance, counting adjacent transpositions as two edits.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}
