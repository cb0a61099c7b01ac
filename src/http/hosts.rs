//! `GET /hosts`: every `[[hosts]]` entry with its connect budget, the
//! attempts in its current window, its cool-down and the feeds waiting for
//! it. Read from the registry directly, so a busy supervisor never delays it.

use actix_rt::time::Instant;
use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;

/// `GET /hosts`: `{"hosts": [...]}`.
pub(super) async fn list_hosts(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "hosts": state.hosts.status(Instant::now()) }))
}
