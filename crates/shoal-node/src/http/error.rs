//! Errors as the API returns them, and extractors whose rejections are
//! errors of the same shape (axum's own answer in plain text).

use crate::node::data::DataError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use shoal_proto::api::ApiError;
use shoal_proto::{CallError, ErrorCode};

/// The HTTP status that goes with an error code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidRequest
        | ErrorCode::InvalidArguments
        | ErrorCode::InvalidDocument
        | ErrorCode::InvalidFilter => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::NotFound | ErrorCode::UnknownFunction | ErrorCode::NoSuchCollection => {
            StatusCode::NOT_FOUND
        }
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::VersionConflict
        | ErrorCode::CollectionExists
        | ErrorCode::Rejected
        | ErrorCode::Cancelled
        | ErrorCode::Closed => StatusCode::CONFLICT,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        // The request was fine; the function said no.
        ErrorCode::FunctionFailed | ErrorCode::FunctionPanicked => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::DeadlineExceeded | ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::Unavailable
        | ErrorCode::ShuttingDown
        | ErrorCode::OutcomeUnknown
        | ErrorCode::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An [`ApiError`] on its way to the client.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl HttpError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        HttpError(ApiError::new(code, message))
    }

    fn invalid(message: impl Into<String>) -> Self {
        HttpError::new(ErrorCode::InvalidRequest, message)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (status_of(self.0.code), axum::Json(self.0)).into_response()
    }
}

impl From<CallError> for HttpError {
    fn from(e: CallError) -> Self {
        if e.code == ErrorCode::Internal {
            tracing::error!(error = %e.message, "call failed inside the node");
            return HttpError::new(
                ErrorCode::Internal,
                "internal error; the node's log has the details",
            );
        }
        HttpError(e.into())
    }
}

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError(e)
    }
}

impl From<DataError> for HttpError {
    fn from(e: DataError) -> Self {
        let code = e.code();
        if code == ErrorCode::Internal {
            tracing::error!(error = %e, "request failed inside the node");
            return HttpError::new(code, "internal error; the node's log has the details");
        }
        HttpError::new(code, e.to_string())
    }
}

/// A JSON body. Any content type is accepted (so `curl -d` works), an empty
/// body reads as `{}`, and every failure is an [`HttpError`]: too large →
/// `payload_too_large`, malformed or mistyped → `invalid_request` naming
/// the field.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = HttpError;

    async fn from_request(request: Request, state: &S) -> Result<Self, HttpError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    HttpError::new(
                        ErrorCode::PayloadTooLarge,
                        format!(
                            "the request body is larger than {} bytes",
                            shoal_proto::api::MAX_BODY_BYTES
                        ),
                    )
                } else {
                    HttpError::invalid(rejection.body_text())
                }
            })?;
        shoal_proto::api::parse_body(&bytes)
            .map(Body)
            .map_err(HttpError::invalid)
    }
}

/// Path parameters; a malformed one (a job id that is not a number) is an
/// `invalid_request`.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|rejection| HttpError::invalid(rejection.body_text()))
    }
}

/// Query parameters, rejected like [`Path`].
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| HttpError::invalid(rejection.body_text()))
    }
}

pub type ApiResult<T> = Result<axum::Json<T>, HttpError>;
