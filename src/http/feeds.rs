//! Changes through HTTP: `POST /feeds`, `PUT` and `DELETE /feeds/{name}`,
//! `POST /feeds/{name}/reconnect`, `POST /reload`.

use actix_web::error::JsonPayloadError;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{error_body, refusal, unavailable, AppState};
use crate::supervisor::{AddFeed, ChangeError, ReconnectFeed, Reload, RemoveFeed, ReplaceFeed};

/// Turns a change error into its status: 400 invalid, 404 unknown, 409 exists, 503 shutting down.
fn change_error(error: ChangeError) -> HttpResponse {
    match &error {
        ChangeError::Invalid(invalid) => HttpResponse::BadRequest().json(json!({
            "error": error.to_string(),
            "fields": invalid.errors.iter().map(|field| json!({
                "path": field.path,
                "message": field.message,
            })).collect::<Vec<_>>(),
        })),
        ChangeError::NameMismatch { .. } => error_body(HttpResponse::BadRequest(), &error),
        ChangeError::UnknownFeed(_) => error_body(HttpResponse::NotFound(), &error),
        ChangeError::Exists(_) => error_body(HttpResponse::Conflict(), &error),
        ChangeError::NoConfigFile => error_body(HttpResponse::Conflict(), &error),
        ChangeError::ShuttingDown => error_body(HttpResponse::ServiceUnavailable(), &error),
    }
}

/// A body that is not JSON gets a JSON 400 answer like every other error.
pub(super) fn json_error(error: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    let message = format!("the body is not a JSON feed: {error}");
    let response = error_body(HttpResponse::BadRequest(), &message);
    actix_web::error::InternalError::from_response(message, response).into()
}

pub(super) async fn add(
    state: web::Data<AppState>,
    request: HttpRequest,
    feed: web::Json<serde_json::Value>,
) -> HttpResponse {
    if let Some(refused) = refusal(&state, &request) {
        return refused;
    }
    match state.supervisor.send(AddFeed { feed: feed.into_inner() }).await {
        Ok(Ok(status)) => HttpResponse::Created().json(status),
        Ok(Err(error)) => change_error(error),
        Err(_) => unavailable(),
    }
}

pub(super) async fn replace(
    state: web::Data<AppState>,
    request: HttpRequest,
    name: web::Path<String>,
    feed: web::Json<serde_json::Value>,
) -> HttpResponse {
    if let Some(refused) = refusal(&state, &request) {
        return refused;
    }
    let replace = ReplaceFeed { name: name.into_inner(), feed: feed.into_inner() };
    match state.supervisor.send(replace).await {
        Ok(Ok(status)) => HttpResponse::Ok().json(status),
        Ok(Err(error)) => change_error(error),
        Err(_) => unavailable(),
    }
}

pub(super) async fn remove(
    state: web::Data<AppState>,
    request: HttpRequest,
    name: web::Path<String>,
) -> HttpResponse {
    if let Some(refused) = refusal(&state, &request) {
        return refused;
    }
    let name = name.into_inner();
    match state.supervisor.send(RemoveFeed { name: name.clone() }).await {
        Ok(Ok(())) => HttpResponse::Ok().json(json!({ "removed": name })),
        Ok(Err(error)) => change_error(error),
        Err(_) => unavailable(),
    }
}

pub(super) async fn reconnect(
    state: web::Data<AppState>,
    request: HttpRequest,
    name: web::Path<String>,
) -> HttpResponse {
    if let Some(refused) = refusal(&state, &request) {
        return refused;
    }
    let name = name.into_inner();
    match state.supervisor.send(ReconnectFeed { name: name.clone() }).await {
        Ok(Ok(())) => HttpResponse::Accepted().json(json!({ "reconnecting": name })),
        Ok(Err(error)) => change_error(error),
        Err(_) => unavailable(),
    }
}

pub(super) async fn reload(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    if let Some(refused) = refusal(&state, &request) {
        return refused;
    }
    match state.supervisor.send(Reload).await {
        Ok(Ok(report)) => HttpResponse::Ok().json(report),
        Ok(Err(error)) => change_error(error),
        Err(_) => unavailable(),
    }
}
