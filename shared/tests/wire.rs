//! Wire-format tests: golden bytes for every message type, and round-trip
//! properties for the envelope.
//!
//! The golden files pin the exact bytes. A failing golden test means the wire
//! format changed: if that was intended, bump `FORMAT_VERSION` or make sure
//! old edges still decode, then regenerate with
//! `UPDATE_GOLDEN=1 cargo test -p opmas-proto --test wire`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use opmas_proto::msg::*;
use opmas_proto::net::{IpNet, Mac};
use opmas_proto::{Body, Channel, DeviceId, Envelope, Secret, Topic};
use proptest::prelude::*;

fn key() -> Secret {
    Secret::from_hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f").unwrap()
}

fn dev() -> DeviceId {
    DeviceId::new("gw-lab-1").unwrap()
}

fn finding() -> Finding {
    Finding {
        seq: 42,
        agent: "security".into(),
        kind: "ssh.bruteforce".into(),
        severity: Severity::HIGH,
        subject: Subject {
            src_ip: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))),
            user: Some("root".into()),
            ..Subject::default()
        },
        count: 5,
        first_ms: 1_733_420_637_000,
        last_ms: 1_733_420_641_000,
        summary: "5 failed SSH logins from 203.0.113.7 in 4 s".into(),
        evidence: vec!["Thu Dec  5 17:43:57 2024 authpriv.warn dropbear[12388]: Bad password attempt for 'root' from 203.0.113.7:52144".into()],
        stage: Stage::New,
    }
}

/// Seals `msg`, compares with the golden file, and checks it opens again.
fn check_golden<T: Body + PartialEq + std::fmt::Debug>(name: &str, channel: Channel, msg: &T) {
    assert_eq!(T::CHANNEL, channel);
    let bytes = Envelope::sealed(dev(), 1, 1_733_420_641_500, msg, &key()).unwrap();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.bin"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &bytes).unwrap();
    }
    let golden = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    assert_eq!(bytes, golden, "wire bytes of {name} changed; see the module doc");
    let opened = Envelope::open(&Topic::new(dev(), channel), &golden, &key()).unwrap();
    assert_eq!(&opened.body::<T>().unwrap(), msg);
}

#[test]
fn status_bytes_are_stable() {
    check_golden("status_online", Channel::Status, &Status::Online);
    check_golden("status_offline", Channel::Status, &Status::Offline);
}

#[test]
fn heartbeat_bytes_are_stable() {
    let hb = Heartbeat {
        epoch: 0x1234_5678_9abc,
        uptime_s: 3600,
        interval_s: 30,
        version: "0.1.0".into(),
        config_version: 3,
        config_error: None,
        spool: SpoolStats { depth: 2, bytes: 512, budget: 1 << 20, dropped: 1, acked_upto: 40 },
        agents: vec![
            AgentStatus {
                name: "security".into(),
                state: AgentState::Running,
                events: 100,
                findings: 2,
                evicted: 0,
                restarts: 0,
                last_error: None,
                excluded: 0,
            },
            AgentStatus {
                name: "wifi".into(),
                state: AgentState::Restarting,
                events: 0,
                findings: 0,
                evicted: 0,
                restarts: 2,
                last_error: Some("panicked: index out of bounds".into()),
                excluded: 0,
            },
        ],
        counters: Counters { lines: 1000, unparsed: 3, shed: 0, truncated: 1, findings: 2 },
        load_milli: Some(150),
        rss_kib: Some(2048),
    };
    check_golden("heartbeat", Channel::Heartbeat, &hb);
}

#[test]
fn finding_batch_bytes_are_stable() {
    check_golden(
        "finding_batch",
        Channel::Finding,
        &FindingBatch { epoch: 77, floor: 40, round: 2, findings: vec![finding()] },
    );
}

#[test]
fn ack_bytes_are_stable() {
    check_golden("ack", Channel::Ack, &Ack { epoch: 77, upto: 42, gap: Some(2) });
}

#[test]
fn config_bytes_are_stable() {
    let mut params = BTreeMap::new();
    params.insert("ssh_failures".to_string(), Value::Int(5));
    params.insert("ssh_window_s".to_string(), Value::Int(60));
    params.insert("allow".to_string(), Value::List(vec!["192.168.1.0/24".into()]));
    let mut agents = BTreeMap::new();
    agents.insert("security".to_string(), AgentConfig { enabled: true, params });
    check_golden("config", Channel::Config, &ConfigDoc { version: 3, agents });
}

#[test]
fn command_bytes_are_stable() {
    let cmd = Command {
        id: 9,
        expires_ms: 1_733_420_700_000,
        action: Action::BlockIp {
            net: IpNet::host(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))),
            timeout_s: 3600,
        },
    };
    check_golden("command", Channel::Cmd, &cmd);
    let ban = Command {
        id: 10,
        expires_ms: 1_733_420_700_000,
        action: Action::BanClient { mac: Mac([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]), ban_s: 600 },
    };
    check_golden("command_ban", Channel::Cmd, &ban);
    let prefix = Command {
        id: 11,
        expires_ms: 1_733_420_700_000,
        action: Action::UnblockIp { net: "198.51.100.0/24".parse().unwrap() },
    };
    check_golden("command_unblock", Channel::Cmd, &prefix);
}

#[test]
fn command_result_bytes_are_stable() {
    check_golden(
        "result",
        Channel::Result,
        &CommandResult { id: 9, outcome: Outcome::Done, message: "blocked".into(), duration_ms: 12 },
    );
}

fn arb_subject() -> impl Strategy<Value = Subject> {
    (
        proptest::option::of(any::<[u8; 4]>().prop_map(|b| IpAddr::V4(b.into()))),
        proptest::option::of("[0-9a-f:]{0,17}"),
        proptest::option::of("[a-z0-9.-]{0,15}"),
        proptest::option::of(".{0,20}"),
        proptest::option::of("[a-z0-9.-]{0,30}"),
    )
        .prop_map(|(src_ip, mac, iface, user, host)| Subject { src_ip, mac, iface, user, service: None, host })
}

fn arb_finding() -> impl Strategy<Value = Finding> {
    (
        any::<u64>(),
        1u8..=5,
        arb_subject(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        ".{0,40}",
        proptest::collection::vec(".{0,80}", 0..4),
    )
        .prop_map(|(seq, sev, subject, count, first_ms, last_ms, summary, evidence)| Finding {
            seq,
            agent: "security".into(),
            kind: "ssh.bruteforce".into(),
            severity: Severity::new(sev).unwrap(),
            subject,
            count,
            first_ms,
            last_ms,
            summary,
            evidence,
            stage: [Stage::New, Stage::Update, Stage::Closed][(seq % 3) as usize],
        })
}

proptest! {
    #[test]
    fn any_finding_batch_round_trips(epoch in any::<u64>(), seq in any::<u64>(), ts in any::<u64>(),
                                     findings in proptest::collection::vec(arb_finding(), 0..5)) {
        let batch = FindingBatch { epoch, floor: seq, round: ts as u32, findings };
        let bytes = Envelope::sealed(dev(), seq, ts, &batch, &key()).unwrap();
        let env = Envelope::open(&Topic::new(dev(), Channel::Finding), &bytes, &key()).unwrap();
        prop_assert_eq!(env.seq, seq);
        prop_assert_eq!(env.ts_ms, ts);
        prop_assert_eq!(env.body::<FindingBatch>().unwrap(), batch);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let t = Topic::new(dev(), Channel::Finding);
        if let Ok(env) = Envelope::open(&t, &bytes, &key()) {
            let _ = env.body::<FindingBatch>();
        }
    }

    #[test]
    fn any_truncation_of_a_valid_envelope_is_refused(cut in 0usize..200) {
        let batch = FindingBatch { epoch: 1, floor: 1, round: 0, findings: vec![finding()] };
        let bytes = Envelope::sealed(dev(), 1, 2, &batch, &key()).unwrap();
        let cut = cut.min(bytes.len() - 1);
        prop_assert!(Envelope::open(&Topic::new(dev(), Channel::Finding), &bytes[..cut], &key()).is_err());
    }
}
