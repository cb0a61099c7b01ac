//! The sink list and the steps every sink's settings go through: each
//! listed sink's fields and name, and a sink of the test's own (not in the
//! list) read, typed, checked and resolved by `config_of`.

use std::path::Path;
use std::time::Duration;

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use super::{
    config_of, JsonLinesSink, SettingsContext, Sink, SinkConfigError, SinkKind, SinkWatch, Tagged,
};
use crate::inbox::delivery::Deliver;

#[test]
fn each_sink_s_fields_are_read_from_its_settings_type() {
    assert!(SinkKind::Stdout.fields().is_empty());
    assert_eq!(SinkKind::File.fields(), ["path", "layout"]);
    assert_eq!(SinkKind::Exec.fields(), ["command"]);
    let webhook = ["url", "batch", "max_in_flight", "timeout", "headers"];
    assert_eq!(SinkKind::Webhook.fields(), webhook);
}

#[test]
fn every_listed_sink_has_a_name_of_its_own_that_reads_back() {
    let mut names = std::collections::HashSet::new();
    for kind in SinkKind::ALL {
        assert!(names.insert(kind.as_str()), "{} is listed twice", kind.as_str());
        let written = serde_json::to_value(kind).expect("serialize");
        assert_eq!(written, serde_json::json!(kind.as_str()));
        assert_eq!(serde_json::from_value::<SinkKind>(written).expect("read back"), *kind);
    }
    assert_eq!(SinkKind::default(), SinkKind::ALL[0]);
    assert_eq!(SinkKind::default().as_str(), "stdout");
}

/// A sink of the test's own, not in the list: what a new module supplies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct CountingSinkConfig {
    label: String,
    every: Duration,
    path: std::path::PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CountingSettings {
    label: Option<String>,
    every: Option<String>,
    spool: Option<String>,
}

impl Sink for CountingSinkConfig {
    const NAME: &'static str = "counting";
    type Settings = CountingSettings;

    fn from_settings(
        settings: CountingSettings,
        context: &mut dyn SettingsContext,
    ) -> Option<Self> {
        let label = context.expand("label", settings.label.as_deref().unwrap_or_default());
        let every = context.duration("every", settings.every.as_deref(), Duration::from_secs(1));
        let path = std::path::PathBuf::from(settings.spool.unwrap_or_default());
        Some(CountingSinkConfig { label: label?, every: every?, path })
    }

    fn validate(&self) -> Vec<SinkConfigError> {
        if self.label.is_empty() {
            return vec![SinkConfigError::new("label", "required")];
        }
        Vec::new()
    }

    fn resolved_against(mut self, base_dir: &Path) -> Self {
        self.path = base_dir.join(&self.path);
        self
    }

    fn describe(&self) -> String {
        format!("counting {}", self.label)
    }

    fn start(&self, name: &str, watch: SinkWatch) -> Recipient<Deliver> {
        JsonLinesSink::new(name, std::io::sink()).watched(watch).start().recipient()
    }
}

/// Collects what a sink reports, as `field: message`.
#[derive(Default)]
struct Collected(Vec<String>);

impl SettingsContext for Collected {
    fn error(&mut self, field: &str, message: String) {
        self.0.push(format!("{field}: {message}"));
    }
    fn expand(&mut self, field: &str, text: &str) -> Option<String> {
        match text.strip_prefix("${MISSING}") {
            Some(_) => self.error(field, "MISSING is not set".to_owned()),
            None => return Some(text.replace("${NAME}", "ticks")),
        }
        None
    }
    fn duration(&mut self, field: &str, text: Option<&str>, default: Duration) -> Option<Duration> {
        match text {
            None => Some(default),
            Some("2s") => Some(Duration::from_secs(2)),
            Some(other) => {
                self.error(field, format!("invalid duration {other:?}"));
                None
            }
        }
    }
    fn unknown_field(&mut self, field: &str, sink_fields: &[&str]) {
        self.error(field, format!("unknown, expected one of {sink_fields:?}"));
    }
}

fn counting(toml: &str) -> (Option<CountingSinkConfig>, Vec<String>) {
    let table: toml::Table = toml.parse().expect("valid TOML");
    let mut context = Collected::default();
    let config = config_of::<CountingSinkConfig>(table, Path::new("/etc/fv"), &mut context);
    (config, context.0)
}

#[test]
fn a_sink_of_its_own_is_read_typed_checked_and_resolved_by_the_shared_steps() {
    let (config, errors) = counting("label = \"${NAME}\"\nevery = \"2s\"\nspool = \"out\"\n");
    assert_eq!(errors, Vec::<String>::new());
    let config = config.expect("valid");
    assert_eq!(config.label, "ticks");
    assert_eq!(config.every, Duration::from_secs(2));
    assert_eq!(config.path, Path::new("/etc/fv/out"));
    let shown = serde_json::to_value(Tagged::new(&config)).expect("serialize");
    assert_eq!(shown["sink"], "counting");
    assert_eq!(shown["label"], "ticks");
}

#[test]
fn a_sink_of_its_own_reports_every_problem_under_its_fields() {
    let (config, errors) =
        counting("label = \"\"\nlayout = \"lines\"\nlabl = \"x\"\nevery = \"soon\"\n");
    assert_eq!(config, None);
    assert_eq!(
        errors,
        [
            "labl: unknown, expected one of [\"label\", \"every\", \"spool\"]",
            "layout: only used by sink = \"file\", not \"counting\"",
            "every: invalid duration \"soon\"",
        ]
    );
    let (config, errors) = counting("label = \"x\"\nevery = 5\n");
    assert_eq!(config, None);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("every: invalid type: integer `5`"), "{errors:?}");
    let (config, errors) = counting("label = \"\"\n");
    assert_eq!((config, errors), (None, vec!["label: required".to_owned()]));
    let (config, errors) = counting("label = \"${MISSING}\"\n");
    assert_eq!((config, errors), (None, vec!["label: MISSING is not set".to_owned()]));
}
