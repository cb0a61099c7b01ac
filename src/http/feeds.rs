//! Changes through HTTP: `POST /feeds`, `PUT` and `DELETE /feeds/{name}`,
//! `POST /feeds/{name}/reconnect`, `POST /reload`.

use actix_web::error::JsonPayloadError;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{error_body, refusal, unavailable, AppState};
use crate::supervisor::{
    AddFeed, ChangeError, ReconnectFeed, Reload, RemoveFeed, ReplaceFeed, Supervisor,
};

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

/// Checks the token, asks the supervisor for a change, and answers with
/// `success` and the change's result, or the error's status.
async fn change<M, T>(
    state: &AppState,
    request: &HttpRequest,
    message: M,
    success: fn() -> actix_web::HttpResponseBuilder,
    answer: impl FnOnce(T) -> serde_json::Value,
) -> HttpResponse
where
    M: actix::Message<Result = Result<T, ChangeError>> + Send + 'static,
    M::Result: Send,
    Supervisor: actix::Handler<M>,
{
    if let Some(refused) = refusal(state, request) {
        return refused;
    }
    match state.supervisor.send(message).await {
        Ok(Ok(result)) => success().json(answer(result)),
        Ok(Err(error)) => change_error(error),
        Err(_) => unavailable(),
    }
}

fn to_json<T: serde::Serialize>(value: T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

pub(super) async fn add(
    state: web::Data<AppState>,
    request: HttpRequest,
    feed: web::Json<serde_json::Value>,
) -> HttpResponse {
    let add = AddFeed { feed: feed.into_inner() };
    change(&state, &request, add, HttpResponse::Created, to_json).await
}

pub(super) async fn replace(
    state: web::Data<AppState>,
    request: HttpRequest,
    name: web::Path<String>,
    feed: web::Json<serde_json::Value>,
) -> HttpResponse {
    let replace = ReplaceFeed { name: name.into_inner(), feed: feed.into_inner() };
    change(&state, &request, replace, HttpResponse::Ok, to_json).await
}

pub(super) async fn remove(
    state: web::Data<AppState>,
    request: HttpRequest,
    name: web::Path<String>,
) -> HttpResponse {
    let name = name.into_inner();
    let remove = RemoveFeed { name: name.clone() };
    change(&state, &request, remove, HttpResponse::Ok, |()| json!({ "removed": name })).await
}

pub(super) async fn reconnect(
    state: web::Data<AppState>,
    request: HttpRequest,
    name: web::Path<String>,
) -> HttpResponse {
    let name = name.into_inner();
    let reconnect = ReconnectFeed { name: name.clone() };
    let answer = |()| json!({ "reconnecting": name });
    change(&state, &request, reconnect, HttpResponse::Accepted, answer).await
}

pub(super) async fn reload(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    change(&state, &request, Reload, HttpResponse::Ok, to_json).await
}
