//! The deployment examples in `config/` agree with the code they deploy:
//! `kubernetes.yaml` (its `feedvisor.toml` goes through feedvisor's own
//! loader, then the probes, ports, mount, token and grace period are checked
//! against it) and `feedvisor.service` (signals, stop timeout, command line
//! and sandbox). Every check names the file, the field and what disagrees.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use feedvisor::config::{parse_duration, Config};
use feedvisor::transports::TransportRegistry;
use url::Url;
use yaml_rust2::{Yaml, YamlLoader};

const KUBERNETES: &str = "config/kubernetes.yaml";
const SYSTEMD: &str = "config/feedvisor.service";

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    let path = repo_file(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}

/// Panics with every problem found, so that one run shows all of them.
fn report(file: &str, problems: &[String]) {
    if !problems.is_empty() {
        panic!("{file} disagrees with feedvisor:\n  - {}", problems.join("\n  - "));
    }
}

fn fail(file: &str, problem: String) -> ! {
    report(file, &[problem]);
    unreachable!("report panics on a problem")
}

/// The default admin port, from the code rather than from this test.
fn default_port() -> u16 {
    Config::default().http.listen.port()
}

// ---------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------

/// Walks mapping keys; `None` when one is missing.
fn get<'a>(node: &'a Yaml, path: &[&str]) -> Option<&'a Yaml> {
    path.iter().try_fold(node, |node, key| {
        let next = &node[*key];
        (!next.is_badvalue()).then_some(next)
    })
}

/// Walks mapping keys; panics naming the path when one is missing.
fn at<'a>(node: &'a Yaml, what: &str, path: &[&str]) -> &'a Yaml {
    get(node, path).unwrap_or_else(|| panic!("{KUBERNETES}: {what} has no `{}`", path.join(".")))
}

fn str_at<'a>(node: &'a Yaml, what: &str, path: &[&str]) -> &'a str {
    at(node, what, path)
        .as_str()
        .unwrap_or_else(|| panic!("{KUBERNETES}: {what}: `{}` is not a string", path.join(".")))
}

fn seq(node: Option<&Yaml>) -> &[Yaml] {
    node.and_then(Yaml::as_vec).map_or(&[], Vec::as_slice)
}

fn name_of(node: &Yaml) -> &str {
    node["name"].as_str().unwrap_or("?")
}

/// What the tests need from `kubernetes.yaml`, found once.
struct Kubernetes {
    config_map_name: String,
    secret: Yaml,
    secret_name: String,
    /// The pod spec, and the metadata of the pod (or of the Deployment's template).
    pod: Yaml,
    pod_metadata: Yaml,
    feedvisor: Yaml,
    /// The ConfigMap key holding the sidecar's TOML.
    config_key: String,
    config: Config,
    /// `${VAR}` names the TOML asked the loader for.
    env_used: Vec<String>,
}

fn only_kind<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    let found: Vec<&Yaml> = docs.iter().filter(|doc| doc["kind"].as_str() == Some(kind)).collect();
    match found.as_slice() {
        [one] => one,
        other => panic!("{KUBERNETES}: expected exactly one {kind}, found {}", other.len()),
    }
}

/// A container's environment variable: its literal value, or the value of
/// the Secret key it refers to (only the Secret of this file is known); or
/// why there is none.
fn env_value(container: &Yaml, secret: &Yaml, name: &str) -> Result<String, String> {
    let container_name = name_of(container);
    let Some(entry) = seq(get(container, &["env"])).iter().find(|var| name_of(var) == name) else {
        return Err(format!("container {container_name} does not set {name}"));
    };
    if let Some(value) = entry["value"].as_str() {
        return Ok(value.to_owned());
    }
    let Some(reference) = get(entry, &["valueFrom", "secretKeyRef"]) else {
        return Err(format!("{name} has neither a value nor a secretKeyRef"));
    };
    let (wanted, ours) = (
        reference["name"].as_str().unwrap_or("?"),
        secret["metadata"]["name"].as_str().unwrap_or("?"),
    );
    if wanted != ours {
        return Err(format!("{name} comes from Secret {wanted}, but this file's Secret is {ours}"));
    }
    let key = reference["key"].as_str().unwrap_or("?");
    secret_value(secret, key).ok_or_else(|| format!("{name}: Secret {ours} has no key {key}"))
}

fn secret_value(secret: &Yaml, key: &str) -> Option<String> {
    if let Some(value) = get(secret, &["stringData", key]).and_then(Yaml::as_str) {
        return Some(value.to_owned());
    }
    let encoded = get(secret, &["data", key]).and_then(Yaml::as_str)?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    String::from_utf8(bytes).ok()
}

fn kubernetes() -> Kubernetes {
    let text = read(KUBERNETES);
    let docs = YamlLoader::load_from_str(&text)
        .unwrap_or_else(|error| panic!("{KUBERNETES} is not valid YAML: {error}"));
    let docs: Vec<Yaml> = docs.into_iter().filter(|doc| !doc.is_null()).collect();

    let config_map = only_kind(&docs, "ConfigMap");
    let config_map_name = str_at(config_map, "the ConfigMap", &["metadata", "name"]).to_owned();
    let secret = only_kind(&docs, "Secret").clone();
    let secret_name = str_at(&secret, "the Secret", &["metadata", "name"]).to_owned();

    let workload = docs
        .iter()
        .find(|doc| matches!(doc["kind"].as_str(), Some("Deployment" | "Pod")))
        .unwrap_or_else(|| panic!("{KUBERNETES}: no Deployment or Pod"));
    let (pod, pod_metadata) = match workload["kind"].as_str() {
        Some("Pod") => (at(workload, "the Pod", &["spec"]), &workload["metadata"]),
        _ => (
            at(workload, "the Deployment", &["spec", "template", "spec"]),
            &workload["spec"]["template"]["metadata"],
        ),
    };
    let (pod, pod_metadata) = (pod.clone(), pod_metadata.clone());
    let containers: Vec<&Yaml> =
        seq(get(&pod, &["containers"])).iter().chain(seq(get(&pod, &["initContainers"]))).collect();
    let feedvisor = containers
        .iter()
        .find(|container| name_of(container) == "feedvisor")
        .map(|container| (*container).clone())
        .unwrap_or_else(|| {
            let names: Vec<&str> = containers.iter().map(|container| name_of(container)).collect();
            panic!("{KUBERNETES}: no container named \"feedvisor\" (containers: {names:?})")
        });

    let data = at(config_map, "the ConfigMap", &["data"])
        .as_hash()
        .unwrap_or_else(|| panic!("{KUBERNETES}: the ConfigMap's data is not a mapping"));
    let toml_keys: Vec<&str> =
        data.keys().filter_map(Yaml::as_str).filter(|key| key.ends_with(".toml")).collect();
    let config_key = match toml_keys.as_slice() {
        [key] => (*key).to_owned(),
        other => panic!("{KUBERNETES}: the ConfigMap should hold one *.toml key, has {other:?}"),
    };
    let toml = str_at(config_map, "the ConfigMap", &["data", &config_key]);

    // `${VAR}` comes from the feedvisor container's environment, as in the pod.
    let env_used = RefCell::new(Vec::new());
    let env_problems = RefCell::new(Vec::new());
    let env = |name: &str| {
        env_used.borrow_mut().push(name.to_owned());
        env_value(&feedvisor, &secret, name)
            .map_err(|problem| env_problems.borrow_mut().push(problem))
            .ok()
    };
    let origin = format!("{KUBERNETES} (ConfigMap {config_map_name}, key {config_key})");
    let config = Config::from_toml_str_with_env(toml, Path::new(&origin), &env, &TransportRegistry::with_defaults())
        .unwrap_or_else(|error| {
            let why = env_problems.borrow().iter().map(|problem| format!("\n  because {problem}")).collect::<String>();
            panic!("the feedvisor config in {KUBERNETES} does not load with the feedvisor container's environment:\n{error}{why}")
        });

    Kubernetes {
        config_map_name,
        secret,
        secret_name,
        pod,
        pod_metadata,
        feedvisor,
        config_key,
        config,
        env_used: env_used.into_inner(),
    }
}

/// A probe's or annotation's port: a number, or the name of a container port.
fn resolve_port(container: &Yaml, port: &Yaml) -> Option<i64> {
    if let Some(number) = port.as_i64() {
        return Some(number);
    }
    let name = port.as_str()?;
    if let Ok(number) = name.parse() {
        return Some(number);
    }
    seq(get(container, &["ports"]))
        .iter()
        .find(|entry| entry["name"].as_str() == Some(name))
        .and_then(|entry| entry["containerPort"].as_i64())
}

#[test]
fn kubernetes_configmap_holds_a_config_the_loader_accepts() {
    let k8s = kubernetes();
    let config = &k8s.config;
    let mut problems = Vec::new();

    let listen = config.http.listen;
    if listen.ip().is_loopback() {
        problems.push(format!(
            "http.listen is {listen}: the kubelet probes the pod IP, so a loopback address fails them; use 0.0.0.0:{}",
            listen.port()
        ));
    }
    if listen.port() != default_port() {
        problems.push(format!(
            "http.listen port {} is not feedvisor's default port {}",
            listen.port(),
            default_port()
        ));
    }
    if config.feeds.len() < 2 {
        problems.push(format!("expected two feeds, found {}", config.feeds.len()));
    }
    for feed in &config.feeds {
        if feed.url.scheme() != "wss" {
            problems.push(format!("feed {} uses {}://, not wss://", feed.name, feed.url.scheme()));
        }
        if feed.topic.is_none() {
            problems.push(format!("feed {} has no topic pointer", feed.name));
        }
    }
    if !config.feeds.iter().any(|feed| !feed.required) {
        problems.push("no feed sets `required = false`".to_owned());
    }
    if !config.feeds.iter().any(|feed| feed.required) {
        problems.push("no feed is required: /readyz would not wait for any".to_owned());
    }
    if config.http.token.is_none() {
        problems.push("http.token is not set: changes would need no token".to_owned());
    }
    report(KUBERNETES, &problems);
}

#[test]
fn kubernetes_probes_and_ports_match_the_listen_address() {
    let k8s = kubernetes();
    let container = &k8s.feedvisor;
    let listen_port = i64::from(k8s.config.http.listen.port());
    let mut problems = Vec::new();

    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let Some(http_get) = get(container, &[probe, "httpGet"]) else {
            problems.push(format!("the feedvisor container has no {probe}.httpGet"));
            continue;
        };
        match http_get["path"].as_str() {
            Some(actual) if actual == path => {}
            actual => problems.push(format!("{probe}.httpGet.path is {actual:?}, expected {path}")),
        }
        match resolve_port(container, &http_get["port"]) {
            Some(port) if port == listen_port && port == i64::from(default_port()) => {}
            port => problems.push(format!(
                "{probe}.httpGet.port is {port:?}; http.listen's port is {listen_port} and the default is {}",
                default_port()
            )),
        }
        if !http_get["host"].is_badvalue() {
            problems.push(format!("{probe}.httpGet.host is set: the probe must go to the pod IP"));
        }
    }

    let ports: Vec<i64> = seq(get(container, &["ports"]))
        .iter()
        .filter_map(|entry| entry["containerPort"].as_i64())
        .collect();
    if !ports.contains(&listen_port) {
        problems.push(format!(
            "the feedvisor container's ports {ports:?} do not include http.listen's port {listen_port}"
        ));
    }

    if let Some(annotated) = k8s.pod_metadata["annotations"]["prometheus.io/port"].as_str() {
        if annotated.parse::<i64>().ok() != Some(listen_port) {
            problems.push(format!(
                "annotation prometheus.io/port is {annotated:?}, not http.listen's port {listen_port}"
            ));
        }
    }
    report(KUBERNETES, &problems);
}

#[test]
fn kubernetes_config_path_is_the_mounted_configmap_key() {
    let k8s = kubernetes();
    let container = &k8s.feedvisor;
    let mut problems = Vec::new();

    let args: Vec<&str> = seq(get(container, &["args"])).iter().filter_map(Yaml::as_str).collect();
    let config_path = match args.as_slice() {
        ["run", "--config", path] => Path::new(*path),
        other => fail(
            KUBERNETES,
            format!("feedvisor's args are {other:?}, expected [\"run\", \"--config\", PATH]"),
        ),
    };

    // The volume that is this ConfigMap, and where the container mounts it.
    let volume = seq(get(&k8s.pod, &["volumes"]))
        .iter()
        .find(|volume| volume["configMap"]["name"].as_str() == Some(k8s.config_map_name.as_str()));
    let Some(volume) = volume else {
        fail(KUBERNETES, format!("no pod volume refers to ConfigMap {}", k8s.config_map_name));
    };
    let mount = seq(get(container, &["volumeMounts"]))
        .iter()
        .find(|mount| mount["name"].as_str() == Some(name_of(volume)));
    let Some(mount) = mount else {
        fail(
            KUBERNETES,
            format!(
                "the feedvisor container does not mount volume {} (ConfigMap {})",
                name_of(volume),
                k8s.config_map_name
            ),
        );
    };
    let mount_path = Path::new(str_at(mount, "the config volumeMount", &["mountPath"]));
    if !mount["subPath"].is_badvalue() {
        problems.push(
            "the config volumeMount uses subPath: the file would never see ConfigMap edits"
                .to_owned(),
        );
    }
    if mount["readOnly"].as_bool() != Some(true) {
        problems.push("the config volumeMount is not readOnly: true".to_owned());
    }

    // The file name of the key inside the mount: the key itself, unless
    // `items` maps it to another path.
    let items = seq(get(volume, &["configMap", "items"]));
    let file_name = if items.is_empty() {
        Some(k8s.config_key.as_str())
    } else {
        items
            .iter()
            .find(|item| item["key"].as_str() == Some(k8s.config_key.as_str()))
            .and_then(|item| item["path"].as_str())
    };
    match file_name {
        Some(file_name) if config_path == mount_path.join(file_name) => {}
        Some(file_name) => problems.push(format!(
            "--config {} is not ConfigMap {}'s key {} as mounted ({})",
            config_path.display(),
            k8s.config_map_name,
            k8s.config_key,
            mount_path.join(file_name).display()
        )),
        None => problems.push(format!(
            "the config volume's items leave out key {} of ConfigMap {}",
            k8s.config_key, k8s.config_map_name
        )),
    }
    report(KUBERNETES, &problems);
}

#[test]
fn kubernetes_grace_period_outlasts_shutdown_timeout() {
    let k8s = kubernetes();
    let shutdown = k8s.config.shutdown_timeout;
    let grace =
        at(&k8s.pod, "the pod spec", &["terminationGracePeriodSeconds"]).as_i64().unwrap_or_else(
            || panic!("{KUBERNETES}: terminationGracePeriodSeconds is not a whole number"),
        );
    let grace = Duration::from_secs(u64::try_from(grace).unwrap_or(0));
    assert!(
        grace > shutdown,
        "{KUBERNETES}: terminationGracePeriodSeconds ({grace:?}) must exceed shutdown_timeout \
         ({shutdown:?}), or the kubelet kills feedvisor while subscribers drain"
    );
}

#[test]
fn kubernetes_token_comes_from_the_secret() {
    let k8s = kubernetes();
    let mut problems = Vec::new();

    let from_secret: Vec<(&str, &str)> = seq(get(&k8s.feedvisor, &["env"]))
        .iter()
        .filter_map(|var| {
            let reference = get(var, &["valueFrom", "secretKeyRef"])?;
            (reference["name"].as_str() == Some(k8s.secret_name.as_str()))
                .then(|| (name_of(var), reference["key"].as_str().unwrap_or("?")))
        })
        .collect();
    let [(variable, key)] = from_secret.as_slice() else {
        fail(
            KUBERNETES,
            format!(
                "expected one env var of the feedvisor container from Secret {}, found {from_secret:?}",
                k8s.secret_name
            ),
        );
    };
    if *variable != "FEEDVISOR_TOKEN" {
        problems.push(format!("the Secret's env var is {variable}, expected FEEDVISOR_TOKEN"));
    }
    if k8s.secret["type"].as_str() != Some("Opaque") {
        problems.push(format!("Secret {} is not of type Opaque", k8s.secret_name));
    }
    let Some(secret) = secret_value(&k8s.secret, key) else {
        fail(KUBERNETES, format!("Secret {} has no key {key}", k8s.secret_name));
    };
    if !k8s.env_used.iter().any(|name| name == variable) {
        problems.push(format!(
            "feedvisor.toml never uses ${{{variable}}}: http.token should be \"${{{variable}}}\""
        ));
    }
    // Compared, never printed.
    match &k8s.config.http.token {
        Some(token) if token.expose() == secret => {}
        Some(_) => problems.push(format!(
            "http.token does not resolve to Secret {}'s key {key}: set token = \"${{{variable}}}\"",
            k8s.secret_name
        )),
        None => problems.push("http.token is not set".to_owned()),
    }
    report(KUBERNETES, &problems);
}

#[test]
fn kubernetes_application_subscribes_on_the_sidecar_port() {
    let k8s = kubernetes();
    let listen_port = k8s.config.http.listen.port();
    let apps: Vec<&Yaml> = seq(get(&k8s.pod, &["containers"]))
        .iter()
        .filter(|container| name_of(container) != "feedvisor")
        .collect();
    let urls: Vec<(String, String)> = apps
        .iter()
        .flat_map(|container| {
            seq(get(container, &["env"])).iter().filter_map(|var| {
                let value = var["value"].as_str()?;
                value
                    .starts_with("ws://")
                    .then(|| (name_of(container).to_owned(), value.to_owned()))
            })
        })
        .collect();
    assert!(
        !urls.is_empty(),
        "{KUBERNETES}: no application container has an env value with a ws:// URL of feedvisor's /subscribe"
    );

    let mut problems = Vec::new();
    for (container, text) in &urls {
        let url = match Url::parse(text) {
            Ok(url) => url,
            Err(error) => {
                problems.push(format!("container {container}: {text:?} is not a URL: {error}"));
                continue;
            }
        };
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name == "localhost",
            None => false,
        };
        if !loopback {
            problems.push(format!(
                "container {container}: {text} does not go to the pod's loopback (127.0.0.1)"
            ));
        }
        if url.port_or_known_default() != Some(listen_port) {
            problems.push(format!(
                "container {container}: {text} is not on http.listen's port {listen_port}"
            ));
        }
        if url.path() != "/subscribe" {
            problems.push(format!(
                "container {container}: {text} has path {}, expected /subscribe",
                url.path()
            ));
        }
        let feed = url.query_pairs().find(|(key, _)| key == "feed").map(|(_, value)| value);
        match feed {
            Some(pattern) => {
                let pattern = wildmatch::WildMatch::new(&pattern);
                if !k8s.config.feeds.iter().any(|feed| pattern.matches(&feed.name)) {
                    problems.push(format!(
                        "container {container}: {text} asks for feed {pattern}, which matches no feed in the config"
                    ));
                }
            }
            None => problems.push(format!("container {container}: {text} has no feed= parameter")),
        }
    }
    report(KUBERNETES, &problems);
}

#[test]
fn kubernetes_feedvisor_container_is_locked_down() {
    let k8s = kubernetes();
    let container = &k8s.feedvisor;
    let pod_security = &k8s.pod["securityContext"];
    let security = &container["securityContext"];
    let mut problems = Vec::new();

    let run_as_non_root =
        security["runAsNonRoot"].as_bool().or(pod_security["runAsNonRoot"].as_bool());
    if run_as_non_root != Some(true) {
        problems.push("runAsNonRoot is not true (container or pod securityContext)".to_owned());
    }
    for (field, expected) in [("readOnlyRootFilesystem", true), ("allowPrivilegeEscalation", false)]
    {
        if security[field].as_bool() != Some(expected) {
            problems.push(format!("securityContext.{field} is not {expected}"));
        }
    }
    let dropped: Vec<&str> =
        seq(get(security, &["capabilities", "drop"])).iter().filter_map(Yaml::as_str).collect();
    if !dropped.contains(&"ALL") {
        problems.push(format!("securityContext.capabilities.drop is {dropped:?}, not [ALL]"));
    }
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            if get(container, &["resources", kind, resource]).is_none() {
                problems.push(format!("resources.{kind}.{resource} is not set"));
            }
        }
    }
    if let Err(problem) = env_value(container, &k8s.secret, "RUST_LOG") {
        problems.push(problem);
    }
    report(KUBERNETES, &problems);
}

// ---------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------

/// One `Key=Value` line of a unit file.
#[derive(Debug)]
struct Entry {
    section: String,
    key: String,
    value: String,
}

/// A unit file as systemd reads it: `[Section]`s of `Key=Value` lines,
/// `#` and `;` comments, a trailing `\` continuing a line.
struct Unit {
    entries: Vec<Entry>,
}

impl Unit {
    fn parse(text: &str) -> Result<Unit, String> {
        let mut entries = Vec::new();
        let mut section: Option<String> = None;
        let mut pending = String::new();
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let line = raw.trim();
            if pending.is_empty() && (line.starts_with('#') || line.starts_with(';')) {
                continue;
            }
            if let Some(continued) = line.strip_suffix('\\') {
                pending.push_str(continued);
                pending.push(' ');
                continue;
            }
            let line = std::mem::take(&mut pending) + line;
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[') {
                let name = name
                    .strip_suffix(']')
                    .ok_or_else(|| format!("line {number}: unclosed section header {line:?}"))?;
                section = Some(name.to_owned());
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("line {number}: {line:?} is not Key=Value"))?;
            let section = section
                .clone()
                .ok_or_else(|| format!("line {number}: {key} comes before any [Section]"))?;
            entries.push(Entry {
                section,
                key: key.trim().to_owned(),
                value: value.trim().to_owned(),
            });
        }
        if !pending.is_empty() {
            return Err("the last line ends with a continuation '\\'".to_owned());
        }
        Ok(Unit { entries })
    }

    fn all(&self, section: &str, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|entry| entry.section == section && entry.key == key)
            .map(|entry| entry.value.as_str())
            .collect()
    }

    /// The value in force: the last assignment wins.
    fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.all(section, key).last().copied()
    }

    fn load() -> Unit {
        Unit::parse(&read(SYSTEMD))
            .unwrap_or_else(|error| panic!("{SYSTEMD} is not a unit file: {error}"))
    }
}

fn truthy(value: &str) -> bool {
    matches!(value.to_ascii_lowercase().as_str(), "yes" | "true" | "on" | "1")
}

/// A systemd time span: a bare number is seconds ("15"), otherwise units
/// ("15s", "1min 30s", "500ms"); `None` for "infinity".
fn systemd_seconds(value: &str) -> Result<Option<Duration>, String> {
    let value = value.trim();
    if value == "infinity" {
        return Ok(None);
    }
    if let Ok(seconds) = value.parse::<u64>() {
        return Ok(Some(Duration::from_secs(seconds)));
    }
    parse_duration(value).map(Some)
}

/// The words of a command line, with systemd's prefixes (`-`, `@`, `+`, ...)
/// taken off the program.
fn command_words(line: &str) -> Vec<&str> {
    let mut words: Vec<&str> = line.split_whitespace().collect();
    if let Some(program) = words.first_mut() {
        *program = program.trim_start_matches(['-', '@', ':', '+', '!']);
    }
    words
}

fn program_name(path: &str) -> &str {
    Path::new(path).file_name().and_then(|name| name.to_str()).unwrap_or(path)
}

#[test]
fn systemd_unit_parser_reads_sections_comments_and_continuations() {
    let unit = Unit::parse(
        "# comment\n[Unit]\nDescription=x\n\n[Service]\n; another\nExecStart=/bin/a \\\n  --flag\nA=1\nA=2\n",
    )
    .expect("sample parses");
    assert_eq!(unit.get("Unit", "Description"), Some("x"));
    let exec_start = unit.get("Service", "ExecStart").expect("ExecStart");
    assert_eq!(command_words(exec_start), ["/bin/a", "--flag"]);
    assert_eq!(command_words("-/usr/bin/x run"), ["/usr/bin/x", "run"]);
    assert_eq!(unit.all("Service", "A"), ["1", "2"]);
    assert_eq!(unit.get("Service", "A"), Some("2"));
    assert!(Unit::parse("Key=value\n").is_err(), "a key outside any section is an error");
    assert_eq!(systemd_seconds("15"), Ok(Some(Duration::from_secs(15))));
    assert_eq!(systemd_seconds("15s"), Ok(Some(Duration::from_secs(15))));
    assert_eq!(systemd_seconds("1min 30s"), Ok(Some(Duration::from_secs(90))));
    assert_eq!(systemd_seconds("infinity"), Ok(None));
}

#[test]
fn systemd_unit_signals_match_feedvisor() {
    let unit = Unit::load();
    let mut problems = Vec::new();

    // SIGHUP reloads the config file.
    match unit.get("Service", "ExecReload").map(command_words) {
        Some(words) => {
            let hup = words.windows(2).any(|pair| {
                matches!(pair[0], "-HUP" | "-SIGHUP" | "-1" | "--signal=HUP" | "--signal=SIGHUP")
                    || (matches!(pair[0], "-s" | "--signal") && matches!(pair[1], "HUP" | "SIGHUP"))
            }) || words
                .iter()
                .any(|word| matches!(*word, "-HUP" | "-SIGHUP" | "--signal=HUP"));
            let to_main = matches!(words.last(), Some(&"$MAINPID" | &"${MAINPID}"));
            if words.first().map(|program| program_name(program)) != Some("kill")
                || !hup
                || !to_main
            {
                problems.push(format!(
                    "ExecReload is {:?}: feedvisor reloads on SIGHUP, so it should be `/bin/kill -HUP $MAINPID`",
                    words.join(" ")
                ));
            }
        }
        None => problems.push("no ExecReload: `systemctl reload` would not send SIGHUP".to_owned()),
    }

    match unit.get("Service", "KillSignal") {
        Some("SIGTERM" | "TERM") => {}
        other => problems
            .push(format!("KillSignal is {other:?}: feedvisor shuts down gracefully on SIGTERM")),
    }

    let shutdown = Config::default().shutdown_timeout;
    match unit.get("Service", "TimeoutStopSec").map(systemd_seconds) {
        Some(Ok(Some(stop))) if stop > shutdown => {}
        Some(Ok(None)) => {}
        Some(Ok(Some(stop))) => problems.push(format!(
            "TimeoutStopSec ({stop:?}) must exceed the default shutdown_timeout ({shutdown:?}), \
             or systemd kills feedvisor while subscribers drain"
        )),
        Some(Err(error)) => problems.push(format!("TimeoutStopSec: {error}")),
        None => problems.push(format!(
            "no TimeoutStopSec: set it above the default shutdown_timeout ({shutdown:?})"
        )),
    }

    if unit.get("Service", "Restart") != Some("on-failure") {
        problems.push(format!(
            "Restart is {:?}, expected on-failure (a clean stop exits 0)",
            unit.get("Service", "Restart")
        ));
    }
    report(SYSTEMD, &problems);
}

#[test]
fn systemd_unit_runs_feedvisor_with_a_config() {
    let unit = Unit::load();
    let mut problems = Vec::new();

    let exec_start = unit.all("Service", "ExecStart");
    match exec_start.as_slice() {
        [line] => {
            let words = command_words(line);
            match words.as_slice() {
                [program, "run", "--config", path]
                    if program_name(program) == "feedvisor" && program.starts_with('/') =>
                {
                    let path = Path::new(path);
                    if !path.is_absolute() {
                        problems.push(format!("--config {} is not an absolute path", path.display()));
                    }
                    // ProtectHome=yes hides these.
                    if ["/home", "/root", "/run/user"].iter().any(|hidden| path.starts_with(hidden)) {
                        problems.push(format!(
                            "--config {} is under a directory that ProtectHome hides",
                            path.display()
                        ));
                    }
                }
                other => problems.push(format!(
                    "ExecStart is {other:?}, expected `/PATH/feedvisor run --config /PATH/feedvisor.toml`"
                )),
            }
        }
        other => problems.push(format!("expected one ExecStart, found {other:?}")),
    }

    let expected = [
        ("Service", "Type", "simple"),
        ("Unit", "After", "network-online.target"),
        ("Unit", "Wants", "network-online.target"),
        ("Install", "WantedBy", "multi-user.target"),
    ];
    for (section, key, value) in expected {
        let values = unit.all(section, key);
        if !values.iter().any(|line| line.split_whitespace().any(|word| word == value)) {
            problems.push(format!("[{section}] {key} is {values:?}, expected {value}"));
        }
    }
    match unit.get("Service", "EnvironmentFile") {
        Some(file) if file.starts_with('-') => {}
        other => problems.push(format!(
            "EnvironmentFile is {other:?}: expected an optional one (\"-/etc/feedvisor/env\") for FEEDVISOR_TOKEN"
        )),
    }
    report(SYSTEMD, &problems);
}

#[test]
fn systemd_unit_is_sandboxed() {
    let unit = Unit::load();
    let mut problems = Vec::new();

    let switches = [
        "DynamicUser",
        "NoNewPrivileges",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectControlGroups",
        "RestrictNamespaces",
        "LockPersonality",
        "MemoryDenyWriteExecute",
    ];
    for key in switches {
        match unit.get("Service", key) {
            Some(value) if truthy(value) => {}
            other => problems.push(format!("{key} is {other:?}, expected yes")),
        }
    }
    for (key, expected) in [
        ("ProtectSystem", "strict"),
        ("SystemCallArchitectures", "native"),
        ("CapabilityBoundingSet", ""),
    ] {
        if unit.get("Service", key) != Some(expected) {
            problems
                .push(format!("{key} is {:?}, expected {expected:?}", unit.get("Service", key)));
        }
    }

    let families: BTreeSet<&str> =
        unit.get("Service", "RestrictAddressFamilies").unwrap_or("").split_whitespace().collect();
    let wanted: BTreeSet<&str> = ["AF_INET", "AF_INET6", "AF_UNIX"].into();
    if families != wanted {
        problems.push(format!(
            "RestrictAddressFamilies is {families:?}, expected {wanted:?} (feeds and the admin API need IPv4 and IPv6)"
        ));
    }
    let filters = unit.all("Service", "SystemCallFilter");
    if filters.first().copied() != Some("@system-service") {
        problems.push(format!(
            "SystemCallFilter is {filters:?}: expected an allow list starting with @system-service"
        ));
    }
    report(SYSTEMD, &problems);
}

#[test]
fn config_readme_describes_the_deployments() {
    let readme = read("config/README.md");
    for file in ["kubernetes.yaml", "feedvisor.service"] {
        assert!(readme.contains(file), "config/README.md does not describe {file}");
    }
}
