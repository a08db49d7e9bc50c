//! The document store: collections of JSON documents with versions,
//! queried and written by filter (the language of [`crate::store::Filter`]).

use super::ReadParams;
use super::error::{ApiResult, Body, HttpError, Path, Query};
use crate::node::data::Read;
use crate::node::handle::Node;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use shoal_proto::ErrorCode;
use shoal_proto::api::{
    ApiError, Collections, CountReply, DEFAULT_PAGE, DeleteWhereBody, Deleted, Document, FindBody,
    FindReply, MAX_PAGE, UpdateBody, UpdateWhereBody, Updated, Written,
};
use utoipa::IntoParams;

/// Every collection, in name order, with its number of documents.
#[utoipa::path(
    get,
    path = "/v1/db",
    tag = "documents",
    params(ReadParams),
    responses((status = 200, body = Collections))
)]
pub async fn list(
    State(node): State<Node>,
    Query(params): Query<ReadParams>,
) -> ApiResult<Collections> {
    let collections = node.db_collections(params.read()).await?;
    Ok(Json(Collections { collections }))
}

/// Creates a collection.
#[utoipa::path(
    put,
    path = "/v1/db/{collection}",
    tag = "documents",
    params(("collection" = String, Path)),
    responses(
        (status = 204, description = "Created"),
        (status = 409, description = "`collection_exists`", body = ApiError),
    )
)]
pub async fn create(
    State(node): State<Node>,
    Path(collection): Path<String>,
) -> Result<StatusCode, HttpError> {
    node.db_create(&collection).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Drops a collection and every document in it.
#[utoipa::path(
    delete,
    path = "/v1/db/{collection}",
    tag = "documents",
    params(("collection" = String, Path)),
    responses(
        (status = 204, description = "Dropped"),
        (status = 404, description = "`no_such_collection`", body = ApiError),
    )
)]
pub async fn drop_collection(
    State(node): State<Node>,
    Path(collection): Path<String>,
) -> Result<StatusCode, HttpError> {
    node.db_drop(&collection).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Inserts a document (a JSON object); the cluster assigns its id.
#[utoipa::path(
    post,
    path = "/v1/db/{collection}/docs",
    tag = "documents",
    params(("collection" = String, Path)),
    request_body(content = Object, description = "The document: a JSON object"),
    responses(
        (status = 200, description = "Its id and version 1", body = Written),
        (status = 400, description = "`invalid_document`: not an object", body = ApiError),
        (status = 404, description = "`no_such_collection`", body = ApiError),
    )
)]
pub async fn insert(
    State(node): State<Node>,
    Path(collection): Path<String>,
    Body(body): Body<Value>,
) -> ApiResult<Written> {
    let (id, version) = node.db_insert(&collection, body).await?;
    Ok(Json(Written { id, version }))
}

/// One document.
#[utoipa::path(
    get,
    path = "/v1/db/{collection}/docs/{id}",
    tag = "documents",
    params(("collection" = String, Path), ("id" = String, Path), ReadParams),
    responses(
        (status = 200, body = Document),
        (status = 404, description = "`not_found` or `no_such_collection`", body = ApiError),
    )
)]
pub async fn get(
    State(node): State<Node>,
    Path((collection, id)): Path<(String, String)>,
    Query(params): Query<ReadParams>,
) -> ApiResult<Document> {
    let read = params.read();
    node.db_get(&collection, &id, read)
        .await?
        .map(Json)
        .ok_or_else(|| {
            HttpError::new(
                ErrorCode::NotFound,
                format!("no document \"{id}\" in \"{collection}\""),
            )
        })
}

/// Replaces a document's body; with `expected_version`, only if no other
/// write came first.
#[utoipa::path(
    put,
    path = "/v1/db/{collection}/docs/{id}",
    tag = "documents",
    params(("collection" = String, Path), ("id" = String, Path)),
    request_body = UpdateBody,
    responses(
        (status = 200, description = "The new version", body = Written),
        (status = 404, description = "`not_found` or `no_such_collection`", body = ApiError),
        (status = 409, description = "`version_conflict`", body = ApiError),
    )
)]
pub async fn replace(
    State(node): State<Node>,
    Path((collection, id)): Path<(String, String)>,
    Body(update): Body<UpdateBody>,
) -> ApiResult<Written> {
    let version = node
        .db_replace(&collection, &id, update.body, update.expected_version)
        .await?;
    Ok(Json(Written { id, version }))
}

/// Applies a JSON merge patch (RFC 7386) to a document.
#[utoipa::path(
    patch,
    path = "/v1/db/{collection}/docs/{id}",
    tag = "documents",
    params(("collection" = String, Path), ("id" = String, Path)),
    request_body = UpdateBody,
    responses(
        (status = 200, description = "The new version", body = Written),
        (status = 404, description = "`not_found` or `no_such_collection`", body = ApiError),
        (status = 409, description = "`version_conflict`", body = ApiError),
    )
)]
pub async fn patch(
    State(node): State<Node>,
    Path((collection, id)): Path<(String, String)>,
    Body(update): Body<UpdateBody>,
) -> ApiResult<Written> {
    let version = node
        .db_patch(&collection, &id, update.body, update.expected_version)
        .await?;
    Ok(Json(Written { id, version }))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {
    /// Fails with `version_conflict` unless the document is at this version.
    expected_version: Option<u64>,
}

/// Deletes a document.
#[utoipa::path(
    delete,
    path = "/v1/db/{collection}/docs/{id}",
    tag = "documents",
    params(("collection" = String, Path), ("id" = String, Path), DeleteParams),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`not_found` or `no_such_collection`", body = ApiError),
        (status = 409, description = "`version_conflict`", body = ApiError),
    )
)]
pub async fn delete(
    State(node): State<Node>,
    Path((collection, id)): Path<(String, String)>,
    Query(params): Query<DeleteParams>,
) -> Result<StatusCode, HttpError> {
    node.db_delete(&collection, &id, params.expected_version)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Documents that match the filter, in the sort's order (id order without
/// one), a page at a time.
#[utoipa::path(
    post,
    path = "/v1/db/{collection}/find",
    tag = "documents",
    params(("collection" = String, Path)),
    request_body = FindBody,
    responses(
        (status = 200, description = "A page and the cursor of the next", body = FindReply),
        (status = 400, description = "`invalid_filter`, or `invalid_request` for a cursor from another sort", body = ApiError),
        (status = 404, description = "`no_such_collection`", body = ApiError),
    )
)]
pub async fn find(
    State(node): State<Node>,
    Path(collection): Path<String>,
    Body(find): Body<FindBody>,
) -> ApiResult<FindReply> {
    let limit = find.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let read = Read::stale_if(find.stale);
    let (documents, next) = node
        .db_find(&collection, find.filter, find.sort, limit, find.after, read)
        .await?;
    Ok(Json(FindReply { documents, next }))
}

/// How many documents match the filter.
#[utoipa::path(
    post,
    path = "/v1/db/{collection}/count",
    tag = "documents",
    params(("collection" = String, Path)),
    request_body = FindBody,
    responses(
        (status = 200, body = CountReply),
        (status = 400, description = "`invalid_filter`", body = ApiError),
        (status = 404, description = "`no_such_collection`", body = ApiError),
    )
)]
pub async fn count(
    State(node): State<Node>,
    Path(collection): Path<String>,
    Body(find): Body<FindBody>,
) -> ApiResult<CountReply> {
    let read = Read::stale_if(find.stale);
    let count = node.db_count(&collection, find.filter, read).await?;
    Ok(Json(CountReply { count }))
}

/// Merge-patches every document that matches the filter, in one replicated
/// write: all matches change (each one's version goes up by one), or on an
/// error none does.
#[utoipa::path(
    post,
    path = "/v1/db/{collection}/update",
    tag = "documents",
    params(("collection" = String, Path)),
    request_body = UpdateWhereBody,
    responses(
        (status = 200, description = "How many documents changed", body = Updated),
        (status = 400, description = "`invalid_filter`, or `invalid_document`: the patch is not an object", body = ApiError),
        (status = 404, description = "`no_such_collection`", body = ApiError),
    )
)]
pub async fn update_where(
    State(node): State<Node>,
    Path(collection): Path<String>,
    Body(update): Body<UpdateWhereBody>,
) -> ApiResult<Updated> {
    let updated = node
        .db_update_where(&collection, update.filter, update.patch)
        .await?;
    Ok(Json(Updated { updated }))
}

/// Deletes every document that matches the filter, in one replicated write.
#[utoipa::path(
    post,
    path = "/v1/db/{collection}/delete",
    tag = "documents",
    params(("collection" = String, Path)),
    request_body = DeleteWhereBody,
    responses(
        (status = 200, description = "How many documents were deleted", body = Deleted),
        (status = 400, description = "`invalid_filter`", body = ApiError),
        (status = 404, description = "`no_such_collection`", body = ApiError),
    )
)]
pub async fn delete_where(
    State(node): State<Node>,
    Path(collection): Path<String>,
    Body(delete): Body<DeleteWhereBody>,
) -> ApiResult<Deleted> {
    let deleted = node.db_delete_where(&collection, delete.filter).await?;
    Ok(Json(Deleted { deleted }))
}
