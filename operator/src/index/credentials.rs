//! Secrets as a DestinationRule's `tls.credentialName` reads them (Istio's keys and order): the client
//! certificate and key as a pair, `cert` and `key` (a generic Secret), else `tls.crt` and `tls.key` (a
//! `kubernetes.io/tls` one); the roots under `cacert`, else `ca.crt`, each with the revocation lists of its key
//! set (`crl`, `ca.crl`), from a Secret named `<name>-cacert` when it has roots, else from the Secret itself.
//! An empty value counts as missing. A Secret is held as its credential alone as soon as it is read ([`held`]):
//! nothing else of it (other keys, annotations such as kubectl's last-applied copy) stays in memory, and the
//! index and every snapshot share that one copy. Pure.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use weft_crds::destination_rule::TlsMode;

/// The keys read, per part, in Istio's order of preference (a generic Secret's, then a `kubernetes.io/tls` one's).
const CERTIFICATE_KEYS: [&str; 2] = ["cert", "tls.crt"];
const KEY_KEYS: [&str; 2] = ["key", "tls.key"];
const CA_KEYS: [&str; 2] = ["cacert", "ca.crt"];
/// The revocation lists, each read only with the roots of its key set (`crl` with `cacert`, `ca.crl` with
/// `ca.crt`, as Istio pairs them).
const CRL_KEYS: [&str; 2] = ["crl", "ca.crl"];
/// The suffix of the Secret that may hold the roots apart (Istio's).
const CA_SECRET_SUFFIX: &str = "-cacert";

/// The PEM texts of each Secret, by `namespace/name`; each shared (`Arc`), so that a Secret's event copies the
/// map's pointers, not every certificate in it.
pub type Credentials = BTreeMap<String, Arc<TlsCredential>>;

/// What a Secret holds for TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsCredential {
    pub certificate: Option<Vec<u8>>,
    pub key: Option<Vec<u8>>,
    pub ca: Option<Vec<u8>>,
    pub crl: Option<Vec<u8>>,
    /// Why the proxy could not read `crl`, if it could not: found once, when the Secret is read, rather than at
    /// each status pass.
    pub crl_problem: Option<String>,
}

/// A Secret as the operator holds it: its name and namespace, and the credential read from it, shared (`Arc`)
/// with the snapshots' [`Credentials`].
#[derive(Debug, Clone, PartialEq)]
pub struct HeldSecret {
    pub metadata: ObjectMeta,
    pub credential: Arc<TlsCredential>,
}

/// The Secret as held: its credential, its name and namespace, and nothing else.
pub fn held(secret: Secret) -> HeldSecret {
    let kept = trimmed(secret);
    HeldSecret { credential: Arc::new(credential_of(&kept)), metadata: kept.metadata }
}

/// A Secret with only its name, namespace and the keys of [`TlsCredential`] (`stringData`, which only a file of
/// standalone mode carries, folded into `data` as the API server does).
pub fn trimmed(secret: Secret) -> Secret {
    let mut data = secret.data.unwrap_or_default();
    for (key, text) in secret.string_data.unwrap_or_default() {
        data.insert(key, ByteString(text.into_bytes()));
    }
    let wanted =
        |key: &String| CERTIFICATE_KEYS.iter().chain(&KEY_KEYS).chain(&CA_KEYS).chain(&CRL_KEYS).any(|k| k == key);
    data.retain(|key, _| wanted(key));
    let metadata =
        ObjectMeta { name: secret.metadata.name, namespace: secret.metadata.namespace, ..ObjectMeta::default() };
    Secret { metadata, data: Some(data), ..Secret::default() }
}

/// The credential of a (trimmed) Secret.
pub fn credential_of(secret: &Secret) -> TlsCredential {
    let value = |key: &str| {
        let text = secret.data.as_ref()?.get(key)?;
        (!text.0.is_empty()).then(|| text.0.clone())
    };
    // The certificate and key from one key set: never one Secret's `cert` with its `tls.key`.
    let pair = CERTIFICATE_KEYS.iter().zip(&KEY_KEYS).find_map(|(cert, key)| Some((value(cert)?, value(key)?)));
    let (certificate, key) = match pair {
        Some((certificate, key)) => (Some(certificate), Some(key)),
        None => (CERTIFICATE_KEYS.iter().find_map(|k| value(k)), KEY_KEYS.iter().find_map(|k| value(k))),
    };
    let roots = CA_KEYS.iter().zip(&CRL_KEYS).find_map(|(ca, crl)| Some((value(ca)?, value(crl))));
    let (ca, crl) = roots.map_or((None, None), |(ca, crl)| (Some(ca), crl));
    let crl_problem = crl.as_deref().and_then(crl_problem);
    TlsCredential { certificate, key, ca, crl, crl_problem }
}

/// The `namespace/name` key of [`Credentials`].
pub fn credential_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The Secrets `credentialName: name` reads: the one it names and the one its roots may be in apart.
pub fn secrets_read(name: &str) -> [String; 2] {
    [name.to_string(), format!("{name}{CA_SECRET_SUFFIX}")]
}

/// What `credentialName: name` of a rule in `namespace` gives: the Secret's certificate and key, the roots (and
/// the revocation lists beside them) of the `-cacert` Secret when it has roots, else its own; `None` when
/// neither Secret exists.
pub fn resolve(credentials: &Credentials, namespace: &str, name: &str) -> Option<TlsCredential> {
    let [own, roots] = secrets_read(name);
    let apart = credentials.get(&credential_key(namespace, &roots));
    let mut found = credentials.get(&credential_key(namespace, &own)).map(|c| TlsCredential::clone(c));
    if let Some(roots) = apart.filter(|s| s.ca.is_some()) {
        let found = found.get_or_insert_default();
        (found.ca, found.crl, found.crl_problem) = (roots.ca.clone(), roots.crl.clone(), roots.crl_problem.clone());
    }
    found.or_else(|| apart.map(|_| TlsCredential::default()))
}

/// Whether origination with `tls` reads roots from its Secret: not when it verifies nothing
/// (`insecureSkipVerify`), so a Secret without roots is no problem then.
pub fn reads_roots(tls: &weft_crds::destination_rule::ClientTlsSettings) -> bool {
    tls.insecure_skip_verify != Some(true)
}

/// Why `credentialName: name` of a rule in `namespace` cannot serve `mode`, if it cannot: `MUTUAL` needs the
/// certificate and key (roots are optional, as `caCertificates` is: the system's), `SIMPLE` the roots.
pub fn problem(credentials: &Credentials, namespace: &str, name: &str, mode: TlsMode) -> Option<String> {
    if !matches!(mode, TlsMode::Simple | TlsMode::Mutual) {
        return None; // no TLS origination: the Secret is not read
    }
    let Some(credential) = resolve(credentials, namespace, name) else {
        return Some(format!("no Secret {namespace}/{name}"));
    };
    let missing = |part: &Option<Vec<u8>>, keys: &[&str]| part.is_none().then(|| keys.join(" or "));
    let missing: Vec<String> = match mode {
        TlsMode::Mutual => [missing(&credential.certificate, &CERTIFICATE_KEYS), missing(&credential.key, &KEY_KEYS)]
            .into_iter()
            .flatten()
            .collect(),
        TlsMode::Simple => missing(&credential.ca, &CA_KEYS).into_iter().collect(),
        TlsMode::Disable | TlsMode::IstioMutual => Vec::new(),
    };
    if !missing.is_empty() {
        let also =
            if mode == TlsMode::Simple { format!(" (nor does {name}{CA_SECRET_SUFFIX})") } else { String::new() };
        return Some(format!("Secret {namespace}/{name} has no {}{also}", missing.join(", no ")));
    }
    None
}

/// Why the revocation lists `credentialName: name` of a rule in `namespace` carries beside its roots cannot be
/// used, if they cannot. Only a rule that reads the roots ([`reads_roots`]) uses them.
pub fn revocation_problem(credentials: &Credentials, namespace: &str, name: &str) -> Option<String> {
    let credential = resolve(credentials, namespace, name)?;
    let why = credential.crl_problem.as_ref()?;
    Some(format!("the revocation lists of Secret {namespace}/{name} (or its -cacert): {why}"))
}

/// Why the proxy could not use these revocation lists (PEM), if it could not: it reads version 2 CRLs with a
/// next update, as webpki does; anything else would fail every connection of the cluster.
fn crl_problem(pem: &[u8]) -> Option<String> {
    use x509_parser::prelude::{FromDer, X509Version};
    use x509_parser::revocation_list::CertificateRevocationList;
    let mut lists = 0;
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let Ok(block) = block else { return Some("not PEM".into()) };
        if block.label != "X509 CRL" {
            continue;
        }
        lists += 1;
        let list = match CertificateRevocationList::from_der(&block.contents) {
            Ok((_, list)) => list,
            Err(err) => return Some(format!("list {lists} is not a CRL: {err}")),
        };
        if list.version() != Some(X509Version::V2) || list.next_update().is_none() {
            return Some(format!("list {lists} is not a version 2 CRL with a next update, the only kind read"));
        }
    }
    (lists == 0).then(|| "no PEM X509 CRL in them".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, data: &[(&str, &str)]) -> (String, Arc<TlsCredential>) {
        let data = data.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect();
        let secret = Secret {
            metadata: ObjectMeta { name: Some(name.into()), namespace: Some("shop".into()), ..ObjectMeta::default() },
            data: Some(data),
            ..Secret::default()
        };
        (credential_key("shop", name), held(secret).credential)
    }

    #[test]
    fn istio_s_keys_are_read_and_nothing_else_is_kept() {
        let mut annotated = Secret {
            metadata: ObjectMeta {
                name: Some("client".into()),
                annotations: Some(BTreeMap::from([("last-applied".into(), "the whole secret".into())])),
                ..ObjectMeta::default()
            },
            string_data: Some(BTreeMap::from([("tls.crt".into(), "CERT".into()), ("password".into(), "x".into())])),
            ..Secret::default()
        };
        annotated.data = Some(BTreeMap::from([("key".into(), ByteString(b"KEY".to_vec()))]));
        let kept = trimmed(annotated.clone());
        assert!(kept.metadata.annotations.is_none() && kept.string_data.is_none());
        assert_eq!(
            kept.data.as_ref().map(|d| d.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["key".into(), "tls.crt".into()])
        );
        let held = held(annotated);
        assert_eq!(held.metadata, ObjectMeta { name: Some("client".into()), ..ObjectMeta::default() });
        let credential = held.credential;
        assert_eq!(
            (credential.certificate.as_deref(), credential.key.as_deref()),
            (Some(&b"CERT"[..]), Some(&b"KEY"[..]))
        );
    }

    /// A version 2 CRL with a next update, as a CA writes one (PEM).
    fn real_crl() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::new(params, key);
        let now = time::OffsetDateTime::now_utc();
        let list = rcgen::CertificateRevocationListParams {
            this_update: now,
            next_update: now + time::Duration::days(1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: Vec::new(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        list.signed_by(&issuer).unwrap().pem().unwrap()
    }

    #[test]
    fn roots_may_live_apart_and_what_a_mode_lacks_is_named() {
        let crl = real_crl();
        let credentials: Credentials = [
            secret("client", &[("tls.crt", "C"), ("tls.key", "K"), ("ca.crt", "OWN"), ("ca.crl", "OWN-CRL")]),
            secret("client-cacert", &[("ca.crt", "R"), ("ca.crl", &crl)]),
            secret("roots-only", &[("cacert", "R2")]),
        ]
        .into_iter()
        .collect();
        let client = resolve(&credentials, "shop", "client").unwrap();
        assert_eq!(client.ca.as_deref(), Some(&b"R"[..]), "from client-cacert");
        assert_eq!(client.crl.as_deref(), Some(crl.as_bytes()), "with the roots");
        // A list the proxy could not read is a problem of the rule, not only a failed connection.
        let garbled: Credentials =
            [secret("roots", &[("cacert", "R"), ("crl", "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")])]
                .into_iter()
                .collect();
        assert_eq!(problem(&garbled, "shop", "roots", TlsMode::Simple), None, "roots it has");
        let said = revocation_problem(&garbled, "shop", "roots").unwrap_or_default();
        assert!(
            said.starts_with("the revocation lists of Secret shop/roots (or its -cacert): list 1 is not a CRL"),
            "{said}"
        );
        let none: Credentials = [secret("roots", &[("cacert", "R"), ("crl", "plain text")])].into_iter().collect();
        assert!(revocation_problem(&none, "shop", "roots").is_some_and(|p| p.ends_with("no PEM X509 CRL in them")));
        // Istio's pairs: `crl` with `cacert`, `ca.crl` with `ca.crt`; no list without its roots.
        let crl_of = |keys: &[(&str, &str)]| {
            let own: Credentials = [secret("own", keys)].into_iter().collect();
            resolve(&own, "shop", "own").unwrap().crl
        };
        assert_eq!(
            crl_of(&[("cacert", "R"), ("crl", "G"), ("ca.crt", "R2"), ("ca.crl", "T")]).as_deref(),
            Some(&b"G"[..])
        );
        assert_eq!(crl_of(&[("ca.crt", "R"), ("crl", "G"), ("ca.crl", "T")]).as_deref(), Some(&b"T"[..]));
        assert_eq!(crl_of(&[("ca.crt", "R"), ("crl", "G")]), None, "crl goes with cacert only");
        assert_eq!(crl_of(&[("tls.crt", "C"), ("tls.key", "K"), ("ca.crl", "T")]), None, "no roots, no list");
        assert_eq!(problem(&credentials, "shop", "client", TlsMode::Mutual), None);
        assert_eq!(problem(&credentials, "shop", "client", TlsMode::Simple), None);
        assert_eq!(problem(&credentials, "shop", "roots-only", TlsMode::Simple), None);
        assert_eq!(
            problem(&credentials, "shop", "roots-only", TlsMode::Mutual).as_deref(),
            Some("Secret shop/roots-only has no cert or tls.crt, no key or tls.key")
        );
        assert_eq!(
            problem(&credentials, "other", "client", TlsMode::Mutual).as_deref(),
            Some("no Secret other/client")
        );
        // Only the roots' Secret: enough for SIMPLE.
        let apart: Credentials = [secret("api-cacert", &[("ca.crt", "R")])].into_iter().collect();
        assert_eq!(problem(&apart, "shop", "api", TlsMode::Simple), None);
    }
}
