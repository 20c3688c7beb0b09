//! The transport's `RawSession` (the vMCP's backend client) against the fixture server over
//! Streamable HTTP: requests go out with the caller's id and come back as the server's
//! bytes; a server→client request made during a call arrives on the incoming channel
//! unanswered, and the caller's answer (sent with `send`) lets the call finish; after
//! `close` the server no longer knows the session.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use apiary_protocol::Message;
use apiary_testkit::server::{ServerOptions, serve_http};
use apiary_transport::client::{ClientError, RawSession, SessionOptions};
use bytes::Bytes;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_requests_relayed_server_requests_and_close() {
    let server = serve_http("127.0.0.1:0".parse().unwrap(), ServerOptions::default()).await.unwrap();
    let options = SessionOptions {
        initialize_params:
            r#"{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"t","version":"1"}}"#
                .into(),
        ..SessionOptions::default()
    };
    let (session, mut incoming) = RawSession::open(server.url(), options).await.unwrap();
    let session = Arc::new(session);
    assert_eq!(session.protocol_version(), "2025-11-25");
    assert!(session.session_id().is_some());
    let init: Value = serde_json::from_slice(session.initialize_result()).unwrap();
    assert!(init["capabilities"]["tools"].is_object(), "{init}");

    // The caller's id (a string here) comes back as it was sent.
    let answer = session.request(Bytes::from_static(br#"{"jsonrpc":"2.0","id":"mine-1","method":"tools/list"}"#)).await;
    let msg = Message::parse(answer.unwrap()).unwrap();
    assert_eq!(msg.id_raw(), Some(r#""mine-1""#));
    assert!(msg.payload_raw().unwrap().contains(r#""test_sampling""#));

    // A call that asks the client to sample: the request reaches us unanswered, and our
    // answer lets the call finish with what we sampled.
    let calling = Arc::clone(&session);
    let call = tokio::spawn(async move {
        let call = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"test_sampling","arguments":{"prompt":"hi"}}}"#;
        calling.request(Bytes::from_static(call)).await
    });
    let asked = tokio::time::timeout(WAIT, incoming.recv()).await.unwrap().unwrap();
    let asked = Message::parse(asked).unwrap();
    assert_eq!(asked.method(), Some("sampling/createMessage"));
    let reply = format!(
        r#"{{"jsonrpc":"2.0","id":{},"result":{{"role":"assistant","content":{{"type":"text","text":"sampled!"}},"model":"m","stopReason":"endTurn"}}}}"#,
        asked.id_raw().unwrap()
    );
    session.send(Bytes::from(reply)).await.unwrap();
    let answer = tokio::time::timeout(WAIT, call).await.unwrap().unwrap().unwrap();
    let answer = Message::parse(answer).unwrap();
    assert_eq!(answer.id_raw(), Some("7"));
    assert!(answer.payload_raw().unwrap().contains("sampled!"), "{:?}", answer.payload_raw());

    // After close the server has forgotten the session: a request on it is refused (404).
    session.close().await.unwrap();
    let after = session.request(Bytes::from_static(br#"{"jsonrpc":"2.0","id":8,"method":"ping"}"#)).await;
    assert!(matches!(after, Err(ClientError::HttpStatus { status: 404, .. })), "{after:?}");
    server.shutdown().await.unwrap();
}

/// With an address guard the host name is resolved before connecting and every address is
/// checked: a guard that refuses one refuses the connection, naming the host and the address;
/// a guard that allows them connects (to the checked address, pinned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_guard_sees_every_resolved_address_before_connecting() {
    use apiary_transport::client::{AddressGuard, Reach};
    use std::net::IpAddr;
    use std::sync::Mutex;

    let server = serve_http("127.0.0.1:0".parse().unwrap(), ServerOptions::default()).await.unwrap();
    let by_name = server.url().replace("127.0.0.1", "localhost");
    let seen: Arc<Mutex<Vec<IpAddr>>> = Arc::default();
    let record = Arc::clone(&seen);
    let allow = AddressGuard::new(move |ip| {
        record.lock().unwrap().push(ip);
        Ok(())
    });
    let options =
        SessionOptions { reach: Reach { guard: Some(allow), ..Reach::default() }, ..SessionOptions::default() };
    match RawSession::open(&by_name, options).await {
        Ok((session, _incoming)) => session.close().await.unwrap(),
        // `localhost` resolved to ::1 first where IPv6 is on: the server listens on IPv4 only.
        Err(ClientError::Connection { .. }) => {}
        Err(e) => panic!("{e}"),
    }
    let checked = seen.lock().unwrap().clone();
    assert!(!checked.is_empty() && checked.iter().all(IpAddr::is_loopback), "{checked:?}");

    let refuse = AddressGuard::new(|ip| Err(format!("{ip} is not for you")));
    let options =
        SessionOptions { reach: Reach { guard: Some(refuse), ..Reach::default() }, ..SessionOptions::default() };
    let err = RawSession::open(&by_name, options).await.unwrap_err();
    assert!(matches!(&err, ClientError::Refused { host, .. } if host == "localhost"), "{err}");
    assert!(err.to_string().contains("is not for you"), "{err}");
    // A literal address is checked as it is.
    let refuse = AddressGuard::new(|ip| Err(format!("{ip} is not for you")));
    let options =
        SessionOptions { reach: Reach { guard: Some(refuse), ..Reach::default() }, ..SessionOptions::default() };
    let err = RawSession::open(server.url(), options).await.unwrap_err();
    assert!(err.to_string().contains("127.0.0.1 is not for you"), "{err}");
    server.shutdown().await.unwrap();
}
