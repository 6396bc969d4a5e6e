//! Uploading image data: the body is streamed chunk by chunk to a blocking writer thread that
//! feeds the `images` store (which hashes, limits the size, probes the format and publishes
//! atomically). Status goes `queued → saving → active`, or `killed` when anything fails.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use images::store::{DiskFormat, ImageStore, StoreError as DataError};
use tokio::sync::mpsc;

use super::{Image, ImageData, status};
use crate::store::{Store, StoreError};

/// Errors of an upload.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Only a queued image takes data.
    #[error("image {id} is {status}; only a queued image accepts data")]
    NotQueued {
        /// The image.
        id: String,
        /// Its status.
        status: String,
    },
    /// disk_format or container_format is not set.
    #[error("image {0}: disk_format and container_format must be set before uploading data")]
    NoFormat(String),
    /// The disk format is not one the store knows.
    #[error("image {id}: unknown disk_format {format:?}")]
    UnknownFormat {
        /// The image.
        id: String,
        /// The format.
        format: String,
    },
    /// The store refused the data (too large, wrong format, hostile) or failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The client's body failed (disconnect, body error).
    #[error("reading the uploaded data failed: {0}")]
    Body(io::Error),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The image was deleted while its data was arriving.
    #[error("image {0} was deleted during the upload")]
    Gone(String),
    /// The writer thread died.
    #[error("upload writer failed: {0}")]
    Task(String),
}

enum Msg {
    Chunk(Bytes),
    End,
}

/// Streams `body` into the store as the data of `image` and returns the updated image. On
/// failure the rest of `body` is left unread for the caller to drain or drop.
pub async fn receive<S>(
    store: &Store,
    data: Arc<ImageStore>,
    image: &Image,
    body: &mut S,
) -> Result<Image, UploadError>
where
    S: Stream<Item = Result<Bytes, io::Error>> + Unpin,
{
    let id = image.id.clone();
    let (Some(fmt), Some(_)) = (&image.disk_format, &image.container_format) else {
        return Err(UploadError::NoFormat(id));
    };
    let format: DiskFormat = fmt.parse().map_err(|_| UploadError::UnknownFormat {
        id: id.clone(),
        format: fmt.clone(),
    })?;
    if !store
        .transition_image(&id, status::QUEUED, status::SAVING)
        .await?
    {
        let now = store.get_image(&id).await?;
        return Err(UploadError::NotQueued {
            id,
            status: now.status,
        });
    }
    tracing::info!(image = %id, %format, "upload started");

    let result = stream_to_store(data.clone(), &id, format, body).await;
    let stored = match result {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(image = %id, error = %e, "upload failed; image killed");
            store
                .transition_image(&id, status::SAVING, status::KILLED)
                .await?;
            return Err(e);
        }
    };
    let row = ImageData {
        size: i64::try_from(stored.size).unwrap_or(i64::MAX),
        virtual_size: stored.virtual_size.and_then(|v| i64::try_from(v).ok()),
        md5: stored.md5,
        sha512: stored.sha512,
    };
    if !store.activate_image(&id, &row).await? {
        // Deleted (or killed) meanwhile: the data has no row to belong to.
        let d = data.clone();
        let gone = id.clone();
        let _ = tokio::task::spawn_blocking(move || d.delete(&gone)).await;
        return Err(UploadError::Gone(id));
    }
    tracing::info!(image = %id, size = row.size, "upload finished; image active");
    Ok(store.get_image(&id).await?)
}

async fn stream_to_store<S>(
    data: Arc<ImageStore>,
    id: &str,
    format: DiskFormat,
    body: &mut S,
) -> Result<images::store::StoredImage, UploadError>
where
    S: Stream<Item = Result<Bytes, io::Error>> + Unpin,
{
    // A few chunks in flight keep the network and the disk busy at once.
    let (tx, mut rx) = mpsc::channel::<Msg>(8);
    let owned_id = id.to_string();
    let writer = tokio::task::spawn_blocking(move || -> Result<_, UploadError> {
        let mut upload = data.begin_upload(&owned_id)?;
        loop {
            match rx.blocking_recv() {
                Some(Msg::Chunk(b)) => upload.write(&b)?,
                Some(Msg::End) => return Ok(Some(upload.finish(format)?)),
                // The sender went away without End: the body failed; dropping the upload
                // removes its temporary file.
                None => return Ok(None),
            }
        }
    });
    let mut body_error = None;
    loop {
        match body.next().await {
            Some(Ok(chunk)) => {
                if tx.send(Msg::Chunk(chunk)).await.is_err() {
                    break; // the writer stopped: its result says why
                }
            }
            Some(Err(e)) => {
                body_error = Some(e);
                break;
            }
            None => {
                let _ = tx.send(Msg::End).await;
                break;
            }
        }
    }
    drop(tx);
    let written = writer.await.map_err(|e| UploadError::Task(e.to_string()))?;
    match (written, body_error) {
        (Err(e), _) => Err(e),
        (Ok(_), Some(e)) => Err(UploadError::Body(e)),
        (Ok(Some(stored)), None) => Ok(stored),
        (Ok(None), None) => Err(UploadError::Task("writer ended early".into())),
    }
}
