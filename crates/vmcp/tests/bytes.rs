//! The vMCP forwards bytes nobody changed as they came: a `tools/call` reaches its backend
//! with only its id and (renamed) `params.name` spliced, and the answer and the progress
//! notification come back with only the id spliced. Spoken to the instance the way the
//! proxy's front does: lines on its stdin and stdout.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use apiary_protocol::Message;
use apiary_testkit::server::{RAW_ECHO_PROGRESS, RAW_ECHO_TAIL, raw_echo_router};
use apiary_transport::launch::Launch;
use apiary_vmcp::{InstanceLimits, VmcpConfig, VmcpLaunch};
use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const LIMIT: Duration = Duration::from_secs(20);

async fn serve_raw_echo() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, raw_echo_router()).await });
    format!("http://{addr}/mcp")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_reaches_the_backend_with_only_id_and_name_spliced() {
    let url = serve_raw_echo().await;
    let config =
        VmcpConfig::parse(&format!("backends: [{{name: raw, url: '{url}', transport: streamable-http}}]")).unwrap();
    let launch = VmcpLaunch::new(&config, InstanceLimits::default()).unwrap();
    let mut child = launch.launch().await.unwrap();
    let mut lines = BufReader::new(child.stdout).lines();
    let mut send = async |line: &str| {
        child.stdin.write_all(line.as_bytes()).await.unwrap();
        child.stdin.write_all(b"\n").await.unwrap();
        child.stdin.flush().await.unwrap();
    };
    send(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#).await;
    send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).await;
    let init = tokio::time::timeout(LIMIT, lines.next_line()).await.unwrap().unwrap().unwrap();
    assert!(init.contains(r#""protocolVersion":"2025-06-18""#), "{init}");

    // Odd spellings no re-serialiser keeps: 1.50, a big integer, escapes, key order.
    let call = r#"{"params":{"_meta":{"progressToken":"tok-1"},"arguments":{"z":1.50,"big":12345678901234567890123,"e":"\u00e9\/"},"name":"raw_raw_echo"},"id":"call-7","method":"tools/call","jsonrpc":"2.0"}"#;
    send(call).await;
    let mut progress = None;
    let answer = loop {
        let line = tokio::time::timeout(LIMIT, lines.next_line()).await.unwrap().unwrap().unwrap();
        if line.contains("notifications/progress") {
            progress = Some(line);
        } else {
            break line;
        }
    };
    let msg = Message::parse(Bytes::from(answer.clone())).unwrap();
    assert_eq!(msg.id_raw(), Some(r#""call-7""#), "{answer}");
    assert!(answer.contains(RAW_ECHO_TAIL), "the result lost its bytes: {answer}");
    // (1e400 is out of serde_json's range, so the member is cut out of the bytes.)
    let at =
        apiary_protocol::splice::find_member(msg.bytes(), msg.payload_range().unwrap(), "received").unwrap().unwrap();
    let received: String = serde_json::from_slice(&msg.bytes()[at]).unwrap();
    let received = received.as_str();
    let backend_id = Message::parse(Bytes::from(received.to_owned())).unwrap().id_raw().unwrap().to_owned();
    let expected =
        call.replace(r#""id":"call-7""#, &format!(r#""id":{backend_id}"#)).replace("raw_raw_echo", "raw_echo");
    assert_eq!(received, expected, "the backend got other bytes than the client's with id and name spliced");

    let progress = progress.expect("the progress notification was not relayed");
    assert!(progress.contains(r#""progressToken":"tok-1""#) && progress.contains(RAW_ECHO_PROGRESS), "{progress}");

    // An unknown tool is the spec's -32602.
    send(r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"raw_echo"}}"#).await;
    let line = tokio::time::timeout(LIMIT, lines.next_line()).await.unwrap().unwrap().unwrap();
    assert!(line.contains(r#""id":9"#) && line.contains("-32602") && line.contains("Unknown tool: raw_echo"), "{line}");

    // Closing stdin ends the instance (and its backend session).
    drop(child.stdin);
    let why = tokio::time::timeout(LIMIT, child.exited).await.unwrap().unwrap();
    assert!(why.description.contains("input closed"), "{why}");
}
