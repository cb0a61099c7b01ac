//! Changes through HTTP: `POST /feeds`, `PUT` and `DELETE /feeds/{name}`,
//! `POST /feeds/{name}/reconnect`, `POST /reload`.

use actix_web::error::JsonPayloadError;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{error_body, refusal, unavailable, AppState};
use crate::cluster::{FeedChange, FeedChangeError};
use crate::supervisor::{
    AddFeed, ChangeError, ReconnectFeed, Reload, RemoveFeed, ReplaceFeed, RotateFeed, Supervisor,
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
        ChangeError::UnknownFeed(_) | ChangeError::UnknownLeg { .. } => {
            error_body(HttpResponse::NotFound(), &error)
        }
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

/// In a cluster, writes a change to the shared feed list (every replica
/// sees it; the feed's owner runs it). `None` outside a cluster.
async fn cluster_change(
    state: &AppState,
    request: &HttpRequest,
    change: impl FnOnce() -> FeedChange,
    success: fn() -> actix_web::HttpResponseBuilder,
) -> Option<HttpResponse> {
    let cluster = state.cluster.as_ref()?;
    if let Some(refused) = refusal(state, request) {
        return Some(refused);
    }
    Some(match cluster.send(change()).await {
        Ok(Ok(answer)) => success().json(answer),
        Ok(Err(FeedChangeError::Change(error))) => change_error(error),
        Ok(Err(error @ FeedChangeError::BadName(_))) => {
            error_body(HttpResponse::BadRequest(), &error)
        }
        Ok(Err(error @ FeedChangeError::TooLarge { .. })) => {
            error_body(HttpResponse::PayloadTooLarge(), &error)
        }
        Ok(Err(error @ FeedChangeError::Unavailable(_))) => {
            error_body(HttpResponse::ServiceUnavailable(), &error)
        }
        Err(_) => unavailable(),
    })
}

pub(super) async fn add(
    state: web::Data<AppState>,
    request: HttpRequest,
    feed: web::Json<serde_json::Value>,
) -> HttpResponse {
    let feed = feed.into_inner();
    if let Some(answer) =
        cluster_change(&state, &request, || FeedChange::Add(feed.clone()), HttpResponse::Created)
            .await
    {
        return answer;
    }
    let add = AddFeed { feed };
    change(&state, &request, add, HttpResponse::Created, to_json).await
}

pub(super) async fn replace(
    state: web::Data<AppState>,
    request: HttpRequest,
    name: web::Path<String>,
    feed: web::Json<serde_json::Value>,
) -> HttpResponse {
    let (name, feed) = (name.into_inner(), feed.into_inner());
    let shared = || FeedChange::Replace(name.clone(), feed.clone());
    if let Some(answer) = cluster_change(&state, &request, shared, HttpResponse::Ok).await {
        return answer;
    }
    let replace = ReplaceFeed { name, feed };
    change(&state, &request, replace, HttpResponse::Ok, to_json).await
}

pub(super) async fn remove(
    state: web::Data<AppState>,
    request: HttpRequest,
    name: web::Path<String>,
) -> HttpResponse {
    let name = name.into_inner();
    let shared = || FeedChange::Remove(name.clone());
    if let Some(answer) = cluster_change(&state, &request, shared, HttpResponse::Ok).await {
        return answer;
    }
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

/// `POST /feeds/{name}/rotate[?leg=N]`: a new connection (of leg N, or of
/// every leg) opens beside the old one, which closes once the new one delivers.
pub(super) async fn rotate(
    state: web::Data<AppState>,
    request: HttpRequest,
    name: web::Path<String>,
) -> HttpResponse {
    let name = name.into_inner();
    let leg = match rotate_leg(request.query_string()) {
        Ok(leg) => leg,
        Err(message) => return error_body(HttpResponse::BadRequest(), &message),
    };
    let rotate = RotateFeed { name: name.clone(), leg };
    let answer = |()| json!({ "rotating": name, "leg": leg });
    change(&state, &request, rotate, HttpResponse::Accepted, answer).await
}

/// The `leg` of a rotate request's query, if any.
fn rotate_leg(query: &str) -> Result<Option<usize>, String> {
    let mut leg = None;
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair.split_once('=') {
            Some(("leg", value)) => {
                let index = value.parse().map_err(|_| {
                    format!("leg={value:?} is not a leg's index (a whole number from 0)")
                })?;
                if leg.replace(index).is_some() {
                    return Err("leg is given twice: name one leg, or none for every leg".into());
                }
            }
            _ => return Err(format!("unknown query parameter {pair:?}: only leg=N is taken")),
        }
    }
    Ok(leg)
}

pub(super) async fn reload(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    change(&state, &request, Reload, HttpResponse::Ok, to_json).await
}

#[cfg(test)]
mod tests {
    use super::rotate_leg;

    #[test]
    fn a_rotate_query_names_one_leg_or_none() {
        assert_eq!(rotate_leg(""), Ok(None));
        assert_eq!(rotate_leg("leg=2"), Ok(Some(2)));
        for bad in ["leg=abc", "leg=-1", "leg=", "leg=18446744073709551616", "legs=1", "leg"] {
            assert!(rotate_leg(bad).is_err(), "{bad} accepted");
        }
        let twice = rotate_leg("leg=1&leg=0").expect_err("two legs");
        assert!(twice.contains("twice"), "{twice}");
    }
}
