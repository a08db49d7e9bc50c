//! [`Collection`]: one collection of the document store, reached through
//! the same [`Transport`] (and so the same failover) as its client.
//! Reads may be repeated on another node; writes only when they certainly
//! never arrived, since a repeated write could apply twice.

use crate::error::ClientError;
use crate::transport::{Retry, Transport, segment};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use shoal_proto::ErrorCode;
use shoal_proto::api::{
    CountReply, DeleteWhereBody, Deleted, Document, FindBody, FindReply, SortKey, UpdateBody,
    UpdateWhereBody, Updated, Written,
};
use std::sync::Arc;

/// A collection of the document store.
#[derive(Clone, Debug)]
pub struct Collection {
    transport: Arc<Transport>,
    /// `/v1/db/<name>`, the root of every request about it.
    path: String,
}

impl Collection {
    pub(crate) fn new(transport: Arc<Transport>, name: &str) -> Collection {
        Collection {
            transport,
            path: format!("/v1/db/{}", segment(name)),
        }
    }

    pub async fn create(&self) -> Result<(), ClientError> {
        self.write::<()>(Method::PUT, self.path.clone(), &json!({}))
            .await
    }

    /// Drops the collection and every document in it.
    pub async fn drop_collection(&self) -> Result<(), ClientError> {
        self.write::<()>(Method::DELETE, self.path.clone(), &json!({}))
            .await
    }

    /// Inserts a document (a JSON object); returns its id and version.
    pub async fn insert(&self, body: &Value) -> Result<Written, ClientError> {
        self.write(Method::POST, format!("{}/docs", self.path), body)
            .await
    }

    /// The document, or `None` if there is none with that id.
    pub async fn get(&self, id: &str) -> Result<Option<Document>, ClientError> {
        match self.transport.get(self.doc(id), &[]).await {
            Err(ClientError::Api { error, .. }) if error.code == ErrorCode::NotFound => Ok(None),
            other => other.map(Some),
        }
    }

    /// Replaces a document's body; with `expected_version`, only if no
    /// other write came first (else `version_conflict`).
    pub async fn replace(
        &self,
        id: &str,
        body: Value,
        expected_version: Option<u64>,
    ) -> Result<Written, ClientError> {
        let update = UpdateBody {
            body,
            expected_version,
        };
        self.write(Method::PUT, self.doc(id), &update).await
    }

    /// Applies a JSON merge patch.
    pub async fn patch(
        &self,
        id: &str,
        patch: Value,
        expected_version: Option<u64>,
    ) -> Result<Written, ClientError> {
        let update = UpdateBody {
            body: patch,
            expected_version,
        };
        self.write(Method::PATCH, self.doc(id), &update).await
    }

    pub async fn delete(&self, id: &str, expected_version: Option<u64>) -> Result<(), ClientError> {
        let path = match expected_version {
            Some(version) => format!("{}?expected_version={version}", self.doc(id)),
            None => self.doc(id),
        };
        self.write::<()>(Method::DELETE, path, &json!({})).await
    }

    /// Documents that match `filter` (`{"address.city": "paris", "age":
    /// {"$gte": 18}}`), in `sort` order (id order when empty), a page at a
    /// time: pass the reply's `next` as `after` for the next page.
    pub async fn find(
        &self,
        filter: Map<String, Value>,
        sort: Vec<SortKey>,
        limit: Option<usize>,
        after: Option<String>,
    ) -> Result<FindReply, ClientError> {
        let find = FindBody {
            filter,
            sort,
            limit,
            after,
            stale: false,
        };
        self.read(format!("{}/find", self.path), &find).await
    }

    pub async fn count(&self, filter: Map<String, Value>) -> Result<usize, ClientError> {
        let find = FindBody {
            filter,
            ..FindBody::default()
        };
        let reply: CountReply = self.read(format!("{}/count", self.path), &find).await?;
        Ok(reply.count)
    }

    /// Merge-patches every document that matches `filter`, all in one
    /// write; returns how many changed. `{}` matches every document.
    pub async fn update_where(
        &self,
        filter: Map<String, Value>,
        patch: Value,
    ) -> Result<usize, ClientError> {
        let update = UpdateWhereBody { filter, patch };
        let reply: Updated = self
            .write(Method::POST, format!("{}/update", self.path), &update)
            .await?;
        Ok(reply.updated)
    }

    /// Deletes every document that matches `filter`, all in one write;
    /// returns how many were deleted.
    pub async fn delete_where(&self, filter: Map<String, Value>) -> Result<usize, ClientError> {
        let delete = DeleteWhereBody { filter };
        let reply: Deleted = self
            .write(Method::POST, format!("{}/delete", self.path), &delete)
            .await?;
        Ok(reply.deleted)
    }

    fn doc(&self, id: &str) -> String {
        format!("{}/docs/{}", self.path, segment(id))
    }

    async fn read<T: DeserializeOwned>(
        &self,
        path: String,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        let request = self
            .transport
            .with_body(Method::POST, path, body, Retry::Always);
        self.transport.send(request).await
    }

    async fn write<T: DeserializeOwned>(
        &self,
        method: Method,
        path: String,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        let request = self
            .transport
            .with_body(method, path, body, Retry::IfNotSent);
        self.transport.send(request).await
    }
}
