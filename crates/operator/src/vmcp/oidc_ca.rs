//! The CA bundle of the vMCP's OIDC provider (`MCPOIDCConfig` `inline.caBundleRef`), trusted by
//! the vMCP process: the ConfigMap key is mounted and `SSL_CERT_DIR` names that directory beside
//! the image's own roots, so discovery, the JWKS and a token exchange at an identity provider
//! with a private CA work, and the built-in roots keep working for every other backend.

use k8s_openapi::api::core::v1::{EnvVar, Volume, VolumeMount};

use super::backends::ca_volume;
use crate::crd::oidcconfig::MCPOIDCConfig;

/// Where the provider's CA bundle is mounted.
pub const OIDC_CA_DIR: &str = "/etc/vmcp-oidc-ca";
/// The image's own roots (`/etc/ssl/certs/ca-certificates.crt`), still trusted.
const SYSTEM_CERT_DIR: &str = "/etc/ssl/certs";
/// Read by the TLS roots loader (rustls-native-certs): every file of every listed directory.
const CERT_DIR_VAR: &str = "SSL_CERT_DIR";
/// The volume's key: an entry's name never contains `/`, so no entry's CA volume is named alike.
const VOLUME_KEY: &str = "/oidc";

/// The volume, its mount and the environment variable that make the vMCP trust `oidc`'s CA
/// bundle; `None` when it names none.
pub fn trust(oidc: Option<&MCPOIDCConfig>) -> Option<(Volume, VolumeMount, EnvVar)> {
    let r = oidc?.spec.inline.as_ref()?.ca_bundle_ref.as_ref()?.config_map_ref.as_ref()?;
    let (volume, mount) = ca_volume(VOLUME_KEY, &r.name, &r.key, OIDC_CA_DIR.to_string());
    let var = EnvVar {
        name: CERT_DIR_VAR.into(),
        value: Some(format!("{SYSTEM_CERT_DIR}:{OIDC_CA_DIR}")),
        ..Default::default()
    };
    Some((volume, mount, var))
}
