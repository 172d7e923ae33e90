//! MQTT over TLS between the real edge (built with the `tls` feature) and the
//! real hub's `--mqtts-listen`: delivery, mutual TLS, and the refusals an
//! operator has to be able to read from the logs. Certificates are made here,
//! at test time, with rcgen.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use opmas_e2e::{bin, dropbear_attack, free_addr, wait_for, Device, Edge, Hub};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// PEM files of a test PKI.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    /// A second CA that signed nothing the hub uses.
    other_ca: PathBuf,
}

/// A CA, a server certificate for 127.0.0.1 and localhost, a client
/// certificate, and an unrelated CA, written to `dir`.
fn pki(dir: &Path) -> Pki {
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params("OPMAS test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca, &ca_key);

    let server_key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    server.distinguished_name.push(DnType::CommonName, "opmas-hub");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server.signed_by(&server_key, &issuer).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(Vec::new()).unwrap();
    client.distinguished_name.push(DnType::CommonName, "gw-tls-mutual");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client.signed_by(&client_key, &issuer).unwrap();

    let other_key = KeyPair::generate().unwrap();
    let other_ca = ca_params("some other CA").self_signed(&other_key).unwrap();

    Pki {
        ca: write("ca.crt", ca_cert.pem()),
        server_cert: write("hub.crt", server_cert.pem()),
        server_key: write("hub.key", server_key.serialize_pem()),
        client_cert: write("edge.crt", client_cert.pem()),
        client_key: write("edge.key", client_key.serialize_pem()),
        other_ca: write("other-ca.crt", other_ca.pem()),
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut ca = CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, name);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca
}

/// `opmas-hub serve` flags for a TLS listener on `addr`, with mutual TLS if `client_ca`.
fn tls_args(addr: SocketAddr, pki: &Pki, client_ca: bool) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "--mqtts-listen".into(),
        addr.to_string().into(),
        "--tls-cert".into(),
        pki.server_cert.clone().into(),
        "--tls-key".into(),
        pki.server_key.clone().into(),
    ];
    if client_ca {
        args.extend(["--tls-client-ca".into(), pki.ca.clone().into()]);
    }
    args
}

/// The hub section options of an edge that trusts `ca`, with a client certificate if given.
fn edge_options(ca: &Path, client: Option<(&Path, &Path)>) -> String {
    let mut o = format!("\toption ca_file '{}'\n", ca.display());
    if let Some((cert, key)) = client {
        o.push_str(&format!("\toption cert_file '{}'\n\toption key_file '{}'\n", cert.display(), key.display()));
    }
    o
}

fn status(hub: &Hub, device: &Device) -> Option<String> {
    let (_, d) = hub.get(&format!("/devices/{}", device.id)).ok()?;
    d["status"].as_str().map(str::to_owned)
}

fn wait_online(hub: &Hub, edge: &Edge, device: &Device) {
    wait_for(Duration::from_secs(15), &format!("{} to come online over TLS", device.id), || {
        (status(hub, device)? == "online").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n--- hub log ---\n{}\n--- edge log ---\n{}", hub.log(), edge.log()));
}

fn wait_finding(hub: &Hub, edge: &Edge, ip: &str) {
    wait_for(Duration::from_secs(10), &format!("a finding for {ip}"), || {
        let findings = hub.findings("kind=ssh.bruteforce&limit=50").ok()?;
        findings.iter().any(|f| f["src_ip"] == ip).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n--- hub log ---\n{}\n--- edge log ---\n{}", hub.log(), edge.log()));
}

/// Waits until the edge's log shows `what`, then checks that the device is
/// still not online (it must never have been let in).
fn wait_refused(hub: &Hub, edge: &Edge, device: &Device, what: &str) {
    wait_for(Duration::from_secs(10), &format!("the edge to log {what:?}"), || edge.log().contains(what).then_some(()))
        .unwrap_or_else(|e| panic!("{e}\n--- hub log ---\n{}\n--- edge log ---\n{}", hub.log(), edge.log()));
    assert_ne!(status(hub, device).as_deref(), Some("online"), "refused edge is online:\n{}", edge.log());
}

#[test]
fn brute_force_arrives_over_tls_while_another_client_stalls_its_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let mqtts = free_addr();
    let hub = Hub::start_with(dir.path(), tls_args(mqtts, &pki, false)).unwrap();
    let device = hub.enrol("gw-tls-1").unwrap();

    // A client that connects to the TLS port and never says anything must not
    // hold up anyone else's handshake.
    let _silent = std::net::TcpStream::connect(mqtts).unwrap();

    let url = format!("mqtts://127.0.0.1:{}", mqtts.port());
    let edge = Edge::start_url(dir.path(), &device, &url, &edge_options(&pki.ca, None)).unwrap();
    wait_online(&hub, &edge, &device);
    edge.append(&dropbear_attack("203.0.113.77", 12)).unwrap();
    wait_finding(&hub, &edge, "203.0.113.77");
    assert!(edge.log().contains(&format!("connected to hub hub={url}")), "{}", edge.log());
}

#[test]
fn mutual_tls_admits_only_an_edge_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let mqtts = free_addr();
    let hub = Hub::start_with(dir.path(), tls_args(mqtts, &pki, true)).unwrap();
    assert!(hub.log().contains("client certificates required"), "{}", hub.log());
    let url = format!("mqtts://127.0.0.1:{}", mqtts.port());

    let with_cert = hub.enrol("gw-tls-mutual").unwrap();
    let options = edge_options(&pki.ca, Some((&pki.client_cert, &pki.client_key)));
    let edge = Edge::start_url(dir.path(), &with_cert, &url, &options).unwrap();
    wait_online(&hub, &edge, &with_cert);
    edge.append(&dropbear_attack("198.51.100.77", 8)).unwrap();
    wait_finding(&hub, &edge, "198.51.100.77");

    let without_cert = hub.enrol("gw-tls-nocert").unwrap();
    let edge = Edge::start_url(dir.path(), &without_cert, &url, &edge_options(&pki.ca, None)).unwrap();
    wait_refused(&hub, &edge, &without_cert, "the hub refused this router's client certificate");
    assert!(hub.log().contains("TLS handshake failed"), "{}", hub.log());
    assert!(hub.log().contains("no certificates"), "{}", hub.log());
    assert!(hub.stats().unwrap()["tls_refused"].as_u64().unwrap() >= 1, "TLS refusal not counted");
}

#[test]
fn an_edge_that_does_not_trust_the_hubs_ca_is_refused_with_a_certificate_error() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let mqtts = free_addr();
    let hub = Hub::start_with(dir.path(), tls_args(mqtts, &pki, false)).unwrap();
    let device = hub.enrol("gw-tls-wrong-ca").unwrap();
    let url = format!("mqtts://127.0.0.1:{}", mqtts.port());
    let edge = Edge::start_url(dir.path(), &device, &url, &edge_options(&pki.other_ca, None)).unwrap();
    wait_refused(&hub, &edge, &device, "the hub's certificate is not signed by a CA in option ca_file");
    assert!(edge.log().contains("UnknownIssuer"), "{}", edge.log());
    assert!(hub.log().contains("TLS handshake failed"), "{}", hub.log());
}

#[test]
fn the_hub_does_not_start_with_a_missing_tls_file_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let missing = dir.path().join("no-such-hub.crt");
    let out = std::process::Command::new(bin("opmas-hub"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path().join("hub-data"))
        .args(["--mqtt-listen", &free_addr().to_string(), "--http-listen", &free_addr().to_string()])
        .args(["--mqtts-listen", &free_addr().to_string(), "--tls-cert"])
        .arg(&missing)
        .arg("--tls-key")
        .arg(&pki.server_key)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("tls_cert (--tls-cert) {}: cannot read it", missing.display())), "{stderr}");
}
