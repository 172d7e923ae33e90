//! Correlation rules: the document an administrator writes (YAML in
//! `config/rules/`, JSON through the API; the same fields), and the checked
//! form the engine runs. Pure: no I/O, no clock.
//!
//! ```yaml
//! name: bruteforce-then-login
//! description: A login from an address that was brute-forcing.
//! type: sequence          # all | sequence | threshold | absence
//! severity: critical      # info | low | medium | high | critical
//! window: 30m             # s, m, h, d
//! key: src_ip             # src_ip | mac | user | host | iface | service | device
//! match:
//!   - kind: [ssh.bruteforce, web.bruteforce]
//!   - kind: auth.success_after_failures
//! ```

use std::collections::BTreeSet;

use opmas_proto::pattern::Pattern;
use serde::{Deserialize, Serialize};

use crate::store::config::FieldError;

/// Longest rule name, and the characters of one: as device ids and tags.
const NAME_LEN: usize = 64;
/// Most findings a threshold rule may count (the engine keeps that many per key).
pub const MAX_COUNT: u32 = 1000;
/// Longest window: a week.
pub const MAX_WINDOW_MS: i64 = 7 * 86_400_000;

/// The kinds of rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuleType {
    /// A finding of every matcher within `window`, joined on `key`.
    All,
    /// The matchers' findings in their order within `window`, on `key`.
    Sequence,
    /// `count` findings of the matcher within `window` from at least
    /// `devices` routers, per `key` (or fleet-wide without one).
    Threshold,
    /// No heartbeat (no matcher), or no finding of the matcher, from a
    /// router for `window`.
    Absence,
}

/// One string or a list of them, as a person writes either.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// Which findings a step of a rule takes: every field given must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MatcherSpec {
    /// Agent name, or a list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub agent: Option<OneOrMany>,
    /// Kind, or a list; shell wildcards (`wifi.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub kind: Option<OneOrMany>,
    /// The least severity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<String>,
}

/// A rule as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// 1 to 64 of a-z, 0-9, '-', '_', '.'.
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(rename = "type")]
    pub rule_type: RuleType,
    /// The incident's severity.
    pub severity: String,
    /// How close in time the findings must be (`90s`, `10m`, `2h`, `1d`).
    pub window: String,
    /// What joins findings: `src_ip`, `mac`, `user`, `host`, `iface`,
    /// `service` or `device`. Needed by `all` and `sequence`; a threshold
    /// without one counts fleet-wide; absence is per device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Only findings of one router together (the key is then per router).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub same_device: bool,
    /// Only routers with this tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The steps: two or more for `all` and `sequence`, one for
    /// `threshold`, none (heartbeats) or one for `absence`.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matchers: Vec<MatcherSpec>,
    /// Threshold: findings needed (2 to 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Threshold: distinct routers needed among them (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<u32>,
    /// How long an incident stays open without a new finding before it
    /// resolves itself (default: the window). Absence incidents resolve
    /// when the router is heard from again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// What joins findings into one incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyField {
    SrcIp,
    Mac,
    User,
    Host,
    Iface,
    Service,
    Device,
}

impl KeyField {
    pub const ALL: [(&'static str, KeyField); 7] = [
        ("src_ip", KeyField::SrcIp),
        ("mac", KeyField::Mac),
        ("user", KeyField::User),
        ("host", KeyField::Host),
        ("iface", KeyField::Iface),
        ("service", KeyField::Service),
        ("device", KeyField::Device),
    ];

    pub fn name(self) -> &'static str {
        KeyField::ALL.iter().find(|(_, k)| *k == self).map_or("", |(n, _)| n)
    }
}

/// A checked matcher.
#[derive(Clone, Debug)]
pub struct Matcher {
    agents: Vec<String>,
    kinds: Vec<Pattern>,
    min_severity: i64,
}

impl Matcher {
    /// Checks `m`, naming its mistakes under `path` (`match[0]`).
    pub fn compile(m: &MatcherSpec, path: &str, bad: &mut impl FnMut(String, String)) -> Matcher {
        let agents: Vec<String> =
            m.agent.as_ref().map(|a| a.items().into_iter().map(str::to_owned).collect()).unwrap_or_default();
        let known: BTreeSet<&str> = opmas_proto::kinds::finding_agents().collect();
        for a in &agents {
            if !known.contains(a.as_str()) {
                bad(
                    format!("{path}.agent"),
                    format!("unknown agent {a:?}; known: {}", known.iter().copied().collect::<Vec<_>>().join(", ")),
                );
            }
        }
        let mut kinds = Vec::new();
        for (j, k) in m.kind.as_ref().map(OneOrMany::items).unwrap_or_default().into_iter().enumerate() {
            match Pattern::new(k) {
                Ok(p) => kinds.push(p),
                Err(e) => bad(format!("{path}.kind[{j}]"), format!("{k:?}: {e}")),
            }
        }
        let min_severity = match m.min_severity.as_deref() {
            None => 1,
            Some(s) => severity_of(s).unwrap_or_else(|| {
                bad(format!("{path}.min_severity"), format!("{s:?} is not one of {}", SEVERITIES.join(", ")));
                1
            }),
        };
        if agents.is_empty() && kinds.is_empty() && m.min_severity.is_none() {
            bad(path.to_owned(), "matches every finding: give agent, kind or min_severity".into());
        }
        Matcher { agents, kinds, min_severity }
    }

    /// True if a finding of `agent`, `kind` and `severity` is one of this step's.
    pub fn matches(&self, agent: &str, kind: &str, severity: i64) -> bool {
        (self.agents.is_empty() || self.agents.iter().any(|a| a == agent))
            && (self.kinds.is_empty() || self.kinds.iter().any(|k| k.matches(kind)))
            && severity >= self.min_severity
    }
}

/// A checked rule, ready for the engine.
#[derive(Clone, Debug)]
pub struct Rule {
    pub spec: RuleSpec,
    pub severity: i64,
    pub window_ms: i64,
    pub quiet_ms: i64,
    pub key: Option<KeyField>,
    pub matchers: Vec<Matcher>,
    pub count: u32,
    pub devices: u32,
}

/// The names of the severities, 1 to 5.
pub const SEVERITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];

/// A severity's number from its name.
pub fn severity_of(name: &str) -> Option<i64> {
    SEVERITIES.iter().position(|s| *s == name).map(|i| i as i64 + 1)
}

/// Milliseconds of `90s`, `10m`, `2h` or `7d` (a whole number and a unit).
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let unit = t.chars().last().ok_or_else(|| "empty; write a number and a unit: 90s, 10m, 2h, 7d".to_owned())?;
    let ms = match unit {
        's' => 1000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        _ => return Err(format!("{text:?} has no unit; write a number and s, m, h or d (90s, 10m, 2h, 7d)")),
    };
    let n: i64 = t[..t.len() - 1]
        .parse()
        .ok()
        .filter(|n| *n > 0 && *n <= 1_000_000)
        .ok_or_else(|| format!("{text:?} is not a positive whole number of {unit}"))?;
    Ok(n * ms)
}

/// Checks a rule name: 1 to 64 of a-z, 0-9, '-', '_', '.'.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= NAME_LEN
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a rule name: 1 to {NAME_LEN} of a-z, 0-9, '-', '_', '.'"))
    }
}

impl Rule {
    /// Checks `spec`: every bad field, by path.
    pub fn compile(spec: RuleSpec) -> Result<Rule, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut bad = |path: String, reason: String| errors.push(FieldError { path, reason });
        if let Err(e) = check_name(&spec.name) {
            bad("name".into(), e);
        }
        let severity = severity_of(&spec.severity).unwrap_or_else(|| {
            bad("severity".into(), format!("{:?} is not one of {}", spec.severity, SEVERITIES.join(", ")));
            0
        });
        let window_ms = match parse_duration(&spec.window) {
            Ok(ms) if ms > MAX_WINDOW_MS => {
                bad("window".into(), format!("{} is longer than 7d", spec.window));
                0
            }
            Ok(ms) => ms,
            Err(e) => {
                bad("window".into(), e);
                0
            }
        };
        let quiet_ms = match spec.quiet.as_deref().map(parse_duration) {
            None => window_ms,
            Some(Ok(ms)) => ms,
            Some(Err(e)) => {
                bad("quiet".into(), e);
                0
            }
        };
        let key = match spec.key.as_deref() {
            None => None,
            Some(k) => match KeyField::ALL.iter().find(|(n, _)| *n == k) {
                Some((_, f)) => Some(*f),
                None => {
                    let names: Vec<&str> = KeyField::ALL.iter().map(|(n, _)| *n).collect();
                    bad("key".into(), format!("{k:?} is not one of {}", names.join(", ")));
                    None
                }
            },
        };
        if let Some(t) = &spec.tag {
            if let Err(e) = crate::store::config::check_tag(t) {
                bad("tag".into(), e);
            }
        }
        let steps = spec.matchers.len();
        let needs = match spec.rule_type {
            RuleType::All | RuleType::Sequence if steps < 2 => Some("two or more steps"),
            RuleType::Threshold if steps != 1 => Some("exactly one step"),
            RuleType::Absence if steps > 1 => Some("no step (heartbeats) or one"),
            _ => None,
        };
        if let Some(n) = needs {
            bad("match".into(), format!("a {} rule needs {n}; it has {steps}", type_name(spec.rule_type)));
        }
        if matches!(spec.rule_type, RuleType::All | RuleType::Sequence) && spec.key.is_none() {
            bad("key".into(), format!("a {} rule needs a key to join its steps on", type_name(spec.rule_type)));
        }
        if spec.rule_type == RuleType::Absence && spec.key.as_deref().is_some_and(|k| k != "device") {
            bad("key".into(), "an absence rule is per router: leave key out, or write device".into());
        }
        let threshold = spec.rule_type == RuleType::Threshold;
        let count = match spec.count {
            Some(n) if !threshold => {
                bad("count".into(), format!("only a threshold rule counts; this is {}", type_name(spec.rule_type)));
                n
            }
            Some(n) if !(2..=MAX_COUNT).contains(&n) => {
                bad("count".into(), format!("{n} is outside 2 to {MAX_COUNT}"));
                n
            }
            Some(n) => n,
            None if threshold => {
                bad("count".into(), "a threshold rule needs count (2 to 1000)".into());
                0
            }
            None => 1,
        };
        let devices = match spec.devices {
            Some(_) if !threshold => {
                bad("devices".into(), "only a threshold rule counts routers".into());
                1
            }
            Some(d) if d < 1 || (threshold && d > count.max(1)) => {
                bad("devices".into(), format!("{d} is outside 1 to count ({count})"));
                1
            }
            Some(d) => d,
            None => 1,
        };
        if spec.same_device && devices > 1 {
            bad("same_device".into(), "same_device with devices above 1 can never fire".into());
        }
        let mut matchers = Vec::with_capacity(steps);
        for (i, m) in spec.matchers.iter().enumerate() {
            matchers.push(Matcher::compile(m, &format!("match[{i}]"), &mut bad));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Rule { spec, severity, window_ms, quiet_ms, key, matchers, count, devices })
    }
}

fn type_name(t: RuleType) -> &'static str {
    match t {
        RuleType::All => "all",
        RuleType::Sequence => "sequence",
        RuleType::Threshold => "threshold",
        RuleType::Absence => "absence",
    }
}

/// Parses YAML holding one rule, or a list of them; serde's message says
/// where a field has the wrong shape.
pub fn parse_yaml(text: &str) -> Result<Vec<RuleSpec>, String> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Doc {
        Many(Vec<RuleSpec>),
        One(Box<RuleSpec>),
    }
    // Untagged enums lose serde's message; try each shape for its own.
    if text.trim_start().starts_with('-') {
        return serde_saphyr::from_str::<Vec<RuleSpec>>(text).map_err(|e| e.to_string());
    }
    match serde_saphyr::from_str::<Doc>(text) {
        Ok(Doc::Many(v)) => Ok(v),
        Ok(Doc::One(r)) => Ok(vec![*r]),
        Err(_) => serde_saphyr::from_str::<RuleSpec>(text).map(|r| vec![r]).map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> RuleSpec {
        parse_yaml(yaml).unwrap().remove(0)
    }

    #[test]
    fn durations_have_units() {
        assert_eq!(parse_duration("90s"), Ok(90_000));
        assert_eq!(parse_duration("10m"), Ok(600_000));
        assert_eq!(parse_duration("7d"), Ok(7 * 86_400_000));
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(parse_duration("-1m").unwrap_err().contains("positive whole number"));
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn a_rule_compiles_and_its_matchers_match() {
        let r = Rule::compile(spec(
            "name: brute-then-login\ntype: sequence\nseverity: critical\nwindow: 30m\nkey: src_ip\nmatch:\n  - kind: [ssh.bruteforce, web.*]\n  - kind: auth.success_after_failures\n    min_severity: high\n",
        ))
        .unwrap();
        assert_eq!((r.severity, r.window_ms, r.quiet_ms, r.key), (5, 1_800_000, 1_800_000, Some(KeyField::SrcIp)));
        assert!(r.matchers[0].matches("security", "web.bruteforce", 4));
        assert!(!r.matchers[0].matches("security", "ssh.user_enum", 4));
        assert!(!r.matchers[1].matches("security", "auth.success_after_failures", 3), "below min_severity");
        assert!(r.spec.enabled);
    }

    #[test]
    fn every_bad_field_is_named() {
        let errors = Rule::compile(spec(
            "name: Bad Name\ntype: threshold\nseverity: urgent\nwindow: 10\nkey: ip\ncount: 1\ndevices: 5\ntag: Not A Tag\nmatch:\n  - agent: dns\n    kind: \"[\"\n    min_severity: big\n",
        ))
        .unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "name",
                "severity",
                "window",
                "key",
                "tag",
                "count",
                "devices",
                "match[0].agent",
                "match[0].kind[0]",
                "match[0].min_severity"
            ],
            "{errors:?}"
        );
        let errors =
            Rule::compile(spec("name: a\ntype: all\nseverity: high\nwindow: 5m\nmatch:\n  - kind: x\n")).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["match", "key"]);
    }

    #[test]
    fn yaml_mistakes_say_where() {
        let e = parse_yaml("name: a\ntype: often\nseverity: high\nwindow: 5m\n").unwrap_err();
        assert!(e.contains("often") && e.contains("line 2"), "{e}");
        let e = parse_yaml("name: a\ntype: all\nseverity: high\nwindow: 5m\nkye: src_ip\n").unwrap_err();
        assert!(e.contains("kye"), "{e}");
        let two = parse_yaml("- name: a\n  type: absence\n  severity: high\n  window: 15m\n- name: b\n  type: absence\n  severity: low\n  window: 1h\n").unwrap();
        assert_eq!(two.len(), 2);
    }
}
