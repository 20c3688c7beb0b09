//! A message of a bridged 2024-11-05 session (`POST /messages`), whoever carries its rounds
//! (a stdio child, `legacy_bridge`, or an HTTP upstream, `http_bridge`): on HTTP+SSE every
//! answer, and every request the bridge puts to the client, travels on the session's one
//! stream, so the POST itself is only accepted or refused. One copy for both bridges.

use std::sync::Arc;

use apiary_protocol::{Kind, Message};
use tokio::sync::mpsc;

use crate::answer::Refusal;
use crate::front::bridged::Bridged;
use crate::front::legacy_rounds::{self, Sink, Upstream};
use crate::guard::RequestCtx;
use crate::upstream::stdio::Delivery;

/// Serves `m` of bridged session `b` over `up`; whatever answers it goes to `out`.
pub(crate) async fn post<U: Upstream>(
    up: Arc<U>,
    ctx: &RequestCtx,
    b: Arc<Bridged>,
    m: Message,
    out: mpsc::Sender<Delivery>,
) -> Result<(), Refusal> {
    match m.kind() {
        Kind::Response | Kind::Error => {
            if b.answered(m) {
                Ok(())
            } else {
                Err(Refusal::invalid("no outstanding request with this id"))
            }
        }
        Kind::Notification => {
            legacy_rounds::notification(&b, &m);
            Ok(())
        }
        Kind::Request => {
            let frame = match legacy_rounds::local(&b, &m) {
                Some(frame) => frame,
                None if legacy_rounds::is_subscription(&m) => up.subscription(ctx, &b, &m).await,
                None => return legacy_rounds::spawn_call(up, ctx.clone(), b, m, Sink::Session(out)),
            };
            let _ = out.send(Delivery::message(frame)).await;
            Ok(())
        }
    }
}
