//! `/v2/images/{id}/file`: upload (streamed into the `images` store) and download.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt, TryStreamExt};
use images::store::StoreError as DataError;
use orchestrator::image::status;
use orchestrator::image::upload::{UploadError, receive};
use tokio_util::io::ReaderStream;

use super::images::{visible, writable};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

fn upload_error(e: UploadError) -> ApiError {
    match e {
        UploadError::NotQueued { .. } => ApiError::conflict(e.to_string()),
        UploadError::NoFormat(_) | UploadError::UnknownFormat { .. } | UploadError::Body(_) => {
            ApiError::bad_request(e.to_string())
        }
        UploadError::Data(DataError::TooLarge { limit }) => ApiError::too_large(format!(
            "Image exceeds the storage size limit of {limit} bytes."
        )),
        UploadError::Data(
            DataError::FormatMismatch { .. }
            | DataError::Hostile(_)
            | DataError::Unsupported(_)
            | DataError::InvalidId(_),
        ) => ApiError::bad_request(e.to_string()),
        UploadError::Data(DataError::Exists(_)) | UploadError::Gone(_) => {
            ApiError::conflict(e.to_string())
        }
        UploadError::Store(s) => s.into(),
        other => ApiError::internal(other),
    }
}

/// How much of a refused upload is read and thrown away so the client, still sending, gets to
/// read the error instead of a connection reset.
const DRAIN_LIMIT: usize = 64 << 20;
/// How long draining may take.
const DRAIN_TIME: Duration = Duration::from_secs(10);

async fn drain<S>(body: &mut S)
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Unpin,
{
    let mut left = DRAIN_LIMIT;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = body.next().await {
            if chunk.len() >= left {
                break;
            }
            left -= chunk.len();
        }
    })
    .await;
}

/// `PUT /v2/images/{id}/file`. A refused upload is answered after draining what the client
/// is still sending (up to a bound), with `Connection: close`.
pub(super) async fn upload(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut stream = body.into_data_stream().map_err(std::io::Error::other);
    match upload_inner(&st, &auth, &id, &headers, &mut stream).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            drain(&mut stream).await;
            let mut resp = e.into_response();
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            resp
        }
    }
}

async fn upload_inner<S>(
    st: &AppState,
    auth: &Auth,
    id: &str,
    headers: &HeaderMap,
    stream: &mut S,
) -> ApiResult<()>
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Unpin,
{
    let img = writable(st, auth, id, "upload data to").await?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.split(';').next().map(str::trim) != Some("application/octet-stream") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Unsupported Content-Type {ct:?} for image data; use application/octet-stream."
            ),
        ));
    }
    let cap = st.config().image.max_image_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap) {
        // Refused before any byte is read: the image stays queued.
        return Err(ApiError::too_large(format!(
            "Image exceeds the storage size limit of {cap} bytes."
        )));
    }
    receive(st.store(), st.images().clone(), &img, stream)
        .await
        .map_err(upload_error)?;
    Ok(())
}

/// `GET /v2/images/{id}/file`: 204 when the image has no data yet.
pub(super) async fn download(
    State(st): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let img = visible(&st, &auth, &id).await?;
    if img.status == status::DEACTIVATED && !auth.is_admin() {
        return Err(ApiError::forbidden(format!("Image {id} is deactivated.")));
    }
    if img.status != status::ACTIVE && img.status != status::DEACTIVATED {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let data = st.images().clone();
    let file_id = id.clone();
    let file = tokio::task::spawn_blocking(move || data.open_image(&file_id))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| match e {
            DataError::NotFound(_) => {
                ApiError::internal(format!("image {id} is active but its data is missing"))
            }
            other => ApiError::internal(other),
        })?;
    let mut resp = Body::from_stream(ReaderStream::with_capacity(
        tokio::fs::File::from_std(file),
        1 << 20,
    ))
    .into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(size) = img.size {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    if let Some(md5) = img
        .checksum
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        h.insert("content-md5", md5);
    }
    Ok(resp)
}
