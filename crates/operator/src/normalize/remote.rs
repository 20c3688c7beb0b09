//! Canonical views of the two remote kinds, MCPRemoteProxy and MCPServerEntry: `remoteURL`
//! over `remoteUrl`, `groupRef` as a string, defaults.

use super::{DEFAULT_PORT, Normalize, Normalized, canonical_group_ref, pick};
use crate::crd::common::{RemoteTransport, SessionAffinity};
use crate::crd::mcpremoteproxy::MCPRemoteProxySpec;
use crate::crd::mcpserverentry::MCPServerEntrySpec;

const REMOTE_URL: &str = "spec.remoteURL";
const REMOTE_URL_ALIAS: &str = "spec.remoteUrl";

impl Normalize for MCPRemoteProxySpec {
    fn normalize(&self) -> Normalized<Self> {
        let mut conflicts = Vec::new();
        let mut spec = self.clone();
        spec.remote_url =
            pick(REMOTE_URL, self.remote_url.clone(), REMOTE_URL_ALIAS, self.remote_url_alias.clone(), &mut conflicts);
        spec.remote_url_alias = None;
        spec.proxy_port = Some(self.proxy_port.unwrap_or(DEFAULT_PORT));
        spec.transport = Some(self.transport.unwrap_or(RemoteTransport::StreamableHttp));
        spec.session_affinity = Some(self.session_affinity.unwrap_or(SessionAffinity::ClientIP));
        spec.group_ref = self.group_ref.as_ref().map(canonical_group_ref);
        Normalized { spec, conflicts }
    }
}

impl Normalize for MCPServerEntrySpec {
    fn normalize(&self) -> Normalized<Self> {
        let mut conflicts = Vec::new();
        let mut spec = self.clone();
        spec.remote_url =
            pick(REMOTE_URL, self.remote_url.clone(), REMOTE_URL_ALIAS, self.remote_url_alias.clone(), &mut conflicts);
        spec.remote_url_alias = None;
        spec.allow_private_endpoint = Some(self.allow_private_endpoint.unwrap_or(false));
        spec.group_ref = canonical_group_ref(&self.group_ref);
        Normalized { spec, conflicts }
    }
}
