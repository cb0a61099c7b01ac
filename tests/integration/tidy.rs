//! Rules of the codebase that a machine can check, read from the source
//! tree itself: which crate may name a plugin, what `include_str!` may
//! reach, that ARCHITECTURE.md names every module and only what exists, and
//! that every TOML block in the docs is a valid config.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// The repository's root (the root crate's manifest directory).
fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}

/// Every `.rs` file under `dir`, sorted, skipping build output and nested crates.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|error| panic!("read {}: {error}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    pending.push(path);
                }
            } else if name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The directories of the workspace's crates: the root, `plugins/*`, `crates/*`.
fn crate_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![repo().to_path_buf()];
    for group in ["plugins", "crates"] {
        let Ok(entries) = std::fs::read_dir(repo().join(group)) else { continue };
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.join("Cargo.toml").is_file() {
                dirs.push(path);
            }
        }
    }
    dirs.sort();
    dirs
}

/// Test-only code: `tests.rs`, `*_tests.rs`, anything under a `tests/` directory.
fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
    name == "tests.rs"
        || name.ends_with("_tests.rs")
        || path.components().any(|component| component.as_os_str() == "tests")
}

/// Removes `.` and `..` from a path without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    normal
}

/// The names of the transport plugins: every crate under `plugins/` but the
/// contract and the kit they share.
fn plugin_crates() -> Vec<String> {
    crate_dirs()
        .iter()
        .filter(|dir| dir.parent().is_some_and(|parent| parent.ends_with("plugins")))
        .filter_map(|dir| dir.file_name()?.to_str().map(str::to_owned))
        .filter(|name| name != "feedvisor-transport-api" && name != "feedvisor-transport-kit")
        .collect()
}

#[test]
fn plugins_are_named_only_by_the_registry() {
    let plugins = plugin_crates();
    assert!(plugins.len() >= 3, "expected the websocket, tcp and memory plugins: {plugins:?}");
    let idents: Vec<String> = plugins.iter().map(|name| name.replace('-', "_")).collect();
    let mut offenders = Vec::new();
    for file in rust_files(&repo().join("src")) {
        if is_test_file(&file) || file.ends_with("src/transports.rs") {
            continue;
        }
        let text = read(&file);
        for ident in &idents {
            if text.contains(ident.as_str()) {
                offenders.push(format!("{} names {ident}", file.display()));
            }
        }
    }
    // No plugin builds on another one: they share only the contract and the kit.
    for dir in crate_dirs() {
        let manifest = read(&dir.join("Cargo.toml"));
        let own = dir.file_name().and_then(|name| name.to_str()).unwrap_or_default().to_owned();
        if !plugins.contains(&own) {
            continue;
        }
        for other in plugins.iter().filter(|other| **other != own) {
            if manifest.contains(other.as_str()) {
                offenders.push(format!("plugins/{own}/Cargo.toml depends on {other}"));
            }
        }
    }
    assert!(offenders.is_empty(), "only src/transports.rs may name a plugin:\n{offenders:#?}");
}

#[test]
fn the_memory_transport_is_for_tests_only() {
    let manifest: toml::Table = read(&repo().join("Cargo.toml")).parse().expect("Cargo.toml");
    let normal = manifest.get("dependencies").and_then(toml::Value::as_table);
    assert!(
        normal.is_some_and(|deps| !deps.contains_key("feedvisor-transport-memory")),
        "feedvisor-transport-memory must be a dev-dependency of the root crate"
    );
}

/// The string literal a macro call starting at `rest` (after its `(`) names,
/// resolved against `dir` (the file's directory) or the crate's manifest
/// directory for `concat!(env!("CARGO_MANIFEST_DIR"), "...")`.
fn included_path(rest: &str, dir: &Path, crate_dir: &Path) -> Option<PathBuf> {
    let call = &rest[..rest.find(')')?];
    let literal = call.rsplit('"').nth(1)?;
    if call.contains("CARGO_MANIFEST_DIR") {
        Some(normalize(&crate_dir.join(literal.trim_start_matches('/'))))
    } else {
        Some(normalize(&dir.join(literal)))
    }
}

#[test]
fn nothing_is_included_from_outside_its_crate() {
    let crates = crate_dirs();
    let mut offenders = Vec::new();
    for crate_dir in &crates {
        let nested: Vec<&PathBuf> = crates
            .iter()
            .filter(|other| *other != crate_dir && other.starts_with(crate_dir))
            .collect();
        for file in rust_files(crate_dir) {
            if nested.iter().any(|other| file.starts_with(other)) {
                continue;
            }
            let text = read(&file);
            let dir = file.parent().expect("a file has a directory");
            for mac in ["include_str!(", "include_bytes!("] {
                for (at, _) in text.match_indices(mac) {
                    let Some(path) = included_path(&text[at + mac.len()..], dir, crate_dir) else {
                        continue;
                    };
                    if !path.starts_with(crate_dir) {
                        offenders.push(format!("{} includes {}", file.display(), path.display()));
                    }
                }
            }
        }
    }
    assert!(offenders.is_empty(), "include only files of the same crate:\n{offenders:#?}");
}

/// The backticked spans of `text`, split on spaces.
fn code_spans(text: &str) -> BTreeSet<String> {
    let mut spans = BTreeSet::new();
    for (index, span) in text.split('`').enumerate() {
        if index % 2 == 1 {
            spans.extend(span.split_whitespace().map(str::to_owned));
        }
    }
    spans
}

/// ARCHITECTURE.md's code map: `(crate directory, text of its section)` for
/// every `### \`path\`` heading that names a crate's directory.
fn architecture_sections() -> Vec<(PathBuf, String)> {
    let text = read(&repo().join("ARCHITECTURE.md"));
    let mut sections = Vec::new();
    let mut current: Option<(PathBuf, String)> = None;
    for line in text.lines() {
        if line.starts_with("#") {
            sections.extend(current.take());
            let heading = line.trim_start_matches('#').trim();
            if let Some(path) = heading.strip_prefix('`').and_then(|rest| rest.strip_suffix('`')) {
                let path = path.trim_end_matches('/');
                let dir = if path == "src" { repo().to_path_buf() } else { repo().join(path) };
                current = Some((dir, String::new()));
            }
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    sections.extend(current);
    sections
}

#[test]
fn architecture_names_every_module() {
    let sections = architecture_sections();
    let mut missing = Vec::new();
    for crate_dir in crate_dirs() {
        let src = crate_dir.join("src");
        let Some((_, section)) = sections.iter().find(|(dir, _)| *dir == crate_dir) else {
            missing.push(format!("no section for {}", crate_dir.display()));
            continue;
        };
        let named = code_spans(section);
        let named: Vec<&str> = named
            .iter()
            .map(|span| span.trim_matches(|c| c == ',' || c == '(' || c == ')'))
            .collect();
        // A span names a path when it is the path or its tail at a `/`.
        let names_path = |path: &str| {
            named.iter().any(|span| {
                path.strip_suffix(*span).is_some_and(|head| head.is_empty() || head.ends_with('/'))
            })
        };
        // A span names a directory when one of its components is that directory.
        let names_dir = |dir: &str| {
            let with_slash = format!("{dir}/");
            named.iter().any(|span| {
                span.starts_with(&with_slash) || span.contains(&format!("/{with_slash}"))
            })
        };
        for file in rust_files(&src) {
            if is_test_file(&file) {
                continue;
            }
            let relative = file.strip_prefix(&src).expect("under src");
            let name = relative.file_name().and_then(|name| name.to_str()).unwrap_or_default();
            if relative.parent() == Some(Path::new("")) && matches!(name, "lib.rs" | "main.rs") {
                continue;
            }
            let relative_text = relative.to_string_lossy().into_owned();
            // A directory's `mod.rs` is named by the directory.
            let module_named = if name == "mod.rs" {
                let dir = relative.parent().and_then(Path::file_name);
                let dir = dir.and_then(|dir| dir.to_str()).unwrap_or_default();
                names_dir(dir) || names_path(&relative_text)
            } else {
                names_path(&relative_text)
            };
            // Every directory on the way is named too.
            let mut dirs_named = true;
            let mut parent = relative.parent();
            while let Some(dir) = parent.filter(|dir| *dir != Path::new("")) {
                let dir_name = dir.file_name().and_then(|dir| dir.to_str()).unwrap_or_default();
                dirs_named &= names_dir(dir_name);
                parent = dir.parent();
            }
            if !(module_named && dirs_named) {
                missing.push(file.strip_prefix(repo()).unwrap_or(&file).display().to_string());
            }
        }
    }
    assert!(missing.is_empty(), "ARCHITECTURE.md's code map does not name:\n{missing:#?}");
}

#[test]
fn the_docs_name_only_what_exists() {
    let mut file_names = BTreeSet::new();
    let mut relative_paths = BTreeSet::new();
    let mut functions = String::new();
    for crate_dir in crate_dirs() {
        for file in rust_files(&crate_dir) {
            file_names
                .insert(file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned());
            let mut relative = file.strip_prefix(repo()).unwrap_or(&file).to_path_buf();
            // Paths are written from the repository, a crate, or its `src/`.
            loop {
                relative_paths.insert(relative.to_string_lossy().into_owned());
                let mut parents = relative.parent().map(Path::to_path_buf);
                while let Some(parent) = parents.filter(|parent| *parent != Path::new("")) {
                    relative_paths.insert(format!("{}/", parent.to_string_lossy()));
                    parents = parent.parent().map(Path::to_path_buf);
                }
                let mut components = relative.components();
                if components.next().is_none() || components.as_path() == Path::new("") {
                    break;
                }
                relative = components.as_path().to_path_buf();
            }
            functions.push_str(&read(&file));
        }
    }
    let mut unknown = Vec::new();
    for document in ["ARCHITECTURE.md", "README.md"] {
        let text = read(&repo().join(document));
        for span in code_spans(&text) {
            let span = span.trim_matches(|c: char| c == ',' || c == '(' || c == ')');
            let looks_like_path = !span.contains('*')
                && (span.ends_with(".rs") || (span.ends_with('/') && !span.contains(':')));
            if looks_like_path {
                let known = if span.contains('/') && span.ends_with(".rs") {
                    relative_paths.contains(span)
                } else if span.ends_with('/') {
                    relative_paths.contains(span) || repo().join(span).is_dir()
                } else {
                    file_names.contains(span)
                };
                if !known {
                    unknown.push(format!("{document}: {span}"));
                }
            }
            // A test named as the proof of an invariant exists.
            let test_name = document == "ARCHITECTURE.md"
                && span.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                && span.matches('_').count() >= 4;
            let defined = |next: char| functions.contains(&format!("fn {span}{next}"));
            if test_name && !defined('(') && !defined('<') {
                unknown.push(format!("{document}: test {span}"));
            }
        }
    }
    assert!(unknown.is_empty(), "the docs name what does not exist:\n{unknown:#?}");
}

/// The ```` ```toml ```` blocks of a Markdown file.
fn toml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match current.as_mut() {
            None if line.trim_start() == "```toml" => current = Some(String::new()),
            Some(_) if line.trim_start() == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// Every `ca_file` a config names, so that the block can be checked where those files exist.
fn named_files(value: &toml::Value, files: &mut Vec<String>) {
    match value {
        toml::Value::Table(table) => {
            for (key, value) in table {
                match value {
                    toml::Value::String(path) if key == "ca_file" => files.push(path.clone()),
                    // A credential provider's program, checked to exist at load.
                    toml::Value::Array(command) if key == "exec" => {
                        let program = command.first().and_then(toml::Value::as_str);
                        files.extend(program.filter(|path| path.contains('/')).map(str::to_owned));
                    }
                    other => named_files(other, files),
                }
            }
        }
        toml::Value::Array(values) => values.iter().for_each(|value| named_files(value, files)),
        _ => {}
    }
}

#[test]
fn every_toml_block_in_the_docs_is_a_valid_config() {
    let mut documents = vec![repo().join("README.md")];
    let config_dir = std::fs::read_dir(repo().join("config")).expect("config/");
    documents.extend(
        config_dir
            .map(|entry| entry.expect("directory entry").path())
            .filter(|path| path.extension().is_some_and(|extension| extension == "md")),
    );
    let transports = feedvisor::transports::TransportRegistry::with_defaults();
    let env = |name: &str| Some(format!("value-of-{name}"));
    let certificates = feedvisor_test_support::TestCertificates::generate();
    let mut checked = 0;
    for document in documents {
        for (index, block) in toml_blocks(&read(&document)).into_iter().enumerate() {
            let place = format!("{} block {}", document.display(), index + 1);
            let table: toml::Table =
                block.parse().unwrap_or_else(|error| panic!("{place} is not TOML: {error}"));
            // The block is checked in a directory of its own, where the files it names exist.
            let dir = std::env::temp_dir()
                .join(format!("feedvisor-tidy-{}-{checked}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let mut files = Vec::new();
            named_files(&toml::Value::Table(table), &mut files);
            for file in files {
                // TLS files are parsed at load: those get real PEM files.
                let contents = match file.rsplit('/').next().unwrap_or_default() {
                    "client.pem" => read(&certificates.client_cert_file()),
                    "client.key" => read(&certificates.client_key_file()),
                    name if name.ends_with(".pem") => read(&certificates.ca_file()),
                    _ => String::new(),
                };
                std::fs::write(dir.join(file), contents).expect("placeholder file");
            }
            let origin = dir.join("feedvisor.toml");
            let loaded = feedvisor::config::Config::from_toml_str_with_env(
                &block,
                &origin,
                &env,
                &transports,
            );
            let _ = std::fs::remove_dir_all(&dir);
            if let Err(error) = loaded {
                panic!("{place} does not validate:\n{error}");
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "README.md has a config block");
}

/// The `[dependencies]` (not dev or build) names of the crate at `dir`.
fn normal_dependencies(dir: &Path) -> Vec<String> {
    let manifest: toml::Table = read(&dir.join("Cargo.toml")).parse().expect("Cargo.toml");
    let deps = manifest.get("dependencies").and_then(toml::Value::as_table);
    deps.map(|deps| deps.keys().cloned().collect()).unwrap_or_default()
}

#[test]
fn the_transport_contract_has_no_runtime_tls_or_actix() {
    let deps = normal_dependencies(&repo().join("plugins/feedvisor-transport-api"));
    let heavy: Vec<&String> = deps
        .iter()
        .filter(|name| {
            ["actix", "tokio", "rustls", "webpki", "awc"].iter().any(|h| name.contains(h))
        })
        .collect();
    assert!(
        heavy.is_empty(),
        "feedvisor-transport-api must stay a contract, yet depends on {heavy:?}"
    );
}

#[test]
fn the_shipped_crate_has_no_bench_or_test_dependency() {
    let deps = normal_dependencies(repo());
    let misplaced: Vec<&String> = deps
        .iter()
        .filter(|name| {
            ["tungstenite", "core_affinity", "rcgen", "feedvisor-bench", "feedvisor-test-support"]
                .iter()
                .any(|bench_only| name.contains(bench_only))
        })
        .collect();
    assert!(misplaced.is_empty(), "the feedvisor crate ships {misplaced:?}");
}

#[test]
fn config_names_no_url_scheme() {
    let mut offenders = Vec::new();
    for file in rust_files(&repo().join("src/config")) {
        if is_test_file(&file) {
            continue;
        }
        for (number, line) in read(&file).lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for scheme in ["\"ws\"", "\"wss\"", "\"tcp\"", "\"tls\"", "\"memory\""] {
                // A scheme compared or matched, not a config key of the same spelling.
                let compared = [
                    format!("{scheme} |"),
                    format!("| {scheme}"),
                    format!("== {scheme}"),
                    format!("{scheme} =>"),
                ];
                if compared.iter().any(|pattern| code.contains(pattern.as_str())) {
                    offenders.push(format!("{}:{}: {}", file.display(), number + 1, line.trim()));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "schemes are the transports' business:\n{offenders:#?}");
}

/// The modules of a crate's `src/` (tests left out) by path, such as
/// `config::validate`; the crate root is `""`.
fn modules(src: &Path) -> std::collections::BTreeMap<String, PathBuf> {
    let mut modules = std::collections::BTreeMap::new();
    for file in rust_files(src) {
        if is_test_file(&file) {
            continue;
        }
        let relative = file.strip_prefix(src).expect("under src").with_extension("");
        let mut segments: Vec<String> =
            relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        if segments.last().is_some_and(|last| last == "mod") {
            segments.pop();
        }
        if segments.len() == 1 && matches!(segments[0].as_str(), "lib" | "main") {
            segments.clear();
        }
        modules.insert(segments.join("::"), file);
    }
    modules
}

/// The identifier paths written after each `keyword` (`crate::`, `super::`)
/// in `code`, one level of `{a, b::c}` expanded.
fn paths_after(code: &str, keyword: &str) -> Vec<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let read_path = |text: &str| -> String {
        let mut end = 0;
        let bytes: Vec<char> = text.chars().collect();
        while end < bytes.len() {
            if is_ident(bytes[end]) {
                end += 1;
            } else if text[end..].starts_with("::")
                && bytes.get(end + 2).is_some_and(|c| is_ident(*c))
            {
                end += 2;
            } else {
                break;
            }
        }
        text[..end].to_owned()
    };
    let mut paths = Vec::new();
    for (at, _) in code.match_indices(keyword) {
        let rest = &code[at + keyword.len()..];
        let path = read_path(rest);
        let after = &rest[path.len()..];
        let group =
            if path.is_empty() { after.strip_prefix('{') } else { after.strip_prefix("::{") };
        match group.and_then(|group| group.split_once('}')) {
            Some((items, _)) => {
                for item in items.split(',') {
                    let item = read_path(item.trim());
                    if !item.is_empty() {
                        let joined = if path.is_empty() { item } else { format!("{path}::{item}") };
                        paths.push(joined);
                    }
                }
            }
            None => paths.push(path),
        }
    }
    paths
}

/// The modules `module` (in `file`) uses: `crate::` and `super::` paths
/// resolved to the longest module they name. Test modules at the end of a
/// file are left out.
fn module_uses(
    modules: &std::collections::BTreeMap<String, PathBuf>,
    module: &str,
    file: &Path,
) -> BTreeSet<String> {
    let text = read(file);
    let text = match text.find("#[cfg(test)]\nmod ") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    let code: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .map(|line| format!("{line}\n"))
        .collect();
    let resolve = |path: &[&str]| -> Option<String> {
        (0..=path.len()).rev().map(|len| path[..len].join("::")).find(|m| modules.contains_key(m))
    };
    let own: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
    let mut uses = BTreeSet::new();
    for path in paths_after(&code, "crate::") {
        let segments: Vec<&str> = path.split("::").collect();
        uses.extend(resolve(&segments));
    }
    for path in paths_after(&code, "super::") {
        // `super::` is the parent; each further `super::` one more up.
        let mut segments: Vec<&str> = path.split("::").collect();
        let mut base = own.clone();
        base.pop();
        while segments.first() == Some(&"super") {
            segments.remove(0);
            base.pop();
        }
        base.extend(segments);
        uses.extend(resolve(&base));
    }
    uses.remove(module);
    uses
}

/// A use of `to` by `from` as one between the two siblings that hold them
/// (`sink::file` using `inbox::delivery` is `sink` using `inbox`); `None`
/// when one holds the other: a module and its children use each other freely.
fn between_siblings(from: &str, to: &str) -> Option<(String, String)> {
    let from: Vec<&str> = from.split("::").filter(|s| !s.is_empty()).collect();
    let to: Vec<&str> = to.split("::").filter(|s| !s.is_empty()).collect();
    let shared = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    if shared >= from.len() || shared >= to.len() {
        return None;
    }
    Some((from[..=shared].join("::"), to[..=shared].join("::")))
}

#[test]
fn imports_run_one_way() {
    let mut circles = Vec::new();
    for crate_dir in crate_dirs() {
        let modules = modules(&crate_dir.join("src"));
        let mut uses: std::collections::BTreeMap<String, BTreeSet<String>> =
            std::collections::BTreeMap::new();
        for (module, file) in &modules {
            for used in module_uses(&modules, module, file) {
                if let Some((from, to)) = between_siblings(module, &used) {
                    uses.entry(from).or_default().insert(to);
                }
            }
        }
        for (from, used) in &uses {
            for to in used {
                // Is there a way back from `to` to `from`?
                let mut seen = BTreeSet::from([to.clone()]);
                let mut pending = vec![(to.clone(), vec![from.to_string(), to.clone()])];
                while let Some((at, way)) = pending.pop() {
                    if at == *from {
                        let name = crate_dir.strip_prefix(repo()).unwrap_or(&crate_dir);
                        let name =
                            if name.as_os_str().is_empty() { Path::new("src") } else { name };
                        let name = name.display();
                        circles.push(format!("{name}: {}", way.join(" -> ")));
                        break;
                    }
                    for next in uses.get(&at).into_iter().flatten() {
                        if seen.insert(next.clone()) {
                            let mut longer = way.clone();
                            longer.push(next.clone());
                            pending.push((next.clone(), longer));
                        }
                    }
                }
            }
        }
    }
    assert!(circles.is_empty(), "modules that import each other:\n{circles:#?}");
}
