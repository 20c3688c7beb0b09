//! Kinds with no second spellings: their canonical view is the spec itself.

use super::{Normalize, Normalized};
use crate::crd::authzconfig::MCPAuthzConfigSpec;
use crate::crd::externalauth::MCPExternalAuthConfigSpec;
use crate::crd::mcpgroup::MCPGroupSpec;
use crate::crd::oidcconfig::MCPOIDCConfigSpec;
use crate::crd::telemetryconfig::MCPTelemetryConfigSpec;
use crate::crd::toolconfig::MCPToolConfigSpec;

macro_rules! as_written {
    ($($spec:ty),* $(,)?) => {$(
        impl Normalize for $spec {
            fn normalize(&self) -> Normalized<Self> {
                Normalized { spec: self.clone(), conflicts: Vec::new() }
            }
        }
    )*};
}

as_written!(
    MCPGroupSpec,
    MCPExternalAuthConfigSpec,
    MCPOIDCConfigSpec,
    MCPAuthzConfigSpec,
    MCPToolConfigSpec,
    MCPTelemetryConfigSpec,
);
