use super::*;
use rcgen::{CertificateParams, KeyPair};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

fn now() -> SystemTime {
    SystemTime::now()
}

fn authority() -> Authority {
    Authority::from_files(Authority::generate("cluster.local", now()).unwrap()).unwrap()
}

fn csr_for(sans: &[SanType]) -> String {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = sans.to_vec();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn uri(text: &str) -> SanType {
    SanType::URI(text.try_into().unwrap())
}

fn der_of(pem: &str) -> Vec<u8> {
    x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap().1.contents
}

#[test]
fn a_workload_certificate_carries_only_its_spiffe_id_is_short_lived_and_chains_to_the_root() {
    let ca = authority();
    let id = SpiffeId::new("cluster.local", "shop", "reviews");
    let chain = ca.sign_workload(&csr_for(&[uri(&id.to_string())]), &id, Duration::from_secs(3600), now()).unwrap();
    assert_eq!(chain.len(), 2, "the workload's certificate, then the (self-signed) root");
    assert_eq!(chain[1], ca.roots_pem());
    let der = der_of(&chain[0]);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let sans: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::URI(u) => u.to_string(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(sans, ["spiffe://cluster.local/ns/shop/sa/reviews"]);
    assert!(!cert.is_ca(), "the CSR asked for CA:TRUE; the CA does not grant it");
    let lifetime = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert_eq!(lifetime, 3600 + CLOCK_SKEW.as_secs() as i64);
    let root_der = der_of(ca.roots_pem());
    let (_, root) = X509Certificate::from_der(&root_der).unwrap();
    cert.verify_signature(Some(root.public_key())).unwrap();
}

#[test]
fn a_csr_for_another_identity_or_for_more_names_is_refused() {
    let ca = authority();
    let id = SpiffeId::new("cluster.local", "shop", "reviews");
    let hour = Duration::from_secs(3600);
    for sans in [
        vec![uri("spiffe://cluster.local/ns/shop/sa/ratings")],
        vec![uri("spiffe://cluster.local/ns/shop/sa/reviews"), SanType::DnsName("bank.com".try_into().unwrap())],
        vec![],
    ] {
        let err = ca.sign_workload(&csr_for(&sans), &id, hour, now()).unwrap_err();
        assert!(matches!(err, SignError::WrongIdentity { .. }), "{sans:?}: {err}");
    }
    assert!(matches!(ca.sign_workload("garbage", &id, hour, now()), Err(SignError::Csr(_))));
}

#[test]
fn an_intermediate_signs_and_the_chain_reaches_the_users_root() {
    // The user's PKI: a root, and an intermediate for Weft signed by it (Istio's plug-in CA layout).
    let root = Authority::from_files(Authority::generate("cluster.local", now()).unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name = name("intermediate", "user");
    let intermediate = params.signed_by(&key, &root.issuer).unwrap();
    let files = CaFiles {
        ca_cert: intermediate.pem(),
        ca_key: key.serialize_pem(),
        root_cert: root.roots_pem().to_string(),
        cert_chain: format!("{}{}", intermediate.pem(), root.roots_pem()),
    };
    let ca = Authority::from_files(files).unwrap();
    let id = SpiffeId::new("cluster.local", "shop", "reviews");
    let chain = ca.sign_workload(&csr_for(&[uri(&id.to_string())]), &id, Duration::from_secs(60), now()).unwrap();
    assert_eq!(chain.len(), 3, "workload, intermediate, root: {chain:?}");
    assert_eq!(chain[1], intermediate.pem());
    assert_eq!(chain[2], root.roots_pem());
}

#[test]
fn a_certificate_that_is_not_a_ca_cannot_be_the_ca() {
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["example.com".to_string()]).unwrap().self_signed(&key).unwrap();
    let files =
        CaFiles { ca_cert: leaf.pem(), ca_key: key.serialize_pem(), root_cert: leaf.pem(), cert_chain: String::new() };
    assert!(matches!(Authority::from_files(files), Err(CaError::NotACa)));
}

#[test]
fn the_serving_certificate_names_the_operators_addresses() {
    let ca = authority();
    let names = vec!["weft-operator.weft-system.svc".to_string(), "127.0.0.1".to_string()];
    let served = ca.sign_server(&names, Duration::from_secs(86_400), now()).unwrap();
    let blocks = pem_blocks(&served.chain_pem);
    assert_eq!(blocks.len(), 2);
    let der = der_of(&blocks[0]);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let sans = format!("{:?}", cert.subject_alternative_name().unwrap().unwrap().value.general_names);
    assert!(sans.contains("weft-operator.weft-system.svc") && sans.contains("IPAddress([127, 0, 0, 1])"), "{sans}");
}

#[test]
fn a_key_that_is_not_the_certificates_or_a_certificate_outside_the_bundle_is_refused() {
    let mine = Authority::generate("cluster.local", now()).unwrap();
    let other = Authority::generate("cluster.local", now()).unwrap();
    let swapped = CaFiles { ca_key: other.ca_key.clone(), ..mine.clone() };
    assert!(matches!(Authority::from_files(swapped), Err(CaError::KeyMismatch)));
    let foreign_bundle = CaFiles { root_cert: other.root_cert.clone(), ..mine };
    assert!(matches!(Authority::from_files(foreign_bundle), Err(CaError::NotChained)));
}
