//! The checks of one MCPServerEntry against what its references name, one per condition:
//! the group exists, the MCPExternalAuthConfig exists and can be carried out, the CA bundle key
//! holds a certificate, the headers are allowed and their Secrets hold their keys, and the
//! remote URL's literal host is not a blocked address. Pure: the objects come in [`Found`].

use std::collections::{BTreeMap, BTreeSet};

use apiary_config::ssrf::{self, RemoteHost, SsrfError};
use apiary_policy::outgoing::check_name;
use k8s_openapi::api::core::v1::ConfigMap;

use crate::crd::externalauth::MCPExternalAuthConfig;
use crate::crd::mcpgroup::MCPGroup;
use crate::crd::mcpserverentry::MCPServerEntrySpec;
use crate::extauth;
use crate::reconcile::check::Check;

/// Condition: the `groupRef` names an existing MCPGroup.
pub const GROUP_REF_VALIDATED: &str = "GroupRefValidated";
/// Condition: the `externalAuthConfigRef` (if any) names a usable MCPExternalAuthConfig.
pub const EXTERNAL_AUTH_CONFIG_VALIDATED: &str = "ExternalAuthConfigValidated";
/// Condition: the `caBundleRef` (if any) names a ConfigMap key holding a certificate.
pub const CA_BUNDLE_REF_VALIDATED: &str = "CABundleRefValidated";
/// Condition: the `remoteURL` is an http(s) URL whose literal host is allowed.
pub const REMOTE_URL_VALIDATED: &str = "RemoteURLValidated";
/// Condition (Apiary-only): the `headerForward` names are allowed and their Secrets hold the keys.
pub const HEADER_FORWARD_VALIDATED: &str = "HeaderForwardValidated";

/// What the entry's references name, as read from the API (`None`: unset or not found).
#[derive(Clone, Debug, Default)]
pub struct Found {
    /// The MCPGroup of `groupRef`.
    pub group: Option<MCPGroup>,
    /// The MCPExternalAuthConfig of `externalAuthConfigRef`.
    pub external_auth: Option<MCPExternalAuthConfig>,
    /// The ConfigMap of `caBundleRef.configMapRef`.
    pub ca_bundle: Option<ConfigMap>,
    /// The key names (never the values) of each Secret of `headerForward.addHeadersFromSecret`
    /// that exists.
    pub secret_keys: BTreeMap<String, BTreeSet<String>>,
}

/// Every check of the normalised `spec`, in condition order.
pub fn checks(spec: &MCPServerEntrySpec, found: &Found) -> Vec<Check> {
    vec![
        group(spec, found),
        external_auth(spec, found),
        ca_bundle(spec, found),
        header_forward(spec, found),
        remote_url(spec),
    ]
}

fn group(spec: &MCPServerEntrySpec, found: &Found) -> Check {
    let t = GROUP_REF_VALIDATED;
    match spec.group_ref.name() {
        Err(e) => Check::fail(t, "InvalidGroupRef", format!("spec.groupRef: {e}")),
        Ok(name) if found.group.is_some() => Check::pass(t, "GroupFound", format!("MCPGroup {name} exists")),
        Ok(name) => Check::fail(t, "GroupNotFound", format!("spec.groupRef: MCPGroup {name} not found")),
    }
}

fn external_auth(spec: &MCPServerEntrySpec, found: &Found) -> Check {
    let t = EXTERNAL_AUTH_CONFIG_VALIDATED;
    let Some(r) = &spec.external_auth_config_ref else {
        return Check::pass(t, "NotSet", "no externalAuthConfigRef: requests carry no credentials");
    };
    match &found.external_auth {
        None => Check::fail(
            t,
            "ExternalAuthConfigNotFound",
            format!("spec.externalAuthConfigRef: MCPExternalAuthConfig {} not found", r.name),
        ),
        Some(config) => match extauth::validity(config) {
            Ok(()) => Check::pass(t, "ExternalAuthConfigValid", format!("MCPExternalAuthConfig {} is valid", r.name)),
            Err(v) => Check::fail(
                t,
                v.reason,
                format!("spec.externalAuthConfigRef: MCPExternalAuthConfig {}: {}", r.name, v.message),
            ),
        },
    }
}

/// The text marking a PEM certificate.
const PEM_CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----";

fn ca_bundle(spec: &MCPServerEntrySpec, found: &Found) -> Check {
    let t = CA_BUNDLE_REF_VALIDATED;
    let Some(r) = spec.ca_bundle_ref.as_ref().and_then(|c| c.config_map_ref.as_ref()) else {
        return Check::pass(t, "NotSet", "no caBundleRef: the system roots are trusted");
    };
    let optional = r.optional == Some(true);
    let field = "spec.caBundleRef.configMapRef";
    let Some(cm) = &found.ca_bundle else {
        return if optional {
            Check::pass(t, "OptionalNotFound", format!("ConfigMap {} not found; it is optional", r.name))
        } else {
            Check::fail(t, "CABundleNotFound", format!("{field}: ConfigMap {} not found", r.name))
        };
    };
    let text = cm.data.as_ref().and_then(|d| d.get(&r.key)).map(|v| v.contains(PEM_CERTIFICATE));
    let binary = cm
        .binary_data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .map(|v| v.0.windows(PEM_CERTIFICATE.len()).any(|w| w == PEM_CERTIFICATE.as_bytes()));
    match text.or(binary) {
        Some(true) => {
            Check::pass(t, "CABundleFound", format!("ConfigMap {} key {} holds a certificate", r.name, r.key))
        }
        Some(false) => Check::fail(
            t,
            "CABundleInvalid",
            format!("{field}: ConfigMap {} key {} holds no PEM certificate", r.name, r.key),
        ),
        None if optional => {
            Check::pass(t, "OptionalNotFound", format!("ConfigMap {} has no key {}; it is optional", r.name, r.key))
        }
        None => Check::fail(t, "CABundleKeyNotFound", format!("{field}: ConfigMap {} has no key {}", r.name, r.key)),
    }
}

fn header_forward(spec: &MCPServerEntrySpec, found: &Found) -> Check {
    let t = HEADER_FORWARD_VALIDATED;
    let Some(h) = &spec.header_forward else {
        return Check::pass(t, "NotSet", "no headerForward");
    };
    let plain = h.add_plaintext_headers.iter().flatten().map(|(name, _)| name.as_str());
    let secret = h.add_headers_from_secret.iter().flatten().map(|s| s.header_name.as_str());
    for name in plain.chain(secret) {
        if let Err(e) = check_name(name) {
            return Check::fail(t, "InvalidHeaderName", format!("spec.headerForward: {e}"));
        }
    }
    for s in h.add_headers_from_secret.iter().flatten() {
        let r = &s.value_secret_ref;
        match found.secret_keys.get(&r.name) {
            None => {
                return Check::fail(
                    t,
                    "HeaderSecretNotFound",
                    format!("spec.headerForward.addHeadersFromSecret[{}]: Secret {} not found", s.header_name, r.name),
                );
            }
            Some(keys) if !keys.contains(&r.key) => {
                return Check::fail(
                    t,
                    "HeaderSecretKeyNotFound",
                    format!(
                        "spec.headerForward.addHeadersFromSecret[{}]: Secret {} has no key {}",
                        s.header_name, r.name, r.key
                    ),
                );
            }
            Some(_) => {}
        }
    }
    Check::pass(t, "HeadersValid", "every header name is allowed and every Secret holds its key")
}

fn remote_url(spec: &MCPServerEntrySpec) -> Check {
    let t = REMOTE_URL_VALIDATED;
    let Some(url) = spec.remote_url.as_deref() else {
        return Check::fail(t, "InvalidURL", "spec.remoteURL is not set");
    };
    let allow_private = spec.allow_private_endpoint == Some(true);
    match ssrf::check_url(url, allow_private) {
        Ok(RemoteHost::Address(ip)) => Check::pass(t, "RemoteURLValid", format!("address {ip} is allowed")),
        // ToolHive validates the literal URL only; names are resolved (and each address checked
        // again) by vMCP when it connects, which is what defeats DNS rebinding.
        Ok(RemoteHost::Name(host)) => {
            Check::pass(t, "RemoteURLValid", format!("host name {host}: its addresses are checked when vMCP connects"))
        }
        Err(e @ SsrfError::Blocked { class, .. }) => {
            let hint = if class.is_private_range() { "; set allowPrivateEndpoint: true to allow it" } else { "" };
            Check::fail(t, "BlockedEndpoint", format!("spec.remoteURL {url}: {e}{hint}"))
        }
        Err(e) => Check::fail(t, "InvalidURL", format!("spec.remoteURL {url}: {e}")),
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
