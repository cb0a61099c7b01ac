//! URLs as errors and logs may show them.

use url::Url;

/// `url` without the parts that may hold secrets: credentials, query and
/// fragment (API keys and tokens often travel in the query).
///
/// For every message a plugin writes about a feed's URL (errors, logs); the
/// URL sent on the wire keeps its query.
pub fn redacted_url(url: &Url) -> String {
    let mut shown = url.clone();
    // Only cannot-be-a-base URLs refuse these, and they have no credentials to hide.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(text: &str) -> String {
        redacted_url(&Url::parse(text).expect("a valid URL"))
    }

    #[test]
    fn credentials_query_and_fragment_are_left_out() {
        assert_eq!(
            redacted("wss://user:hunter2@example.com:8443/feed?token=s3cret#part"),
            "wss://example.com:8443/feed"
        );
        assert_eq!(redacted("tcp://name@10.0.0.1:9000"), "tcp://10.0.0.1:9000");
    }

    #[test]
    fn a_url_without_secrets_is_shown_as_it_is() {
        assert_eq!(redacted("ws://[::1]:9000/a/b"), "ws://[::1]:9000/a/b");
        assert_eq!(redacted("memory://feed"), "memory://feed");
    }
}
