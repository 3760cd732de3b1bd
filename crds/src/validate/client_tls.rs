//! `trafficPolicy.tls` (Istio's `ClientTLSSettings`) with Istio's rules: `MUTUAL` needs a client certificate and
//! key (files, or a Secret named by `credentialName`, never both), `ISTIO_MUTUAL` takes the mesh's certificates
//! and so names none. That `credentialName` needs a `workloadSelector` is the rule's, checked with the rule.

use super::is_dns_label;
use crate::FieldError;
use crate::destination_rule::{ClientTlsSettings, TlsMode};
use crate::field_path::Path;

pub(super) fn check_client_tls(path: &Path, tls: &ClientTlsSettings, errors: &mut Vec<FieldError>) {
    for (i, name) in tls.subject_alt_names.iter().enumerate() {
        if name.trim().is_empty() {
            errors.push(path.field("subjectAltNames").index(i).error("subject alt name must not be empty"));
        }
    }
    let files = [
        ("clientCertificate", &tls.client_certificate),
        ("privateKey", &tls.private_key),
        ("caCertificates", &tls.ca_certificates),
        ("caCrl", &tls.ca_crl),
    ];
    // Envoy refuses a revocation list without roots of its own: against the system's, every chain would lack
    // lists.
    if tls.ca_crl.is_some() && tls.ca_certificates.is_none() && tls.credential_name.is_none() {
        errors.push(path.field("caCrl").error("caCrl needs caCertificates: the lists are for those roots' chains"));
    }
    if let Some(name) = &tls.credential_name {
        check_credential_name(path, tls, name, &files, errors);
    }
    match tls.mode {
        TlsMode::IstioMutual => {
            let credential = ("credentialName", &tls.credential_name);
            for (field, _) in files.iter().chain([&credential]).filter(|(_, v)| v.is_some()) {
                errors.push(path.field(field).error(format!(
                    "{field} cannot be set with mode ISTIO_MUTUAL: the mesh's own certificates are used"
                )));
            }
            if tls.insecure_skip_verify.is_some() {
                errors.push(path.field("insecureSkipVerify").error(
                    "insecureSkipVerify cannot be set with mode ISTIO_MUTUAL: the mesh's identities are always verified",
                ));
            }
        }
        TlsMode::Mutual if tls.credential_name.is_none() => {
            for (field, value) in &files[..2] {
                if value.as_deref().is_none_or(str::is_empty) {
                    errors.push(path.field(field).error(format!("{field} is required with mode MUTUAL")));
                }
            }
        }
        TlsMode::Mutual | TlsMode::Simple | TlsMode::Disable => {}
    }
    for (field, value) in files {
        if value.as_deref() == Some("") {
            errors.push(path.field(field).error(format!("{field} must name a file")));
        }
    }
}

/// `credentialName`: a Secret's name, instead of the files (Istio: "only one of client certificates and CA
/// certificate or credentialName can be specified").
fn check_credential_name(
    path: &Path,
    tls: &ClientTlsSettings,
    name: &str,
    files: &[(&str, &Option<String>)],
    errors: &mut Vec<FieldError>,
) {
    if name.len() > 253 || !name.split('.').all(is_dns_label) {
        errors.push(path.field("credentialName").error(format!("{name:?} is not a Secret name")));
    }
    if tls.mode != TlsMode::IstioMutual {
        for (field, _) in files.iter().filter(|(_, v)| v.is_some()) {
            errors
                .push(path.field(field).error(format!(
                    "{field} cannot be set with credentialName: the certificates come from the Secret"
                )));
        }
    }
}
