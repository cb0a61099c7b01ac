//! The admin HTTP server: metrics, health and feed status.
//!
//! Bound to 127.0.0.1 by default (`[http].listen`); one worker thread is
//! plenty for an admin API and keeps the thread count of the sidecar small.

use std::net::SocketAddr;

use actix::Addr;
use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpResponse, HttpServer};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::supervisor::{GetFeedStatus, GetStatus, Supervisor};

/// What the handlers share.
#[derive(Clone)]
struct AppState {
    supervisor: Addr<Supervisor>,
    metrics: PrometheusHandle,
}

/// The admin server, running.
pub struct AdminServer {
    /// The address it is bound to (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// Stops the server.
    pub handle: ServerHandle,
}

/// Binds the admin server to `listen` and starts serving on the current actix system.
pub fn start(
    listen: SocketAddr,
    supervisor: Addr<Supervisor>,
    metrics: PrometheusHandle,
) -> std::io::Result<AdminServer> {
    let state = AppState { supervisor, metrics };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .route("/metrics", web::get().to(render_metrics))
            .route("/healthz", web::get().to(healthz))
            .route("/feeds", web::get().to(list_feeds))
            .route("/feeds/{name}", web::get().to(get_feed))
    })
    .workers(1)
    .disable_signals()
    .bind(listen)?;
    let addr = server.addrs().first().copied().unwrap_or(listen);
    let server: Server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    tracing::info!(%addr, "admin HTTP server listening");
    Ok(AdminServer { addr, handle })
}

async fn render_metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn list_feeds(state: web::Data<AppState>) -> HttpResponse {
    match state.supervisor.send(GetStatus).await {
        Ok(feeds) => HttpResponse::Ok().json(feeds),
        Err(_) => unavailable(),
    }
}

async fn get_feed(state: web::Data<AppState>, name: web::Path<String>) -> HttpResponse {
    let name = name.into_inner();
    match state.supervisor.send(GetFeedStatus { name: name.clone() }).await {
        Ok(Some(feed)) => HttpResponse::Ok().json(feed),
        Ok(None) => {
            HttpResponse::NotFound().json(json!({ "error": format!("no feed named {name:?}") }))
        }
        Err(_) => unavailable(),
    }
}

fn unavailable() -> HttpResponse {
    HttpResponse::ServiceUnavailable().json(json!({ "error": "the supervisor is shutting down" }))
}
