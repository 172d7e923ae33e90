//! What reaches the hub's MQTT port or a router's subscription: an
//! envelope on a topic (refused unless signed), and every message body as
//! the side that decodes it takes it after the signature checked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opmas_edge::config::AgentsConfig;
use opmas_proto::msg::{Ack, Command, CommandResult, ConfigDoc, FindingBatch, Heartbeat, Status};
use opmas_proto::{Channel, DeviceId, Envelope, Secret, Topic};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let channel = Channel::ALL[pick as usize % Channel::ALL.len()];
    let device = DeviceId::new("gw-fuzz").expect("a valid id");
    let key = Secret::from_bytes([7; 32]);
    let _ = Envelope::open(&Topic::new(device.clone(), channel), rest, &key);
    let e = Envelope { device, seq: 1, ts_ms: 1, channel, body: rest.to_vec() };
    match channel {
        Channel::Status => drop(e.body::<Status>()),
        Channel::Heartbeat => drop(e.body::<Heartbeat>()),
        Channel::Finding => drop(e.body::<FindingBatch>()),
        Channel::Result => drop(e.body::<CommandResult>()),
        Channel::Ack => drop(e.body::<Ack>()),
        Channel::Config => {
            if let Ok(doc) = e.body::<ConfigDoc>() {
                let _ = AgentsConfig::from_doc(&doc);
            }
        }
        Channel::Cmd => {
            if let Ok(c) = e.body::<Command>() {
                let _ = c.action.check();
            }
        }
    }
});
