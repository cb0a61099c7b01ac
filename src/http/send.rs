//! `POST /feeds/{name}/send`: the request body goes upstream as one message.

use actix_web::http::header::CONTENT_TYPE;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use feedvisor_transport_api::Outbound;
use serde_json::json;

use super::{refusal, AppState};
use crate::connection::queue::QueueError;
use crate::connection::{SendError, SendOutcome};
use crate::supervisor::SendToFeed;

/// Why a request body cannot be sent as a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
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
pub fn outbound_from_body(content_type: Option<&str>, body: Bytes) -> Result<Outbound, BodyError> {
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
    body: Bytes,
) -> HttpResponse {
    if let Some(refused) = refusal(&state, &request) {
        return refused;
    }
    let content_type = request.headers().get(CONTENT_TYPE).and_then(|value| value.to_str().ok());
    let message = match outbound_from_body(content_type, body) {
        Ok(message) => message,
        Err(error) => return error.response(),
    };
    let send = SendToFeed { feed: name.into_inner(), message };
    let result = state.supervisor.send(send).await.unwrap_or(Err(SendError::Unavailable));
    match result {
        Ok(outcome @ SendOutcome::Sent) => HttpResponse::Ok().json(outcome),
        Ok(outcome) => HttpResponse::Accepted().json(outcome),
        Err(error) => {
            let mut response = match &error {
                SendError::UnknownFeed(_) => HttpResponse::NotFound(),
                SendError::Queue(QueueError::TooLarge { .. }) => HttpResponse::PayloadTooLarge(),
                SendError::Queue(QueueError::Full { .. }) => HttpResponse::TooManyRequests(),
                SendError::NotData => HttpResponse::BadRequest(),
                SendError::FeedFailed | SendError::Unavailable => {
                    HttpResponse::ServiceUnavailable()
                }
            };
            response.json(json!({ "error": error.to_string() }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_picks_text_or_binary() {
        let body = Bytes::from_static(b"{\"op\":1}");
        for text_type in [None, Some("text/plain; charset=utf-8"), Some("application/json")] {
            assert_eq!(
                outbound_from_body(text_type, body.clone()).ok(),
                Some(Outbound::Text(body.clone()))
            );
        }
        let form = Some("application/x-www-form-urlencoded");
        assert!(matches!(outbound_from_body(form, body.clone()), Ok(Outbound::Text(_))));
        let binary = Some("application/octet-stream");
        assert_eq!(outbound_from_body(binary, body.clone()).ok(), Some(Outbound::Binary(body)));
    }

    #[test]
    fn invalid_utf8_as_text_and_unknown_types_are_refused() {
        let bad = Bytes::from_static(&[0xFF, 0xFE]);
        let refused = outbound_from_body(None, bad.clone()).expect_err("not UTF-8");
        assert_eq!(refused.response().status(), 400);
        let binary = outbound_from_body(Some("application/octet-stream"), bad.clone());
        assert!(matches!(binary, Ok(Outbound::Binary(_))));
        let image = outbound_from_body(Some("image/png"), bad).expect_err("unsupported");
        assert_eq!(image, BodyError::UnsupportedType("image/png".to_owned()));
        assert_eq!(image.response().status(), 415);
    }
}
