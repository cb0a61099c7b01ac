//! `${VAR}` substitution from the environment, for secrets kept out of the
//! config file (API keys in headers, tokens in URLs and `on_open` messages).
//!
//! `${file:/run/secrets/key}` is replaced by that file's contents (one
//! trailing newline dropped), read again at every load and reload, so a
//! rotated secret file takes effect at the next reload.
//!
//! `$${` writes a literal `${`. Any other `$` is left alone. Expansion is one
//! pass: a value taken from the environment is never expanded again. Errors
//! name the variable, never its value.

use std::fmt;

/// Why one `${VAR}` reference could not be expanded; never carries a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExpandError {
    /// The variable is not set (or is not valid Unicode).
    Missing(String),
    /// A `${` without its closing `}`.
    Unterminated,
    /// What sits between `${` and `}` is not a variable name.
    BadName(String),
    /// A `${file:PATH}` that cannot be read: the path and the reason, never contents.
    File {
        /// The path as written.
        path: String,
        /// Why it cannot be read.
        reason: String,
    },
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(name) => write!(f, "environment variable {name} is not set"),
            Self::Unterminated => f.write_str(
                r#"unterminated "${": close it with "}" or write "$${" for a literal "${""#,
            ),
            Self::File { path, reason } => write!(
                f,
                "cannot read the secret file {path}: {reason}; check that it exists and is readable"
            ),
            Self::BadName(name) => write!(
                f,
                "invalid environment variable name {name:?}: \
                 use letters, digits and '_', not starting with a digit"
            ),
        }
    }
}

/// Expands every `${VAR}` in `text` with `env`, reporting every bad reference.
pub(crate) fn expand(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<ExpandError>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let tail = &rest[dollar..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let Some(close) = after.find('}') else {
                errors.push(ExpandError::Unterminated);
                rest = "";
                break;
            };
            let name = &after[..close];
            if let Some(path) = name.strip_prefix("file:") {
                match read_secret_file(path) {
                    Ok(value) => out.push_str(&value),
                    Err(error) => errors.push(error),
                }
            } else if !is_variable_name(name) {
                errors.push(ExpandError::BadName(name.to_owned()));
            } else if let Some(value) = env(name) {
                out.push_str(&value);
            } else {
                let missing = ExpandError::Missing(name.to_owned());
                if !errors.contains(&missing) {
                    errors.push(missing);
                }
            }
            rest = &after[close + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// A `${file:PATH}`'s value: the file's text, one trailing newline dropped.
fn read_secret_file(path: &str) -> Result<String, ExpandError> {
    let fail = |reason: String| ExpandError::File { path: path.to_owned(), reason };
    if path.is_empty() {
        return Err(fail("no path after \"file:\"".to_owned()));
    }
    let text = std::fs::read_to_string(path).map_err(|error| fail(error.to_string()))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Ok(text.strip_suffix('\r').unwrap_or(text).to_owned())
}

/// Whether `text` holds a `${VAR}` reference (so its expansion may hold a secret).
pub(crate) fn has_reference(text: &str) -> bool {
    text.replace("$${", "").contains("${")
}

/// Refuses a feed given over the API (`POST`/`PUT /feeds`, or posted
/// there and stored in the cluster) in which any string holds a `${VAR}`
/// or `${file:PATH}` reference: expanding it would hand this process's
/// environment or files to whoever posts, in a URL or header sent to a
/// server of their choosing. Each reference is named by its field's path.
pub(crate) fn refuse_references(feed: &serde_json::Value) -> Result<(), super::ConfigError> {
    fn walk(value: &serde_json::Value, path: String, errors: &mut Vec<super::FieldError>) {
        match value {
            serde_json::Value::String(text) if has_reference(text) => {
                errors.push(super::FieldError::new(
                    path,
                    "`${...}` is not expanded in a feed added over the API: write the value                      itself, or put the feed in the config file (`$${` writes a literal `${`)",
                ));
            }
            serde_json::Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    walk(item, format!("{path}[{index}]"), errors);
                }
            }
            serde_json::Value::Object(fields) => {
                for (name, field) in fields {
                    let path =
                        if path.is_empty() { name.clone() } else { format!("{path}.{name}") };
                    walk(field, path, errors);
                }
            }
            _ => {}
        }
    }
    let mut errors = Vec::new();
    walk(feed, String::new(), &mut errors);
    if errors.is_empty() {
        return Ok(());
    }
    Err(super::ConfigError { origin: "feed".to_owned(), errors })
}

/// Whether `text` must be shown as written to read back as the same value:
/// it holds a `${VAR}` reference, or a `$${` escape, whose expansion (`${`)
/// would read as the start of a reference.
pub(crate) fn shown_as_written(text: &str) -> bool {
    text.contains("${")
}

/// A POSIX-style name: letters, digits and `_`, not starting with a digit.
fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("s3cret".to_owned()),
            "NESTED" => Some("${KEY}".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn a_feed_given_over_the_api_may_not_reference_the_environment_or_files() {
        let feed = serde_json::json!({
            "name": "posted",
            "url": "ws://example.com/?key=${API_KEY}",
            "headers": { "X-Leak": "${file:/etc/hostname}", "X-Plain": "literal $${x} and $5" },
            "on_open": ["fine", "${HOME}"],
        });
        let error = refuse_references(&feed).expect_err("references refused");
        let paths: Vec<&str> = error.errors.iter().map(|error| error.path.as_str()).collect();
        assert_eq!(paths, ["headers.X-Leak", "on_open[1]", "url"]);
        assert!(error.errors[0].message.contains("not expanded in a feed added over the API"));
        let plain = serde_json::json!({ "name": "posted", "url": "ws://example.com/$5", "on_open": ["$${x}"] });
        assert!(refuse_references(&plain).is_ok());
    }

    #[test]
    fn expands_references_and_keeps_other_dollars() {
        assert_eq!(expand("a ${KEY} b", &env), Ok("a s3cret b".to_owned()));
        assert_eq!(expand("$5 and $KEY and $", &env), Ok("$5 and $KEY and $".to_owned()));
        assert_eq!(expand("${KEY}${KEY}", &env), Ok("s3crets3cret".to_owned()));
    }

    #[test]
    fn double_dollar_escapes_a_literal_reference() {
        assert_eq!(expand("$${KEY}", &env), Ok("${KEY}".to_owned()));
        assert!(!has_reference("$${KEY}"));
        assert!(has_reference("x${KEY}"));
        assert!(shown_as_written("$${KEY}"), "its expansion would read as a reference");
        assert!(!shown_as_written("$KEY costs $5"));
    }

    #[test]
    fn file_references_read_the_file_each_time_without_its_last_newline() {
        let path = std::env::temp_dir().join(format!("feedvisor-env-{}", std::process::id()));
        std::fs::write(&path, "first\n").expect("write the secret file");
        let text = format!("Bearer ${{file:{}}}", path.display());
        assert_eq!(expand(&text, &env), Ok("Bearer first".to_owned()));
        std::fs::write(&path, "second").expect("rotate the secret file");
        assert_eq!(expand(&text, &env), Ok("Bearer second".to_owned()));
        assert!(has_reference(&text));
        std::fs::remove_file(&path).expect("remove the secret file");
        let errors = expand(&text, &env).expect_err("gone");
        let shown = errors[0].to_string();
        assert!(shown.starts_with("cannot read the secret file /") && !shown.contains("second"));
    }

    #[test]
    fn values_are_not_expanded_twice() {
        assert_eq!(expand("${NESTED}", &env), Ok("${KEY}".to_owned()));
    }

    #[test]
    fn reports_every_bad_reference_without_values() {
        let errors = expand("${A} ${1X} ${A} ${B", &env).expect_err("bad references");
        assert_eq!(
            errors,
            vec![
                ExpandError::Missing("A".to_owned()),
                ExpandError::BadName("1X".to_owned()),
                ExpandError::Unterminated,
            ]
        );
        assert_eq!(errors[0].to_string(), "environment variable A is not set");
    }
}
