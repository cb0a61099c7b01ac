//! `POST /feeds/{name}/send`: the request body goes upstream as one message.

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use feedvisor_transport_api::Outbound;
use serde_json::json;

use super::{refusal, AppState};
use crate::connection::queue::OutboundQueueError;
use crate::connection::{send_in_pieces, SendError, SendOutcome};
use crate::supervisor::{GetConnection, SendToFeed};

/// Why a request body cannot be sent as a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum BodyError {
    /// A content type that is neither text nor binary.
    #[error("content type {0:?} is not sent: use text/*, application/json, application/x-www-form-urlencoded or application/octet-stream")]
    UnsupportedType(String),
    /// A text body that is not UTF-8.
    #[error("the body is not valid UTF-8 ({0}): send binary data as application/octet-stream")]
    NotUtf8(std::str::Utf8Error),
}

impl BodyError {
    fn response(&self) -> HttpResponse {
        let mut response = match self {
            BodyError::UnsupportedType(_) => HttpResponse::UnsupportedMediaType(),
            BodyError::NotUtf8(_) => HttpResponse::BadRequest(),
        };
        response.json(json!({ "error": self.to_string() }))
    }
}

/// Reads a request body as the message to send: text or binary by content type.
pub(super) fn outbound_from_body(
    content_type: Option<&str>,
    body: Bytes,
) -> Result<Outbound, BodyError> {
    let essence = content_type
        .map(|value| value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    let text = match essence.as_deref() {
        None => true,
        Some("application/octet-stream") => false,
        Some("application/json" | "application/x-www-form-urlencoded") => true,
        Some(other) if other.starts_with("text/") => true,
        Some(other) => return Err(BodyError::UnsupportedType(other.to_owned())),
    };
    if !text {
        return Ok(Outbound::Binary(body));
    }
    match std::str::from_utf8(&body) {
        Ok(_) => Ok(Outbound::Text(body)),
        Err(error) => Err(BodyError::NotUtf8(error)),
    }
}

pub(super) async fn send_to_feed(
    state: web::Data<AppState>,
    name: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    if let Some(refused) = refusal(&state, &request) {
        return refused;
    }
    let feed = name.into_inner();
    let content_type = request.headers().get(CONTENT_TYPE).and_then(|value| value.to_str().ok());
    if is_binary(content_type) {
        // Binary bodies go out as they arrive, in fragments, never held whole.
        return match send_streamed(&state, &feed, payload).await {
            Ok(bytes) => HttpResponse::Ok().json(json!({ "status": "sent", "bytes": bytes })),
            Err(error) => send_error(&error),
        };
    }
    let body = match payload.to_bytes_limited(super::MAX_BODY).await {
        Ok(Ok(body)) => body,
        Ok(Err(error)) => {
            let message = format!("reading the body failed: {error}");
            return HttpResponse::BadRequest().json(json!({ "error": message }));
        }
        Err(_) => {
            let message = format!(
                "a text body over {} bytes: send large data as application/octet-stream",
                super::MAX_BODY
            );
            return HttpResponse::PayloadTooLarge().json(json!({ "error": message }));
        }
    };
    let message = match outbound_from_body(content_type, body) {
        Ok(message) => message,
        Err(error) => return error.response(),
    };
    let send = SendToFeed { feed, message };
    match state.supervisor.send(send).await.unwrap_or(Err(SendError::Unavailable)) {
        Ok(outcome @ SendOutcome::Sent) => HttpResponse::Ok().json(outcome),
        Ok(outcome) => HttpResponse::Accepted().json(outcome),
        Err(error) => send_error(&error),
    }
}

fn is_binary(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/octet-stream"))
}

/// The answer to a refused send. A full queue or backlog (429) also names
/// what waits and the limits, so that a client can tell how far over it is.
fn send_error(error: &SendError) -> HttpResponse {
    let full = match error {
        SendError::Queue(OutboundQueueError::Full(fill)) => Some(("queue", fill)),
        SendError::Backlog(fill) => Some(("backlog", fill)),
        _ => None,
    };
    if let Some((what, fill)) = full {
        return HttpResponse::TooManyRequests().json(json!({
            "error": error.to_string(),
            "full": what,
            "messages": fill.messages,
            "bytes": fill.bytes,
            "max_messages": fill.max_messages,
            "max_bytes": fill.max_bytes,
        }));
    }
    let mut response = match error {
        SendError::UnknownFeed(_) => HttpResponse::NotFound(),
        SendError::Queue(OutboundQueueError::TooLarge { .. }) => HttpResponse::PayloadTooLarge(),
        SendError::Queue(OutboundQueueError::Full(_)) | SendError::Backlog(_) => {
            HttpResponse::TooManyRequests()
        }
        SendError::NotData | SendError::OutOfOrder(_) => HttpResponse::BadRequest(),
        SendError::Busy => HttpResponse::Conflict(),
        SendError::FeedFailed
        | SendError::Unavailable
        | SendError::NotConnected
        | SendError::Interrupted => HttpResponse::ServiceUnavailable(),
    };
    response.json(json!({ "error": error.to_string() }))
}

/// Sends a body upstream as one binary message in fragments; returns the bytes sent.
async fn send_streamed(
    state: &AppState,
    feed: &str,
    payload: web::Payload,
) -> Result<u64, SendError> {
    let lookup = GetConnection { name: feed.to_owned() };
    let actor = state.supervisor.send(lookup).await.map_err(|_| SendError::Unavailable)??;
    send_in_pieces(actor, payload).await
}
