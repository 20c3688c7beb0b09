//! The cluster's PKI, made with openssl: a CA, the apiserver's serving cert, one
//! `system:masters` client cert shared by every component (fine for a throwaway test
//! cluster), the service-account key pair, and the serving cert of the Keycloak that tests
//! start on the host as the apiserver's OIDC issuer (so one CA is trusted both ways). Reused
//! across runs while still valid.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use super::cmd;
use super::layout::{Layout, NODE_IP};

/// Certificates are valid this many days; regenerated when less than a day is left.
const DAYS: &str = "30";

const FILES: &[&str] = &[
    "ca.crt",
    "ca.key",
    "apiserver.crt",
    "apiserver.key",
    "admin.crt",
    "admin.key",
    "sa.key",
    "sa.pub",
    "keycloak.crt",
    "keycloak.key",
];

/// Certificates checked for expiry.
const CERTS: &[&str] = &["ca.crt", "apiserver.crt", "admin.crt", "keycloak.crt"];

pub fn ensure(layout: &Layout) -> Result<()> {
    let dir = layout.w("pki");
    if is_valid(&dir) {
        return Ok(());
    }
    cmd::remove(&dir)?;
    cmd::mkdir(&dir)?;
    let ossl = || {
        let mut c = Command::new("openssl");
        c.current_dir(&dir);
        c
    };
    cmd::run(
        ossl().args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            DAYS,
            "-subj",
            "/CN=apiary-test-ca",
        ]),
        "create the cluster CA",
    )?;
    let apiserver_san = format!(
        "subjectAltName=DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,\
         DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:{NODE_IP},IP:10.96.0.1\n\
         extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n"
    );
    sign(&dir, "apiserver", "/CN=kube-apiserver", &apiserver_san)?;
    sign(
        &dir,
        "admin",
        "/O=system:masters/CN=apiary-admin",
        "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
    )?;
    // Keycloak serves the issuer https://127.0.0.1:8443 (OIDC_ISSUER) on the host.
    sign(
        &dir,
        "keycloak",
        "/CN=apiary-test-keycloak",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
    )?;
    cmd::run(ossl().args(["genrsa", "-out", "sa.key", "2048"]), "create the service-account key")?;
    cmd::run(
        ossl().args(["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"]),
        "derive the service-account public key",
    )
}

fn sign(dir: &Path, name: &str, subject: &str, extensions: &str) -> Result<()> {
    let ext = dir.join(format!("{name}.ext"));
    cmd::write(&ext, extensions)?;
    cmd::run(
        Command::new("openssl").current_dir(dir).args([
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            subject,
        ]),
        &format!("create the {name} key and CSR"),
    )?;
    cmd::run(
        Command::new("openssl").current_dir(dir).args([
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            DAYS,
            "-out",
            &format!("{name}.crt"),
            "-extfile",
            &format!("{name}.ext"),
        ]),
        &format!("sign the {name} certificate"),
    )?;
    cmd::remove(dir.join(format!("{name}.csr")))?;
    cmd::remove(ext)
}

/// All files present and no certificate expiring within a day.
fn is_valid(dir: &Path) -> bool {
    FILES.iter().all(|f| dir.join(f).is_file())
        && CERTS.iter().all(|c| {
            cmd::succeeds(Command::new("openssl").current_dir(dir).args([
                "x509",
                "-checkend",
                "86400",
                "-noout",
                "-in",
                c,
            ]))
        })
}
