//! The file sink (`sink = "file"`): its config, and the two layouts it
//! writes, each an actor of its own.
//!
//! - `layout = "lines"` (the default): JSON lines appended to the file
//!   `path` (`file/json_lines.rs`).
//! - `layout = "per_message"`: one file per message in the directory
//!   `path`, written as its chunks arrive, so a stream-mode message of any
//!   size reaches the disk in bounded memory (`file/per_message.rs`).
//!
//! The layout is what the config says, never what is found on disk. The
//! check is pure: it knows only the path as written, so a path that ends
//! with `/` cannot take JSON lines; whether the path really is a file or a
//! directory is found out when the sink starts, and reported then.

mod json_lines;
mod per_message;

use std::path::{Path, PathBuf};

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use super::watch::SinkWatch;
use super::{SettingsContext, Sink, SinkConfigError};
use crate::inbox::delivery::Deliver;

use json_lines::JsonLinesFileSink;
use per_message::PerMessageFileSink;

/// The `sink` label of the file sink's metrics.
const SINK: &str = FileSinkConfig::NAME;

/// How the file sink lays out what it writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileLayout {
    /// One JSON object per message and line, appended to the file `path`.
    #[default]
    Lines,
    /// Each message's payload in a file of its own
    /// (`<feed>-<message>-<received>.bin`) in the directory `path`.
    PerMessage,
}

impl FileLayout {
    /// The name used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lines => "lines",
            Self::PerMessage => "per_message",
        }
    }
}

/// `sink = "file"`: where and how messages are written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileSinkConfig {
    /// `layout = "lines"`: the file (created if missing, its directory is
    /// not); `"per_message"`: the directory, which must exist. Relative
    /// paths are resolved against the config file's directory.
    pub path: PathBuf,
    /// `"lines"` (default) or `"per_message"`.
    pub layout: FileLayout,
}

/// `sink = "file"`'s settings as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSettings {
    /// The file to append JSON lines to, or the directory of the messages' files.
    path: Option<String>,
    /// `lines` (default) or `per_message`.
    layout: Option<FileLayout>,
}

impl Sink for FileSinkConfig {
    const NAME: &'static str = "file";
    type Settings = FileSettings;

    fn from_settings(settings: FileSettings, _: &mut dyn SettingsContext) -> Option<Self> {
        Some(FileSinkConfig {
            path: PathBuf::from(settings.path.unwrap_or_default()),
            layout: settings.layout.unwrap_or_default(),
        })
    }

    /// Checks the settings without looking at the filesystem: the path as
    /// written, before it is resolved.
    fn validate(&self) -> Vec<SinkConfigError> {
        if self.path.as_os_str().is_empty() {
            let message = match self.layout {
                FileLayout::Lines => "required for sink = \"file\": the file to append to",
                FileLayout::PerMessage => {
                    "required for sink = \"file\": the directory to write the messages' files into"
                }
            };
            return vec![SinkConfigError::new("path", message)];
        }
        if self.layout == FileLayout::Lines && names_a_directory(&self.path) {
            let message = format!(
                "{} names a directory, and layout = \"lines\" appends to a file: name a file, \
                 or set layout = \"per_message\" to write one file per message into the directory",
                self.path.display()
            );
            return vec![SinkConfigError::new("path", message)];
        }
        Vec::new()
    }

    fn resolved_against(mut self, base: &Path) -> Self {
        self.path = base.join(&self.path);
        self
    }

    fn describe(&self) -> String {
        match self.layout {
            FileLayout::Lines => format!("file {}", self.path.display()),
            FileLayout::PerMessage => format!("file per message in {}", self.path.display()),
        }
    }

    /// Starts the actor of the configured layout.
    fn start(&self, name: &str, watch: SinkWatch) -> Recipient<Deliver> {
        let path = self.path.clone();
        match self.layout {
            FileLayout::Lines => {
                JsonLinesFileSink::new(name, path).watched(watch).start().recipient()
            }
            FileLayout::PerMessage => {
                PerMessageFileSink::new(name, path).watched(watch).start().recipient()
            }
        }
    }
}

impl FileSinkConfig {
    /// A one-line description for `feedvisor check`.
    pub fn describe(&self) -> String {
        <Self as Sink>::describe(self)
    }
}

/// Whether `path` can only be a directory, as written: it ends with `/`, or
/// in `.` or `..`, or is a root.
fn names_a_directory(path: &Path) -> bool {
    path.as_os_str().as_encoded_bytes().ends_with(b"/") || path.file_name().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(path: &str, layout: FileLayout) -> FileSinkConfig {
        FileSinkConfig { path: PathBuf::from(path), layout }
    }

    #[test]
    fn a_path_written_as_a_directory_cannot_take_json_lines() {
        for path in ["out/", "/var/log/feeds/", ".", "logs/..", "/"] {
            let errors = config(path, FileLayout::Lines).validate();
            assert_eq!(errors.len(), 1, "{path}: {errors:?}");
            assert_eq!(errors[0].field, "path");
            assert!(errors[0].message.contains("layout = \"per_message\""), "{}", errors[0]);
            assert!(config(path, FileLayout::PerMessage).validate().is_empty(), "{path}");
        }
        for path in ["out.jsonl", "logs/feed", "/var/log/feeds/all.jsonl"] {
            assert!(config(path, FileLayout::Lines).validate().is_empty(), "{path}");
        }
    }

    #[test]
    fn the_path_is_required_whatever_the_layout() {
        for layout in [FileLayout::Lines, FileLayout::PerMessage] {
            let errors = config("", layout).validate();
            assert_eq!(errors.len(), 1);
            assert!(errors[0].message.starts_with("required"), "{}", errors[0]);
        }
    }

    #[test]
    fn layouts_are_named_as_in_the_config() {
        for layout in [FileLayout::Lines, FileLayout::PerMessage] {
            let json = serde_json::to_string(&layout).expect("serialize");
            assert_eq!(json, format!("\"{}\"", layout.as_str()));
        }
        let resolved = config("out", FileLayout::PerMessage).resolved_against(Path::new("/etc/fv"));
        assert_eq!(resolved.path, PathBuf::from("/etc/fv/out"));
        assert_eq!(resolved.describe(), "file per message in /etc/fv/out");
    }
}
