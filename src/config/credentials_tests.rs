//! The credential provider's config: inheritance from `[defaults]`,
//! refusals with their paths, placeholders, and display without secrets.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::config::{Config, ConfigError};
use crate::transports::TransportRegistry;

fn load(text: &str) -> Result<Config, ConfigError> {
    let env = |name: &str| match name {
        "TOKEN_KEY" => Some("s3cret-key".to_owned()),
        _ => None,
    };
    let origin = Path::new("/etc/feedvisor/feedvisor.toml");
    Config::from_toml_str_with_env(text, origin, &env, &TransportRegistry::with_defaults())
}

fn error_of(text: &str) -> String {
    load(text).expect_err("refused").to_string()
}

const FEED: &str = "[[feeds]]\nname = \"stocks\"\nurl = \"wss://example.com/feed\"\n";

#[test]
fn refresh_is_the_earlier_of_the_period_and_the_share_of_life() {
    let every = Refresh { every: Some(Duration::from_secs(1200)), share: 0.8 };
    assert_eq!(every.next(None), Some(Duration::from_secs(1200)));
    assert_eq!(every.next(Some(Duration::from_secs(100))), Some(Duration::from_secs(80)));
    assert_eq!(Refresh::default().next(None), None);
    assert_eq!(Refresh::default().next(Some(Duration::from_secs(5))), Some(Duration::from_secs(4)));
}

#[test]
fn an_exec_provider_resolves_its_program_against_the_config_directory() {
    let config = load(&format!("{FEED}credentials = {{ exec = [\"vault-token\", \"stocks\"] }}\n"))
        .expect("valid");
    let credentials = config.feeds[0].credentials.clone().expect("a provider");
    match credentials.source {
        CredentialSource::Exec { command, program, dir } => {
            assert_eq!(command, ["vault-token", "stocks"]);
            assert_eq!(program, Path::new("vault-token"), "a bare name is looked up in PATH");
            assert_eq!(dir, Path::new("/etc/feedvisor"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(credentials.timeout, Duration::from_secs(10));
    assert_eq!(credentials.max_output, 64 << 10);
    assert_eq!(credentials.rejected, Rejections::default());
    assert_eq!(credentials.rejected.statuses, [401, 403]);
    let error = error_of(&format!("{FEED}credentials = {{ exec = [\"./no-such-script.sh\"] }}\n"));
    assert!(
        error.contains(
            "feeds[0] (stocks).credentials.exec: no such file: /etc/feedvisor/./no-such-script.sh"
        ),
        "{error}"
    );
}

#[test]
fn a_feed_inherits_defaults_field_by_field_or_takes_none() {
    let text = format!(
        "[defaults]\ncredentials = {{ http = {{ url = \"https://auth.example.com/token\", method = \"post\" }}, \
         timeout = \"3s\", rejected = {{ close_codes = [4001] }} }}\n\n\
         {FEED}credentials = {{ refresh = \"20m\", rejected = {{ statuses = [401] }} }}\n\n\
         [[feeds]]\nname = \"plain\"\nurl = \"wss://example.com/plain\"\ncredentials = \"none\"\n\n\
         [[feeds]]\nname = \"inherits\"\nurl = \"wss://example.com/other\"\n"
    );
    let config = load(&text).expect("valid");
    let stocks = config.feeds[0].credentials.clone().expect("inherited source");
    assert_eq!(stocks.source.describe(), "http POST https://auth.example.com/token");
    assert_eq!(stocks.timeout, Duration::from_secs(3));
    assert_eq!(stocks.refresh.every, Some(Duration::from_secs(1200)));
    // The feed's rejected table overrides its fields, keeps the rest.
    assert_eq!(
        (stocks.rejected.statuses.as_slice(), stocks.rejected.close_codes.as_slice()),
        (&[401][..], &[4001][..])
    );
    assert_eq!(config.feeds[1].credentials, None);
    assert_eq!(config.feeds[2].credentials, config.defaults.credentials);
}

#[test]
fn every_mistake_is_reported_with_its_path() {
    let text = format!(
        "{FEED}credentials = {{ exec = [\"a\"], http = {{ url = \"https://x\" }} }}\n\n\
         [[feeds]]\nname = \"b\"\nurl = \"wss://example.com/b\"\n\
         credentials = {{ http = {{ url = \"ftp://x/\", method = \"DELETE\", headers = {{ \"bad name\" = \"v\" }} }}, \
         refresh = \"120%\", timeout = \"0s\", max_output = \"1GiB\", \
         rejected = {{ statuses = [99], close_codes = [999], reply = {{ pointer = \"error\" }} }} }}\n\n\
         [[feeds]]\nname = \"c\"\nurl = \"wss://example.com/c\"\ncredentials = \"vault\"\n\n\
         [[feeds]]\nname = \"d\"\nurl = \"wss://example.com/d\"\ncredentials = {{ refresh = \"1m\" }}\n"
    );
    let error = error_of(&text);
    for expected in [
        "feeds[0] (stocks).credentials: set exec or http, not both",
        "feeds[1] (b).credentials.http.url: must be an http:// or https:// URL",
        "feeds[1] (b).credentials.http.method: \"DELETE\": use GET, POST or PUT",
        "feeds[1] (b).credentials.http.headers.\"bad name\": \"bad name\" is not a valid header name",
        "feeds[1] (b).credentials.refresh: \"120%\": a share of the remaining life is 1% to 99%",
        "feeds[1] (b).credentials.timeout: must be greater than 0",
        "feeds[1] (b).credentials.max_output: 1GiB is over the limit of 16MiB",
        "feeds[1] (b).credentials.rejected.statuses: 99 is not an HTTP status",
        "feeds[1] (b).credentials.rejected.close_codes: 999 is not a close code",
        "feeds[1] (b).credentials.rejected.reply.pointer: \"error\" is not a JSON pointer",
        "feeds[1] (b).credentials.rejected.reply.contains: required",
        "feeds[2] (c).credentials: \"vault\" is not a provider",
        "feeds[3] (d).credentials: no provider: set exec",
    ] {
        assert!(error.contains(expected), "missing {expected:?} in:\n{error}");
    }
}

#[test]
fn a_credentials_placeholder_needs_a_provider_and_a_well_formed_name() {
    let without = format!(
        "{FEED}on_open = ['{{\"op\":\"auth\",\"key\":\"{{{{credentials.key}}}}\"}}']\n\
         heartbeat = {{ interval = \"30s\", message = \"ping {{{{credentials.key}}}}\", reply = \"pong\" }}\n"
    );
    let error = error_of(&without);
    assert!(error.contains("feeds[0] (stocks).on_open[0]: uses {{credentials.key}} but the feed has no credential provider"), "{error}");
    assert!(
        error.contains("feeds[0] (stocks).heartbeat.message: uses {{credentials.key}}"),
        "{error}"
    );
    let with = format!("{without}credentials = {{ exec = [\"vault-token\"] }}\n");
    load(&with).expect("with a provider");
    let unclosed =
        format!("{FEED}on_open = [\"{{{{credentials.key\"]\ncredentials = {{ exec = [\"t\"] }}\n");
    assert!(error_of(&unclosed).contains("on_open[0]: {{credentials. is not closed with }}"));
    assert_eq!(placeholders("a {{credentials.x}} b {{credentials.y-1}}"), Ok(vec!["x", "y-1"]));
    assert!(placeholders("{{credentials.a b}}").is_err());
}

#[test]
fn secrets_of_an_http_provider_are_never_shown() {
    let text = format!(
        "{FEED}credentials = {{ http = {{ url = \"https://auth.example.com/token?key=${{TOKEN_KEY}}&literal=abc\", \
         method = \"POST\", headers = {{ X-Key = \"${{TOKEN_KEY}}\" }}, body = \"grant=${{TOKEN_KEY}}\" }} }}\n"
    );
    let config = load(&text).expect("valid");
    let feed = &config.feeds[0];
    let shown = format!("{feed:?}\n{}\n{config:?}", serde_json::to_string(&config).expect("json"));
    assert!(!shown.contains("s3cret-key"), "{shown}");
    assert!(!shown.contains("abc"), "a literal query value is masked: {shown}");
    let json = serde_json::to_value(feed).expect("json");
    assert_eq!(
        json["credentials"]["http"]["url"],
        "https://auth.example.com/token?key=${TOKEN_KEY}&literal=***"
    );
    assert_eq!(json["credentials"]["http"]["headers"]["X-Key"], "***");
    assert_eq!(json["credentials"]["http"]["body"], "***");
    // The expanded values are what the request uses.
    let Some(CredentialSource::Http(http)) = feed.credentials.as_ref().map(|c| &c.source) else {
        panic!("an http provider")
    };
    assert_eq!(http.headers, [("X-Key".to_owned(), "s3cret-key".to_owned())]);
    assert_eq!(http.body.as_ref().map(Secret::expose), Some("grant=s3cret-key"));
}

#[test]
fn a_shown_feed_reads_back_as_the_same_provider() {
    let text = format!(
        "{FEED}credentials = {{ exec = [\"vault-token\", \"stocks\"], refresh = \"75%\", max_output = \"1MiB\", \
         rejected = {{ close_codes = [4001], reply = {{ pointer = \"/msg\", contains = \"expired\" }} }} }}\n"
    );
    let config = load(&text).expect("valid");
    let json = serde_json::to_value(&config.feeds[0]).expect("json");
    let again = crate::config::parse_feed_json(
        json,
        &config.defaults,
        Path::new("/etc/feedvisor"),
        &|_| None,
        &TransportRegistry::with_defaults(),
    )
    .expect("reads back");
    assert_eq!(again.credentials, config.feeds[0].credentials);
}

#[test]
fn a_feed_from_the_network_may_not_name_a_program() {
    let posted = serde_json::json!({ "name": "x", "url": "wss://example.com/", "credentials": { "exec": ["/bin/sh"] } });
    let error = refuse_exec_credentials(&posted).expect_err("refused").to_string();
    assert!(
        error.contains("credentials.exec: a feed added over the API cannot run a program"),
        "{error}"
    );
    let http =
        serde_json::json!({ "name": "x", "credentials": { "http": { "url": "https://a/" } } });
    refuse_exec_credentials(&http).expect("an http provider is allowed");
}

#[test]
fn a_reply_rule_looks_at_the_pointer_or_the_whole_message() {
    let at = RejectedReply { pointer: Some("/error".to_owned()), contains: "expired".to_owned() };
    assert!(at.matches(br#"{"error":"token expired"}"#));
    assert!(!at.matches(br#"{"note":"token expired"}"#));
    assert!(!at.matches(b"not json but expired"));
    let anywhere = RejectedReply { pointer: None, contains: "expired".to_owned() };
    assert!(anywhere.matches(b"not json but expired"));
    assert!(!anywhere.matches(b"fine"));
}
