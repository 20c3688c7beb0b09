//! JSON-RPC 2.0 framing for the client: building requests and notifications, sorting what the
//! server sends into responses, server→client requests and notifications, and the canned
//! answers we give to server→client requests.

use serde_json::{Map, Value, json};

use super::error::ClientError;

/// The request id type this client mints. Servers must echo it unchanged.
pub(crate) type RequestId = i64;

pub(crate) fn request(id: RequestId, method: &str, params: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert("jsonrpc".into(), Value::from("2.0"));
    m.insert("id".into(), Value::from(id));
    m.insert("method".into(), Value::from(method));
    if let Some(p) = params {
        m.insert("params".into(), p);
    }
    Value::Object(m)
}

pub(crate) fn notification(method: &str, params: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert("jsonrpc".into(), Value::from("2.0"));
    m.insert("method".into(), Value::from(method));
    if let Some(p) = params {
        m.insert("params".into(), p);
    }
    Value::Object(m)
}

/// One message from the server, sorted by shape.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// An answer to one of our requests. `id` is `None` when it is not an integer (never ours).
    Response { id: Option<RequestId>, outcome: Result<Value, ClientError> },
    /// A server→client request (ping, sampling, roots, elicitation, ...).
    Request { id: Value, method: String },
    /// A notification (progress, logging, list_changed, ...).
    Notification { method: String },
    /// Anything else; the text says what was wrong.
    Invalid(String),
}

/// Sorts one JSON value (a single message, never a batch) by its shape.
pub(crate) fn classify(msg: Value) -> Incoming {
    let Value::Object(mut obj) = msg else {
        return Incoming::Invalid("message is not a JSON object".into());
    };
    if let Some(Value::String(method)) = obj.get("method") {
        let method = method.clone();
        return match obj.remove("id") {
            Some(id @ (Value::String(_) | Value::Number(_))) => Incoming::Request { id, method },
            Some(_) => Incoming::Invalid(format!("request {method:?} has an invalid id")),
            None => Incoming::Notification { method },
        };
    }
    let id = obj.get("id").and_then(Value::as_i64);
    if let Some(err) = obj.remove("error") {
        return Incoming::Response { id, outcome: Err(rpc_error(err)) };
    }
    match obj.remove("result") {
        Some(result) => Incoming::Response { id, outcome: Ok(result) },
        None => Incoming::Invalid("message has neither method, result nor error".into()),
    }
}

fn rpc_error(err: Value) -> ClientError {
    let Value::Object(mut e) = err else {
        return ClientError::Protocol("JSON-RPC error member is not an object".into());
    };
    let code = e.get("code").and_then(Value::as_i64);
    let message = e.get("message").and_then(Value::as_str).unwrap_or_default().to_owned();
    match code {
        Some(code) => ClientError::JsonRpc { code, message, data: e.remove("data") },
        None => ClientError::Protocol(format!("JSON-RPC error without an integer code (message {message:?})")),
    }
}

/// The answer to a server→client request. This client declares no client capabilities
/// (no sampling, roots or elicitation), so only `ping` succeeds; the rest get -32601.
pub(crate) fn answer_server_request(id: Value, method: &str) -> Value {
    if method == "ping" {
        json!({"jsonrpc": "2.0", "id": id, "result": {}})
    } else {
        json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": -32601, "message": format!("Method not found: {method}")}
        })
    }
}

/// Splits a body or SSE `data` into messages: 2025-03-26 servers may send a batch (array).
pub(crate) fn split_batch(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        other => vec![other],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_shape() {
        assert!(matches!(
            classify(json!({"jsonrpc":"2.0","id":3,"result":{"a":1}})),
            Incoming::Response { id: Some(3), outcome: Ok(_) }
        ));
        match classify(json!({"jsonrpc":"2.0","id":4,"error":{"code":-32601,"message":"nope","data":[1]}})) {
            Incoming::Response { id: Some(4), outcome: Err(ClientError::JsonRpc { code, message, data }) } => {
                assert_eq!(code, -32601);
                assert_eq!(message, "nope");
                assert_eq!(data, Some(json!([1])));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(classify(json!({"jsonrpc":"2.0","id":"s1","method":"ping"})), Incoming::Request { .. }));
        assert!(matches!(
            classify(json!({"jsonrpc":"2.0","method":"notifications/progress"})),
            Incoming::Notification { .. }
        ));
        assert!(matches!(classify(json!(42)), Incoming::Invalid(_)));
        assert!(matches!(classify(json!({"jsonrpc":"2.0","id":1})), Incoming::Invalid(_)));
    }

    #[test]
    fn answers_ping_and_refuses_the_rest() {
        let a = answer_server_request(json!("x"), "ping");
        assert_eq!(a["result"], json!({}));
        let b = answer_server_request(json!(9), "sampling/createMessage");
        assert_eq!(b["error"]["code"], json!(-32601));
        assert_eq!(b["id"], json!(9));
    }
}
