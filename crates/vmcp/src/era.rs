//! Which revision each backend speaks, learnt once per config with a bounded
//! `server/discover` probe and kept: a backend that offers 2026-07-28 gets a 2026-07-28
//! client's requests as they are (stateless POSTs), a legacy one keeps its 2025-11-25
//! sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apiary_protocol::modern;
use apiary_transport::client::{ClientError, ModernClient, Transport};
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::hub::BackendSpec;

/// Bound on one probe.
const PROBE_LIMIT: Duration = Duration::from_secs(5);

/// What a backend speaks.
pub(crate) enum Era {
    /// It offered 2026-07-28: its client and the capabilities its `server/discover` named.
    Modern { client: Box<ModernClient>, capabilities: Value },
    /// Legacy only (or not probed: an HTTP+SSE backend, or one that wants each caller's
    /// exchanged token, which a probe without a caller cannot carry).
    Legacy,
}

impl Era {
    pub fn client(&self) -> Option<&ModernClient> {
        match self {
            Era::Modern { client, .. } => Some(client),
            Era::Legacy => None,
        }
    }
}

/// The era of every backend of one config, each probed at most once (a probe that could
/// not reach the backend is not kept: the next request probes again).
#[derive(Default)]
pub(crate) struct Eras {
    slots: Mutex<HashMap<String, Arc<OnceCell<Arc<Era>>>>>,
}

impl Eras {
    /// The era of `spec`, probing it the first time.
    pub async fn of(&self, spec: &BackendSpec) -> Result<Arc<Era>, String> {
        let cell = {
            let mut slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(slots.entry(spec.name.clone()).or_default())
        };
        cell.get_or_try_init(|| probe(spec)).await.cloned()
    }

    /// The era of `name` if it is known already.
    pub fn known(&self, name: &str) -> Option<Arc<Era>> {
        let slots = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.get(name).and_then(|c| c.get().cloned())
    }
}

async fn probe(spec: &BackendSpec) -> Result<Arc<Era>, String> {
    if spec.exchange.is_some() || spec.transport == Transport::Sse {
        return Ok(Arc::new(Era::Legacy));
    }
    let client = ModernClient::new(&spec.url, &spec.session_options())
        .await
        .map_err(|e| format!("backend {:?}: {e}", spec.name))?;
    let answer = tokio::time::timeout(PROBE_LIMIT, client.discover("apiary-vmcp")).await;
    let era = match answer {
        Err(_) => return Err(format!("backend {:?}: server/discover got no answer within {PROBE_LIMIT:?}", spec.name)),
        Ok(Ok(result)) if modern::offers_modern(&result) => {
            let capabilities = serde_json::from_slice::<Value>(&result)
                .ok()
                .and_then(|mut v| v.get_mut("capabilities").map(Value::take))
                .unwrap_or(Value::Null);
            Era::Modern { client: Box::new(client), capabilities }
        }
        Ok(Ok(_)) => Era::Legacy,
        // Reached, and refused the probe: a legacy server.
        Ok(Err(ClientError::HttpStatus { status, .. })) if status < 500 => Era::Legacy,
        Ok(Err(ClientError::Protocol(_) | ClientError::JsonRpc { .. })) => Era::Legacy,
        Ok(Err(e)) => return Err(format!("backend {:?}: {e}", spec.name)),
    };
    tracing::info!(
        backend = %spec.name,
        era = if matches!(era, Era::Modern { .. }) { "2026-07-28" } else { "legacy" },
        "backend era learnt"
    );
    Ok(Arc::new(era))
}
