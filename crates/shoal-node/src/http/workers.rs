//! `GET /v1/workers`: the WebSocket worker processes serve functions over
//! (the protocol: `shoal_proto::api::workers`, `docs/workers.md`).

use crate::calls::workers::Workers;
use crate::node::handle::Node;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use shoal_proto::api::{FromWorker, MAX_BODY_BYTES, ToWorker};
use std::sync::Arc;

/// Upgrades to the worker protocol: a worker registers functions, then
/// answers the calls the node sends it. The node's API token applies.
#[utoipa::path(
    get,
    path = "/v1/workers",
    tag = "calls",
    responses(
        (status = 101, description = "Switching to the worker protocol: JSON messages, FromWorker one way and ToWorker the other"),
        (status = 401, description = "`unauthorized`"),
    )
)]
pub async fn connect(State(node): State<Node>, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .max_message_size(MAX_BODY_BYTES)
        .on_upgrade(move |socket| serve(node, socket))
}

async fn serve(node: Node, socket: WebSocket) {
    let workers = node.workers();
    let (worker, mut outbox) = workers.connect();
    let (mut sink, mut stream) = socket.split();
    let stopping = node.stopping();
    loop {
        let reply = tokio::select! {
            _ = stopping.cancelled() => break,
            next = outbox.recv() => match next {
                Some(message) => Some(message),
                None => break,
            },
            message = stream.next() => match message {
                Some(Ok(Message::Text(text))) => receive(&workers, worker, &text),
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => None,
            },
        };
        if let Some(reply) = reply {
            let text = serde_json::to_string(&reply).expect("a worker message serializes");
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
    }
    workers.disconnect(worker);
}

/// Acts on one message from the worker; what to answer, if anything.
fn receive(workers: &Arc<Workers>, worker: u64, text: &str) -> Option<ToWorker> {
    let message = match serde_json::from_str::<FromWorker>(text) {
        Ok(message) => message,
        Err(error) => {
            return Some(ToWorker::Refused {
                message: format!("not a worker message: {error}"),
            });
        }
    };
    match message {
        FromWorker::Register { functions } => Some(match workers.register(worker, functions) {
            Ok(functions) => ToWorker::Registered { functions },
            Err(message) => ToWorker::Refused { message },
        }),
        FromWorker::Result { id, result } => {
            workers.answer(worker, id, Ok(result));
            None
        }
        FromWorker::Error { id, message } => {
            workers.answer(worker, id, Err(message));
            None
        }
        FromWorker::Progress {
            id,
            fraction,
            message,
        } => {
            workers.progress(worker, id, fraction, message);
            None
        }
        FromWorker::Call {
            id,
            parent,
            function,
            args,
        } => {
            workers.nested(worker, parent, id, function, args);
            None
        }
        FromWorker::Drain => {
            workers.drain(worker);
            None
        }
    }
}
