//! Playbooks: when a finding or an incident matches, which actions go to
//! which routers, decided how. The document an administrator writes (YAML
//! in `config/playbooks/`, JSON through the API; the same fields), its
//! checks, and the pure decision. No I/O, no clock.
//!
//! ```yaml
//! name: block-ssh-bruteforce
//! description: Block an SSH brute-forcer on every router.
//! mode: approval            # auto | approval | dry_run
//! trigger:
//!   finding: { kind: [ssh.bruteforce, web.bruteforce] }   # or incident: { rule: ..., min_severity: ... }
//! conditions:
//!   tags: [edge]            # only when the reporting router carries one of these
//!   never_block: [192.168.0.0/16, 10.0.0.0/8]
//! steps:
//!   - action: block_ip
//!     params: { net: "{{ src_ip }}", timeout_s: 3600 }
//!     targets: all          # reporting | all | tag:<tag> | device:<id>, or a list
//! undo_after: 1h
//! rate_limit: { max: 20, per: 1h }
//! ```
//!
//! A parameter is a value, or `{{ field }}` for a field of what triggered
//! the playbook (`src_ip`, `mac`, `user`, `host`, `iface`, `service`,
//! `device`): whole values only, no expressions, so a log line's text can
//! only ever be a typed parameter's value, which [`super::parse_action`]
//! then checks like any other.

use std::collections::BTreeMap;

use opmas_proto::msg::Action;
use opmas_proto::net::IpNet;
use opmas_proto::pattern::Pattern;
use serde::{Deserialize, Serialize};

use super::parse_action;
use crate::correlate::rule::{
    check_name, parse_duration, severity_of, KeyField, Matcher, MatcherSpec, OneOrMany, SEVERITIES,
};
use crate::store::config::FieldError;

/// Most steps in a playbook, and most actions it may take in its window.
pub const MAX_STEPS: usize = 8;
pub const MAX_RATE: u32 = 10_000;
/// Longest undo_after: a week, as the longest block.
pub const MAX_UNDO_MS: i64 = 7 * 86_400_000;

/// How a playbook's decisions are carried out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Sent to the routers at once.
    Auto,
    /// Waits for an operator to approve it (the default: a playbook acts
    /// alone only when someone said so).
    #[default]
    Approval,
    /// Recorded with the routers it would reach; nothing is sent.
    DryRun,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Approval => "approval",
            Mode::DryRun => "dry_run",
        }
    }
}

/// What sets a playbook off: exactly one of the two.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    /// A new finding (agent, kind, min_severity, as a rule's step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding: Option<MatcherSpec>,
    /// An incident opening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<IncidentTriggerSpec>,
}

/// Which incidents set a playbook off.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentTriggerSpec {
    /// Rule name, or a list; shell wildcards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub rule: Option<OneOrMany>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<String>,
}

/// When a matching trigger may act.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionsSpec {
    /// The reporting router must carry one of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Addresses and networks never blocked or unblocked by this playbook
    /// (the operator's own networks, the hub).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub never_block: Vec<String>,
}

/// One action of a playbook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// block_ip, unblock_ip, ban_wifi_client, unban_wifi_client, restart_service, wifi_reload.
    pub action: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// `reporting`, `all`, `tag:<tag>`, `device:<id>`, or a list of them.
    #[schema(value_type = Object)]
    pub targets: OneOrMany,
}

/// At most `max` actions decided in `per`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateSpec {
    pub max: u32,
    pub per: String,
}

/// A playbook as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaybookSpec {
    /// 1 to 64 of a-z, 0-9, '-', '_', '.'.
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default)]
    pub mode: Mode,
    pub trigger: TriggerSpec,
    #[serde(default, skip_serializing_if = "is_default")]
    pub conditions: ConditionsSpec,
    pub steps: Vec<StepSpec>,
    /// Take blocks and bans back after this long (`30m`, `1h`, `7d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateSpec>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

fn is_default(c: &ConditionsSpec) -> bool {
    c == &ConditionsSpec::default()
}

/// A checked trigger.
#[derive(Clone, Debug)]
pub enum Trigger {
    Finding(Matcher),
    Incident { rules: Vec<Pattern>, min_severity: i64 },
}

/// A parameter: as written, or a field of the trigger.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    Value(serde_json::Value),
    Field(KeyField),
}

/// Where a step's action goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The routers that reported the finding (or the incident's).
    Reporting,
    All,
    Tag(String),
    Device(String),
}

/// A checked step.
#[derive(Clone, Debug)]
pub struct Step {
    pub action: String,
    pub params: BTreeMap<String, Param>,
    pub targets: Vec<Target>,
}

/// A checked playbook.
#[derive(Clone, Debug)]
pub struct Playbook {
    pub spec: PlaybookSpec,
    pub trigger: Trigger,
    pub tags: Vec<String>,
    pub never_block: Vec<IpNet>,
    pub steps: Vec<Step>,
    pub undo_after_ms: Option<i64>,
    /// At most this many actions decided per window (ms).
    pub rate: Option<(u32, i64)>,
}

/// What set a playbook off, as the decision needs it.
#[derive(Clone, Debug, Default)]
pub struct Subject {
    pub finding: Option<i64>,
    pub incident: Option<i64>,
    /// The reporting router(s).
    pub devices: Vec<String>,
    /// The tags of the reporting routers.
    pub tags: Vec<String>,
    pub agent: String,
    pub kind: String,
    /// The incident's rule.
    pub rule: String,
    pub severity: i64,
    /// The trigger's fields by name (`src_ip` → `198.51.100.7`).
    pub fields: BTreeMap<&'static str, String>,
}

/// What a playbook decided for one step.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Act (as the playbook's mode says) on these targets.
    Act { step: usize, action: Action, targets: Vec<Target> },
    /// The playbook matched and may not act: why, recorded in the audit log.
    Skip { step: usize, action: Option<Action>, reason: String },
}

/// `{{ field }}` → the field; anything else is not a reference.
fn reference(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    Some(inner.trim())
}

fn field_of(name: &str) -> Option<KeyField> {
    KeyField::ALL.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// A value of each field, of the right shape, to try a step's parameters
/// with when the playbook is saved.
fn example(field: KeyField) -> &'static str {
    match field {
        KeyField::SrcIp => "198.51.100.1",
        KeyField::Mac => "02:00:00:00:00:01",
        KeyField::User => "root",
        KeyField::Host => "attacker.example",
        KeyField::Iface => "wlan0",
        KeyField::Service => "dnsmasq",
        KeyField::Device => "gw-1",
    }
}

impl Playbook {
    /// Checks `spec`: every bad field, by path.
    pub fn compile(spec: PlaybookSpec) -> Result<Playbook, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut bad = |path: String, reason: String| errors.push(FieldError { path, reason });
        if let Err(e) = check_name(&spec.name) {
            bad("name".into(), e.replace("rule name", "playbook name"));
        }
        let trigger = match (&spec.trigger.finding, &spec.trigger.incident) {
            (Some(m), None) => Some(Trigger::Finding(Matcher::compile(m, "trigger.finding", &mut bad))),
            (None, Some(i)) => {
                let mut rules = Vec::new();
                for (j, r) in i.rule.as_ref().map(OneOrMany::items).unwrap_or_default().into_iter().enumerate() {
                    match Pattern::new(r) {
                        Ok(p) => rules.push(p),
                        Err(e) => bad(format!("trigger.incident.rule[{j}]"), format!("{r:?}: {e}")),
                    }
                }
                let min_severity = match i.min_severity.as_deref() {
                    None => 1,
                    Some(s) => severity_of(s).unwrap_or_else(|| {
                        bad(
                            "trigger.incident.min_severity".into(),
                            format!("{s:?} is not one of {}", SEVERITIES.join(", ")),
                        );
                        1
                    }),
                };
                Some(Trigger::Incident { rules, min_severity })
            }
            _ => {
                bad("trigger".into(), "give exactly one of finding or incident".into());
                None
            }
        };
        for (i, t) in spec.conditions.tags.iter().enumerate() {
            if let Err(e) = crate::store::config::check_tag(t) {
                bad(format!("conditions.tags[{i}]"), e);
            }
        }
        let mut never_block = Vec::new();
        for (i, n) in spec.conditions.never_block.iter().enumerate() {
            match n.parse::<IpNet>() {
                Ok(net) => never_block.push(net),
                Err(e) => bad(format!("conditions.never_block[{i}]"), e.to_string()),
            }
        }
        if spec.steps.is_empty() || spec.steps.len() > MAX_STEPS {
            bad("steps".into(), format!("{} steps; a playbook has 1 to {MAX_STEPS}", spec.steps.len()));
        }
        let mut steps = Vec::new();
        for (i, s) in spec.steps.iter().enumerate() {
            let mut params = BTreeMap::new();
            let mut sample = serde_json::Map::new();
            let mut unknown_field = false;
            for (k, v) in &s.params {
                let param = match v.as_str().and_then(reference) {
                    Some(name) => match field_of(name) {
                        Some(f) => {
                            sample.insert(k.clone(), serde_json::Value::String(example(f).into()));
                            Param::Field(f)
                        }
                        None => {
                            let names: Vec<&str> = KeyField::ALL.iter().map(|(n, _)| *n).collect();
                            bad(
                                format!("steps[{i}].params.{k}"),
                                format!("{{{{ {name} }}}} is not a field; known: {}", names.join(", ")),
                            );
                            unknown_field = true;
                            continue;
                        }
                    },
                    None => {
                        sample.insert(k.clone(), v.clone());
                        Param::Value(v.clone())
                    }
                };
                params.insert(k.clone(), param);
            }
            // The step's parameters as a trigger would fill them: a wrong
            // type or a value out of range shows now, not at 3 am.
            if !unknown_field {
                if let Err(es) = parse_action(&s.action, &serde_json::Value::Object(sample)) {
                    for e in es {
                        bad(format!("steps[{i}].{}", e.path), e.reason);
                    }
                }
            }
            let mut targets = Vec::new();
            for (j, t) in s.targets.items().into_iter().enumerate() {
                match parse_target(t) {
                    Ok(t) => targets.push(t),
                    Err(e) => bad(format!("steps[{i}].targets[{j}]"), e),
                }
            }
            if s.targets.items().is_empty() {
                bad(format!("steps[{i}].targets"), "no target: write reporting, all, tag:<tag> or device:<id>".into());
            }
            steps.push(Step { action: s.action.clone(), params, targets });
        }
        let undo_after_ms = match spec.undo_after.as_deref().map(parse_duration) {
            None => None,
            Some(Ok(ms)) if ms <= MAX_UNDO_MS => Some(ms),
            Some(Ok(_)) => {
                bad("undo_after".into(), "longer than 7d".into());
                None
            }
            Some(Err(e)) => {
                bad("undo_after".into(), e);
                None
            }
        };
        if undo_after_ms.is_some()
            && !spec.steps.iter().any(|s| s.action == "block_ip" || s.action == "ban_wifi_client")
        {
            bad("undo_after".into(), "only blocks and bans can be undone; this playbook has neither".into());
        }
        let rate = match &spec.rate_limit {
            None => None,
            Some(r) => {
                if !(1..=MAX_RATE).contains(&r.max) {
                    bad("rate_limit.max".into(), format!("{} is outside 1 to {MAX_RATE}", r.max));
                }
                match parse_duration(&r.per) {
                    Ok(ms) => Some((r.max, ms)),
                    Err(e) => {
                        bad("rate_limit.per".into(), e);
                        None
                    }
                }
            }
        };
        match trigger {
            Some(trigger) if errors.is_empty() => {
                let tags = spec.conditions.tags.clone();
                Ok(Playbook { spec, trigger, tags, never_block, steps, undo_after_ms, rate })
            }
            _ => Err(errors),
        }
    }

    /// Whether `s` sets this playbook off.
    pub fn triggered_by(&self, s: &Subject) -> bool {
        let by_trigger = match &self.trigger {
            Trigger::Finding(m) => s.finding.is_some() && m.matches(&s.agent, &s.kind, s.severity),
            Trigger::Incident { rules, min_severity } => {
                s.incident.is_some()
                    && s.severity >= *min_severity
                    && (rules.is_empty() || rules.iter().any(|r| r.matches(&s.rule)))
            }
        };
        by_trigger && (self.tags.is_empty() || self.tags.iter().any(|t| s.tags.contains(t)))
    }

    /// What each step does about `s` (which must have set it off).
    pub fn decide(&self, s: &Subject) -> Vec<Decision> {
        let mut out = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            let mut params = serde_json::Map::new();
            let mut missing = None;
            for (k, p) in &step.params {
                let v = match p {
                    Param::Value(v) => v.clone(),
                    Param::Field(f) => match s.fields.get(f.name()) {
                        Some(v) => serde_json::Value::String(v.clone()),
                        None => {
                            missing = Some(f.name());
                            continue;
                        }
                    },
                };
                params.insert(k.clone(), v);
            }
            if let Some(f) = missing {
                out.push(Decision::Skip { step: i, action: None, reason: format!("what set it off has no {f}") });
                continue;
            }
            let action = match parse_action(&step.action, &serde_json::Value::Object(params)) {
                Ok(a) => a,
                Err(es) => {
                    let why = es.iter().map(|e| e.reason.clone()).collect::<Vec<_>>().join("; ");
                    out.push(Decision::Skip { step: i, action: None, reason: format!("not a valid action: {why}") });
                    continue;
                }
            };
            let net = match &action {
                Action::BlockIp { net, .. } | Action::UnblockIp { net } => Some(*net),
                _ => None,
            };
            if let Some(p) = net.and_then(|n| self.never_block.iter().find(|p| p.contains(&n) || n.contains(p))) {
                let reason =
                    format!("{} is on the never-block list ({p})", net.map(|n| n.to_string()).unwrap_or_default());
                out.push(Decision::Skip { step: i, action: Some(action), reason });
                continue;
            }
            out.push(Decision::Act { step: i, action, targets: step.targets.clone() });
        }
        out
    }
}

/// `reporting`, `all`, `tag:<tag>` or `device:<id>`.
pub fn parse_target(t: &str) -> Result<Target, String> {
    match t {
        "reporting" => Ok(Target::Reporting),
        "all" => Ok(Target::All),
        _ => {
            if let Some(tag) = t.strip_prefix("tag:") {
                crate::store::config::check_tag(tag)?;
                Ok(Target::Tag(tag.to_owned()))
            } else if let Some(d) = t.strip_prefix("device:") {
                opmas_proto::DeviceId::new(d).map_err(|e| e.to_string())?;
                Ok(Target::Device(d.to_owned()))
            } else {
                Err(format!("{t:?} is not a target: write reporting, all, tag:<tag> or device:<id>"))
            }
        }
    }
}

/// Parses YAML holding one playbook; serde's message says where a field
/// has the wrong shape.
pub fn parse_yaml(text: &str) -> Result<PlaybookSpec, String> {
    serde_saphyr::from_str::<PlaybookSpec>(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = r#"
name: block-bruteforce
mode: auto
trigger:
  finding: { kind: [ssh.bruteforce, web.bruteforce] }
conditions:
  never_block: [192.168.0.0/16]
steps:
  - action: block_ip
    params: { net: "{{ src_ip }}", timeout_s: 600 }
    targets: [reporting, tag:edge]
undo_after: 30m
rate_limit: { max: 5, per: 1h }
"#;

    fn subject(kind: &str, src: Option<&str>) -> Subject {
        let mut fields = BTreeMap::new();
        if let Some(ip) = src {
            fields.insert("src_ip", ip.to_owned());
        }
        Subject {
            finding: Some(7),
            devices: vec!["gw-1".into()],
            agent: "security".into(),
            kind: kind.into(),
            severity: 4,
            fields,
            ..Subject::default()
        }
    }

    #[test]
    fn a_playbook_takes_the_address_from_its_finding_and_never_a_protected_one() {
        let pb = Playbook::compile(parse_yaml(BLOCK).unwrap()).unwrap();
        assert_eq!((pb.undo_after_ms, pb.rate), (Some(1_800_000), Some((5, 3_600_000))));
        let s = subject("ssh.bruteforce", Some("203.0.113.9"));
        assert!(pb.triggered_by(&s));
        assert!(!pb.triggered_by(&subject("net.port_scan", Some("203.0.113.9"))));
        assert_eq!(
            pb.decide(&s),
            [Decision::Act {
                step: 0,
                action: Action::BlockIp { net: "203.0.113.9".parse().unwrap(), timeout_s: 600 },
                targets: vec![Target::Reporting, Target::Tag("edge".into())],
            }]
        );
        match &pb.decide(&subject("ssh.bruteforce", Some("192.168.1.50")))[0] {
            Decision::Skip { reason, action: Some(_), .. } => {
                assert_eq!(reason, "192.168.1.50 is on the never-block list (192.168.0.0/16)")
            }
            other => panic!("{other:?}"),
        }
        match &pb.decide(&subject("ssh.bruteforce", None))[0] {
            Decision::Skip { reason, .. } => assert_eq!(reason, "what set it off has no src_ip"),
            other => panic!("{other:?}"),
        }
        // A host name where an address belongs is refused, not passed on.
        match &pb.decide(&subject("ssh.bruteforce", Some("x; reboot")))[0] {
            Decision::Skip { reason, action: None, .. } => assert!(reason.contains("not an IP address"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_mistake_is_named_by_its_path() {
        let text = r#"
name: Bad Name
mode: auto
trigger: {}
conditions: { tags: ["no spaces"], never_block: [10.0.0.1/8] }
steps:
  - action: block_ip
    params: { net: "{{ srcip }}", timeout_s: 600 }
    targets: [everywhere]
  - action: reboot
    targets: all
  - action: block_ip
    params: { net: "{{ src_ip }}", timeout_s: 99999999 }
    targets: []
undo_after: 9w
rate_limit: { max: 0, per: 1h }
"#;
        let errors = Playbook::compile(parse_yaml(text).unwrap()).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "name",
                "trigger",
                "conditions.tags[0]",
                "conditions.never_block[0]",
                "steps[0].params.net",
                "steps[0].targets[0]",
                "steps[1].action",
                "steps[2].params",
                "steps[2].targets",
                "undo_after",
                "rate_limit.max"
            ],
            "{errors:?}"
        );
        assert!(errors[4].reason.contains("{{ srcip }} is not a field; known: src_ip"), "{errors:?}");
        assert!(errors[7].reason.contains("timeout_s must be 1 to 604800"), "{errors:?}");
        assert!(parse_yaml("name: x\nstesp: []\n").unwrap_err().contains("stesp"));
    }

    #[test]
    fn incidents_trigger_by_rule_and_severity_and_tags_narrow_any_trigger() {
        let text = r#"
name: page-on-wifi-attack
mode: dry_run
trigger:
  incident: { rule: "wifi-*", min_severity: high }
conditions: { tags: [branch] }
steps:
  - action: ban_wifi_client
    params: { mac: "{{ mac }}", ban_s: 600 }
    targets: reporting
"#;
        let pb = Playbook::compile(parse_yaml(text).unwrap()).unwrap();
        let mut s = Subject {
            incident: Some(3),
            rule: "wifi-attack-with-scan".into(),
            severity: 4,
            tags: vec!["branch".into()],
            ..Subject::default()
        };
        assert!(pb.triggered_by(&s));
        s.fields.insert("mac", "02:11:22:33:44:55".into());
        assert!(matches!(&pb.decide(&s)[0], Decision::Act { action: Action::BanClient { ban_s: 600, .. }, .. }));
        s.tags.clear();
        assert!(!pb.triggered_by(&s), "not a branch router");
        s.tags.push("branch".into());
        s.severity = 3;
        assert!(!pb.triggered_by(&s), "below high");
    }
}
