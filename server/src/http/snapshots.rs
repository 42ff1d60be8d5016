//! Snapshot routes: create, list, download (streamed), delete, and restore from a stored
//! snapshot or an upload (streamed to the data directory, never held in memory, at most
//! `storage.max_snapshot_bytes`). The engine calls block on disk I/O, so they run on tokio's
//! blocking pool.

use super::AppState;
use crate::api_error::ApiError;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use engram_engine::{Engine, EngineError, SnapshotSource};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    engine: &Arc<Engine>,
    f: impl FnOnce(&Engine) -> Result<T, EngineError> + Send + 'static,
) -> Result<T, ApiError> {
    let engine = Arc::clone(engine);
    tokio::task::spawn_blocking(move || f(&engine))
        .await
        .map_err(|e| ApiError::internal(format!("the snapshot task failed: {e}")))?
        .map_err(ApiError::from)
}

/// `POST /v1/spaces/{space}/snapshots`: writes a snapshot; 201 with its name, position, size
/// and checksum.
pub(super) async fn create(State(app): State<AppState>, Path(space): Path<String>) -> Result<Response, ApiError> {
    let info = blocking(&app.engine, move |e| e.create_snapshot(&space)).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

/// `GET /v1/spaces/{space}/snapshots`: `{"snapshots": [...]}`, oldest first.
pub(super) async fn list(State(app): State<AppState>, Path(space): Path<String>) -> Result<Response, ApiError> {
    let snapshots = blocking(&app.engine, move |e| e.list_snapshots(&space)).await?;
    Ok(Json(SnapshotList { snapshots }).into_response())
}

/// `GET /v1/spaces/{space}/snapshots`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct SnapshotList {
    snapshots: Vec<engram_engine::SnapshotInfo>,
}

/// `DELETE /v1/spaces/{space}/snapshots/{name}`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct SnapshotDeleted {
    /// The file name removed.
    deleted: String,
}

/// `GET /v1/spaces/{space}/snapshots/{name}`: the file, streamed.
pub(super) async fn download(
    State(app): State<AppState>,
    Path((space, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let file_name = name.clone();
    let path = blocking(&app.engine, move |e| e.snapshot_path(&space, &name)).await?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiError::from(EngineError::SnapshotNotFound(file_name.clone())))?;
    let len = file.metadata().await.map(|m| m.len()).ok();
    let mut response = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 16)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    if let Some(len) = len {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// `DELETE /v1/spaces/{space}/snapshots/{name}`: removes it; 200 `{"deleted": name}`.
pub(super) async fn delete(
    State(app): State<AppState>,
    Path((space, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let deleted = name.clone();
    blocking(&app.engine, move |e| e.delete_snapshot(&space, &name)).await?;
    Ok(Json(SnapshotDeleted { deleted }).into_response())
}

/// A restore from a snapshot this server holds.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RestoreByName {
    /// The snapshot's file name.
    #[schema(pattern = "^[A-Za-z0-9_.-]+\\.snapshot$")]
    name: String,
    /// The space it was taken of (default: the space being created).
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$")]
    from_space: Option<String>,
}

/// Removes an uploaded file when the restore is done with it, however it ends.
struct Upload(std::path::PathBuf);

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `POST /v1/spaces/{space}/snapshots/restore`: creates `space` from a snapshot, named with
/// `Content-Type: application/json` and `{"name": ..., "from_space": ...}`, or uploaded as
/// the body (`application/octet-stream`). 201 with the space once it is searchable.
pub(super) async fn restore(
    State(app): State<AppState>,
    Path(space): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let (source, _upload) = if json {
        let bytes = axum::body::to_bytes(body, app.max_request_bytes)
            .await
            .map_err(|_| ApiError::too_large(app.max_request_bytes))?;
        let req: RestoreByName = super::handlers::parse_json(&bytes)?;
        let from = req.from_space.unwrap_or_else(|| space.clone());
        (SnapshotSource::Named { space: from, name: req.name }, None)
    } else {
        let path = blocking(&app.engine, |e| e.snapshot_upload_path()).await?;
        let upload = Upload(path.clone());
        let mut file = tokio::fs::File::create(&path).await.map_err(|e| {
            ApiError::from(engram_engine::EngineError::Storage {
                kind: engram_engine::StorageErrorKind::Io,
                message: format!("creating {}: {e}", path.display()),
            })
        })?;
        let mut stream = body.into_data_stream();
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ApiError::malformed("body", format!("the upload broke off: {e}")))?;
            written += chunk.len() as u64;
            if written > app.max_snapshot_bytes {
                return Err(ApiError::invalid(
                    "snapshot",
                    format!("is more than storage.max_snapshot_bytes ({} bytes)", app.max_snapshot_bytes),
                ));
            }
            file.write_all(&chunk).await.map_err(|e| ApiError::from(storage_error(&path, e)))?;
        }
        file.sync_all().await.map_err(|e| ApiError::from(storage_error(&path, e)))?;
        if written == 0 {
            return Err(ApiError::invalid(
                "snapshot",
                "the body is empty: upload a snapshot file, or name one with a JSON body",
            ));
        }
        (SnapshotSource::File(path), Some(upload))
    };
    let info = blocking(&app.engine, move |e| e.restore_snapshot(&space, &source)).await?;
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

fn storage_error(path: &std::path::Path, e: std::io::Error) -> EngineError {
    EngineError::Storage {
        kind: engram_engine::StorageErrorKind::of(&e),
        message: format!("writing {}: {e}", path.display()),
    }
}
