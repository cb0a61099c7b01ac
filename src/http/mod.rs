//! The admin HTTP server: metrics, health, feed status and feed changes,
//! and the route of the `/subscribe` WebSocket endpoint (the sink in `sink/subscribe.rs`).
//!
//! Bound to 127.0.0.1 by default (`[http].listen`); one worker thread is
//! plenty for an admin API and keeps the thread count of the sidecar small.
//! It serves https when `[http.tls]` is set, holds at most
//! `[http].max_connections` connections (more wait in the backlog), which
//! leaves room beyond `/subscribe`'s clients for health checks and scrapes
//! (`limits.rs`).
//! When `[http].token` is set, every request that changes something, and
//! `/subscribe` (which streams every feed), needs `Authorization: Bearer
//! <token>` (`/subscribe` also takes `?token=`, for browsers, which cannot set
//! headers on a WebSocket); other reads stay open. Tokens are compared in
//! constant time.

mod feeds;
mod hosts;
pub(crate) mod limits;
mod send;

use std::net::SocketAddr;
use std::time::Duration;

use crate::metrics::MetricsHandle;
use actix::Addr;
use actix_web::dev::{Server, ServerHandle};
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use rustls::ServerConfig;
use serde_json::json;

use crate::cluster::{Cluster, GetClusterFeeds, GetClusterView};
use crate::config::{HttpConfig, Secret};
use crate::router::Router;
use crate::sink::subscribe::{self, SubscribeEndpoint};
use crate::supervisor::{GetFeedStatus, GetReadiness, GetStatus, Supervisor};
use crate::venue::hosts::HostRegistry;

/// The largest request body read (a feed as JSON, a message to send).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// How long `/healthz` waits for the supervisor to answer.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// What the handlers share.
#[derive(Clone)]
struct AppState {
    supervisor: Addr<Supervisor>,
    metrics: MetricsHandle,
    /// The bearer token changes need, if one is set.
    token: Option<Secret>,
    /// In a `[cluster]`: feed changes go to the shared list, and `/feeds` shows every owner.
    cluster: Option<Addr<Cluster>>,
    /// The `[[hosts]]` registry, read by `GET /hosts` without messaging anyone.
    hosts: std::sync::Arc<HostRegistry>,
}

/// The admin server, running.
pub(crate) struct AdminServer {
    /// The address it is bound to (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// Stops the server.
    pub handle: ServerHandle,
    /// `/subscribe`, whose clients are told to go before the server stops.
    subscribe: SubscribeEndpoint,
}

impl AdminServer {
    /// Closes the `/subscribe` clients (1001), then stops the server gracefully.
    pub(crate) async fn stop(&self) {
        self.subscribe.close_all();
        self.handle.stop(true).await;
    }
}

/// Binds the admin server to `[http].listen` and starts serving on the current actix system.
pub(crate) fn start(
    config: &HttpConfig,
    supervisor: Addr<Supervisor>,
    router: Addr<Router>,
    metrics: MetricsHandle,
    cluster: Option<Addr<Cluster>>,
    hosts: std::sync::Arc<HostRegistry>,
) -> std::io::Result<AdminServer> {
    let state = AppState { supervisor, metrics, token: config.token.clone(), cluster, hosts };
    let subscribe = SubscribeEndpoint::new(&config.subscribe, router);
    let endpoint = subscribe.clone();
    let connections = limits::ConnectionCount::new(config.max_connections);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .app_data(web::Data::new(endpoint.clone()))
            .app_data(web::PayloadConfig::new(MAX_BODY))
            .app_data(web::JsonConfig::default().limit(MAX_BODY).error_handler(feeds::json_error))
            .route("/metrics", web::get().to(render_metrics))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/reload", web::post().to(feeds::reload))
            .route("/feeds", web::get().to(list_feeds))
            .route("/cluster", web::get().to(cluster_view))
            .route("/hosts", web::get().to(hosts::list_hosts))
            .route("/feeds", web::post().to(feeds::add))
            .route("/feeds/{name}", web::get().to(get_feed))
            .route("/feeds/{name}", web::put().to(feeds::replace))
            .route("/feeds/{name}", web::delete().to(feeds::remove))
            .route("/feeds/{name}/reconnect", web::post().to(feeds::reconnect))
            .route("/feeds/{name}/rotate", web::post().to(feeds::rotate))
            .route("/feeds/{name}/send", web::post().to(send::send_to_feed))
            .route("/subscribe", web::get().to(subscribe_with_token))
    })
    .on_connect(move |connection, data| {
        subscribe::remember_socket(connection, data);
        connections.opened(data);
    })
    .workers(1)
    .max_connections(config.max_connections)
    .backlog(config.backlog)
    .disable_signals();
    let server = match &config.tls {
        Some(tls) => {
            let tls_config = tls.server_config().map_err(std::io::Error::other)?;
            server.bind_rustls_0_23(config.listen, ServerConfig::clone(&tls_config))?
        }
        None => server.bind(config.listen)?,
    };
    let addr = server.addrs().first().copied().unwrap_or(config.listen);
    let server: Server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    if config.token.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "admin HTTP server listening on a non-loopback address without a token \
             (allow_public = true): anyone who reaches it can change feeds and read them"
        );
    } else {
        tracing::info!(%addr, token = config.token.is_some(), tls = config.tls.is_some(), "admin HTTP server listening");
    }
    Ok(AdminServer { addr, handle, subscribe })
}

/// A JSON error answer: `{"error": "..."}` plus optional details.
fn error_body(
    mut response: actix_web::HttpResponseBuilder,
    message: impl ToString,
) -> HttpResponse {
    response.json(json!({ "error": message.to_string() }))
}

/// `/subscribe`, once the token (when one is set) is presented.
async fn subscribe_with_token(
    state: web::Data<AppState>,
    request: HttpRequest,
    payload: web::Payload,
    endpoint: web::Data<SubscribeEndpoint>,
) -> HttpResponse {
    if let Some(refused) = token_refusal(&state, &request, true) {
        return refused;
    }
    subscribe::subscribe(request, payload, endpoint).await
}

/// Checks the bearer token of a request that changes something: the refusal, if refused.
fn refusal(state: &AppState, request: &HttpRequest) -> Option<HttpResponse> {
    token_refusal(state, request, false)
}

/// The token a request presents: its `Authorization: Bearer` header, or
/// (when `in_query`) its `token` query parameter.
fn presented_token(request: &HttpRequest, in_query: bool) -> Option<String> {
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_owned);
    header.or_else(|| {
        in_query
            .then(|| {
                url::form_urlencoded::parse(request.query_string().as_bytes())
                    .find(|(key, _)| key == "token")
                    .map(|(_, value)| value.into_owned())
            })
            .flatten()
    })
}

/// The refusal of a request without the right token, when a token is set.
fn token_refusal(state: &AppState, request: &HttpRequest, in_query: bool) -> Option<HttpResponse> {
    let token = state.token.as_ref()?;
    let presented = presented_token(request, in_query);
    let presented = presented.as_deref();
    match presented {
        Some(presented) if constant_time_eq(presented.as_bytes(), token.expose().as_bytes()) => {
            None
        }
        Some(_) => Some(error_body(HttpResponse::Unauthorized(), "the bearer token is wrong")),
        None if in_query => Some(error_body(
            HttpResponse::Unauthorized(),
            "/subscribe needs an Authorization: Bearer <token> header or ?token= ([http].token is set)",
        )),
        None => Some(error_body(
            HttpResponse::Unauthorized(),
            "this change needs an Authorization: Bearer <token> header ([http].token is set)",
        )),
    }
}

/// Compares without an early exit, so timing does not tell how much of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

async fn render_metrics(state: web::Data<AppState>) -> HttpResponse {
    state.hosts.publish_gauges();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

/// Healthy while the supervisor actor answers.
async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    match actix_rt::time::timeout(HEALTH_TIMEOUT, state.supervisor.send(GetReadiness)).await {
        Ok(Ok(_)) => HttpResponse::Ok().json(json!({ "status": "ok" })),
        _ => error_body(HttpResponse::ServiceUnavailable(), "the supervisor does not answer"),
    }
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.supervisor.send(GetReadiness).await {
        Ok(readiness) if readiness.ready => HttpResponse::Ok().json(readiness),
        Ok(readiness) => HttpResponse::ServiceUnavailable().json(readiness),
        Err(_) => unavailable(),
    }
}

async fn list_feeds(state: web::Data<AppState>) -> HttpResponse {
    if let Some(cluster) = &state.cluster {
        return match cluster.send(GetClusterFeeds).await {
            Ok(feeds) => HttpResponse::Ok().json(feeds),
            Err(_) => unavailable(),
        };
    }
    match state.supervisor.send(GetStatus).await {
        Ok(feeds) => HttpResponse::Ok().json(feeds),
        Err(_) => unavailable(),
    }
}

/// `GET /cluster`: replicas, their feeds and lease ages; 404 outside a cluster.
async fn cluster_view(state: web::Data<AppState>) -> HttpResponse {
    let Some(cluster) = &state.cluster else {
        return error_body(
            HttpResponse::NotFound(),
            "this sidecar runs alone: add a [cluster] section to share feeds between replicas",
        );
    };
    match cluster.send(GetClusterView).await {
        Ok(view) => HttpResponse::Ok().json(view),
        Err(_) => unavailable(),
    }
}

async fn get_feed(state: web::Data<AppState>, name: web::Path<String>) -> HttpResponse {
    let name = name.into_inner();
    if let Some(cluster) = &state.cluster {
        return match cluster.send(GetClusterFeeds).await {
            Ok(feeds) => match feeds.into_iter().find(|feed| feed.name == name) {
                Some(feed) => HttpResponse::Ok().json(feed),
                None => error_body(HttpResponse::NotFound(), format!("no feed named {name:?}")),
            },
            Err(_) => unavailable(),
        };
    }
    match state.supervisor.send(GetFeedStatus { name: name.clone() }).await {
        Ok(Some(feed)) => HttpResponse::Ok().json(feed),
        Ok(None) => error_body(HttpResponse::NotFound(), format!("no feed named {name:?}")),
        Err(_) => unavailable(),
    }
}

fn unavailable() -> HttpResponse {
    error_body(HttpResponse::ServiceUnavailable(), "the supervisor is shutting down")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison_is_exact() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cret-and-more"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
