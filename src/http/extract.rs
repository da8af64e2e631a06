//! `AppJson<T>`, `AppPath<T>`, `AppQuery<T>`: axum's extractors with their rejections turned into our
//! problem bodies.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::MAX_BODY_BYTES;
use crate::error::Error;

pub struct AppJson<T>(pub T);

impl<S, T> FromRequest<S> for AppJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(AppJson(value)),
            Err(rejection) => Err(from_rejection(rejection)),
        }
    }
}

fn from_rejection(rejection: JsonRejection) -> Error {
    match rejection {
        JsonRejection::JsonDataError(e) => Error::InvalidRequest(data_error_detail(&e.body_text())),
        JsonRejection::JsonSyntaxError(_) => Error::MalformedJson,
        JsonRejection::MissingJsonContentType(_) => Error::UnsupportedMediaType,
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Error::PayloadTooLarge {
                limit: MAX_BODY_BYTES,
            }
        }
        _ => Error::MalformedJson,
    }
}

/// serde's message names the field and what was wrong with it, which is what a client needs; axum's
/// prefix adds nothing.
fn data_error_detail(text: &str) -> String {
    let detail = text
        .strip_prefix("Failed to deserialize the JSON body into the target type: ")
        .unwrap_or(text);
    format!("Invalid request body: {detail}")
}

impl<T: Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

/// A path parameter; one that does not parse (a malformed id) is `422 invalid_request`.
pub struct AppPath<T>(pub T);

impl<S, T> FromRequestParts<S> for AppPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(AppPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                let text = e.body_text();
                let detail = text.strip_prefix("Invalid URL: ").unwrap_or(&text);
                Err(Error::InvalidRequest(format!("Invalid path: {detail}")))
            }
            Err(rejection) => Err(Error::Internal(anyhow::anyhow!(
                "path extraction failed: {}",
                rejection.body_text()
            ))),
        }
    }
}

/// A query string; a missing, ill-typed or unknown parameter is `422 invalid_request`.
pub struct AppQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for AppQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(AppQuery(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                let text = e.body_text();
                let detail = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                Err(Error::InvalidRequest(format!("Invalid query: {detail}")))
            }
            Err(rejection) => Err(Error::InvalidRequest(rejection.body_text())),
        }
    }
}
