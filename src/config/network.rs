//! How a feed reaches its host: the `tls` table and `proxy`, in `[defaults]`
//! and per feed (a feed's `tls` table overrides `[defaults.tls]` field by
//! field; its `proxy` replaces the default's). Which schemes use them is the
//! transports' business: they judge the result (files read, pins decoded).

use std::path::Path;

use super::env::has_reference;
use super::raw::RawTls;
use super::scope::{Context, Scope};
use feedvisor_transport_api::{HttpProxy, ProxyOptions, TlsOptions};

/// `raw` over `inherited`, field by field; files resolved against the
/// config's directory and checked to exist (the transport parses them).
pub(crate) fn tls(
    raw: Option<&RawTls>,
    inherited: &TlsOptions,
    context: &Context<'_>,
    scope: &mut Scope<'_>,
) -> TlsOptions {
    let mut tls = inherited.clone();
    let Some(raw) = raw else { return tls };
    if let Some(roots) = raw.roots {
        tls.roots = roots.into();
    }
    for (field, written, target) in [
        ("tls.ca_file", &raw.ca_file, &mut tls.ca_file),
        ("tls.client_cert", &raw.client_cert, &mut tls.client_cert),
        ("tls.client_key", &raw.client_key, &mut tls.client_key),
    ] {
        if let Some(file) = written.as_deref() {
            let path = context.base_dir.join(file);
            check_file(field, file, &path, context, scope);
            *target = Some(path);
        }
    }
    if let Some(name) = &raw.server_name {
        if name.trim().is_empty() {
            scope.error("tls.server_name", "must not be empty");
        }
        tls.server_name = Some(name.trim().to_owned());
    }
    if let Some(pins) = &raw.pin_sha256 {
        tls.pin_sha256 = pins.clone();
    }
    if let Some(skip) = raw.insecure_skip_verify {
        tls.insecure_skip_verify = skip;
    }
    tls
}

fn check_file(
    field: &str,
    written: &str,
    path: &Path,
    context: &Context<'_>,
    scope: &mut Scope<'_>,
) {
    if written.is_empty() {
        scope.error(field, "must not be empty");
    } else if !(context.file_exists)(path) {
        scope.error(field, format!("no such file: {}", path.display()));
    }
}

/// `proxy = "http://user:pass@host:port" | "none"`, `${VAR}` expanded;
/// absent inherits (`[defaults]`, else the environment at connect time).
pub(crate) fn proxy(
    raw: Option<&str>,
    inherited: &ProxyOptions,
    context: &Context<'_>,
    scope: &mut Scope<'_>,
) -> ProxyOptions {
    let Some(template) = raw else { return inherited.clone() };
    if template.trim() == "none" {
        return ProxyOptions::Direct;
    }
    let Some(text) = scope.expand("proxy", template, context.env) else {
        return inherited.clone();
    };
    match HttpProxy::parse(&text) {
        Ok(proxy) => ProxyOptions::Http(proxy),
        Err(message) => {
            let hint = if has_reference(template) { " (after ${VAR} expansion)" } else { "" };
            scope.error(
                "proxy",
                format!("{message}{hint}: use \"http://[user:password@]host:port\" or \"none\""),
            );
            inherited.clone()
        }
    }
}

/// A proxy as `check` and `/feeds` show it: credentials replaced by `***`.
pub(crate) fn show_proxy(proxy: &ProxyOptions) -> Option<String> {
    match proxy {
        ProxyOptions::Environment => None,
        ProxyOptions::Direct => Some("none".to_owned()),
        ProxyOptions::Http(HttpProxy { username: None, .. }) => {
            proxy_addr(proxy).map(|addr| format!("http://{addr}"))
        }
        ProxyOptions::Http(_) => proxy_addr(proxy).map(|addr| format!("http://***@{addr}")),
    }
}

fn proxy_addr(proxy: &ProxyOptions) -> Option<String> {
    match proxy {
        ProxyOptions::Http(proxy) => Some(proxy.addr()),
        _ => None,
    }
}
