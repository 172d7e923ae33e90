//! The alerting document: receivers, templates and the route tree, as an
//! administrator writes it (`config/alerting.yaml` seeds it; the API and
//! the UI edit it), its checks, and which routes an incident takes. Pure.
//!
//! Routes work as Alertmanager's: the root takes every incident; its
//! children are tried in order and the first that matches takes it, unless
//! it says `continue: true`, in which case the next ones are tried too; an
//! incident that no child takes stays with the parent. A child inherits
//! what it does not set (receiver, grouping, timings) from its parent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::correlate::rule::{parse_duration, severity_of, SEVERITIES};
use crate::store::config::FieldError;

/// Shown instead of a secret; sent back unchanged, it keeps the stored one.
pub const REDACTED: &str = "<secret>";

/// The whole alerting document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// The hub's address as people reach it, for links in notifications
    /// (`https://opmas.example.net`).
    #[serde(default)]
    pub external_url: String,
    #[serde(default)]
    pub receivers: Vec<Receiver>,
    #[serde(default)]
    pub templates: Templates,
    pub route: Route,
}

/// Subject and body templates (minijinja: `{{ title }}`, loops over
/// `incidents`). Empty: the built-in ones.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Templates {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subject: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub body: String,
}

/// Somewhere notifications go: exactly one of its kinds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Receiver {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<Slack>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagerduty: Option<PagerDuty>,
    /// The hub's own log (the shipped default, and a place to try routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub log: Option<BTreeMap<String, String>>,
}

/// E-mail over SMTP.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Email {
    pub to: Vec<String>,
    pub from: String,
    /// `host:port` of the mail server.
    pub smarthost: String,
    /// `starttls` (the default), `tls` (implicit, port 465) or `none`.
    #[serde(default)]
    pub tls: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// PEM CA certificate(s) to trust besides the usual roots (a private mail server).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_file: String,
}

/// A Slack incoming webhook.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Slack {
    /// The webhook URL (a secret: it is the credential).
    pub url: String,
}

/// A generic webhook: the notification as JSON, signed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub url: String,
    /// Key of the `X-OPMAS-Signature: sha256=<hex HMAC-SHA256 of the body>` header.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret: String,
}

/// PagerDuty Events API v2.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PagerDuty {
    pub routing_key: String,
    /// Default: `https://events.pagerduty.com/v2/enqueue`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
}

/// Which incidents a route takes: every field given must match (a list:
/// any of its values).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Match {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub severity: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rule: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kind: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tag: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device: Vec<String>,
    /// The incident's key (`src_ip=203.0.113.7`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key: Vec<String>,
}

/// A node of the route tree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    #[serde(default, rename = "match", skip_serializing_if = "is_default")]
    pub matches: Match,
    /// Receiver names (one, or a list); none on a child: the parent's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receivers: Vec<String>,
    /// Labels whose values make a group: `rule`, `severity`, `key`,
    /// `device`, `tag`. Empty: one group per route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_wait: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_interval: Option<String>,
    #[serde(default, rename = "continue", skip_serializing_if = "std::ops::Not::not")]
    pub continue_: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(no_recursion)]
    pub routes: Vec<Route>,
}

fn is_default(m: &Match) -> bool {
    *m == Match::default()
}

/// The labels a route can match and group on.
pub const GROUP_LABELS: [&str; 5] = ["rule", "severity", "key", "device", "tag"];

/// An incident as routes see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels {
    pub rule: String,
    pub severity: i64,
    pub key: String,
    pub devices: Vec<String>,
    pub tags: Vec<String>,
    pub agents: Vec<String>,
    pub kinds: Vec<String>,
}

impl Labels {
    /// The value a group is keyed on for `label`.
    pub fn value(&self, label: &str) -> String {
        match label {
            "rule" => self.rule.clone(),
            "severity" => SEVERITIES.get((self.severity - 1).clamp(0, 4) as usize).copied().unwrap_or("").to_owned(),
            "key" => self.key.clone(),
            "device" => self.devices.join(","),
            "tag" => self.tags.join(","),
            _ => String::new(),
        }
    }
}

impl Match {
    /// True if the incident with `l` is one of this route's.
    pub fn matches(&self, l: &Labels) -> bool {
        let any = |want: &[String], have: &[String]| want.is_empty() || want.iter().any(|w| have.contains(w));
        let sev = SEVERITIES.get((l.severity - 1).clamp(0, 4) as usize).copied().unwrap_or("");
        (self.severity.is_empty() || self.severity.iter().any(|s| s == sev))
            && self.min_severity.as_deref().and_then(severity_of).is_none_or(|m| l.severity >= m)
            && (self.rule.is_empty() || self.rule.contains(&l.rule))
            && any(&self.agent, &l.agents)
            && any(&self.kind, &l.kinds)
            && any(&self.tag, &l.tags)
            && any(&self.device, &l.devices)
            && (self.key.is_empty() || self.key.contains(&l.key))
    }
}

/// Where an incident goes: one per matching route, with what it inherited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The route's place in the tree: `0`, `0.1`, `0.1.0`.
    pub route: String,
    pub receivers: Vec<String>,
    pub group_by: Vec<String>,
    pub group_wait_ms: i64,
    pub group_interval_ms: i64,
    pub repeat_interval_ms: i64,
}

const DEFAULT_WAIT: i64 = 30_000;
const DEFAULT_INTERVAL: i64 = 300_000;
const DEFAULT_REPEAT: i64 = 4 * 3_600_000;

impl Route {
    fn inherit(&self, parent: &Target, id: String) -> Target {
        let ms = |v: &Option<String>, d: i64| v.as_deref().and_then(|t| parse_duration(t).ok()).unwrap_or(d);
        Target {
            route: id,
            receivers: if self.receivers.is_empty() { parent.receivers.clone() } else { self.receivers.clone() },
            group_by: self.group_by.clone().unwrap_or_else(|| parent.group_by.clone()),
            group_wait_ms: ms(&self.group_wait, parent.group_wait_ms),
            group_interval_ms: ms(&self.group_interval, parent.group_interval_ms),
            repeat_interval_ms: ms(&self.repeat_interval, parent.repeat_interval_ms),
        }
    }

    /// The targets for an incident with `labels`, the root being `self`.
    pub fn targets(&self, labels: &Labels) -> Vec<Target> {
        let top = Target {
            route: String::new(),
            receivers: Vec::new(),
            group_by: Vec::new(),
            group_wait_ms: DEFAULT_WAIT,
            group_interval_ms: DEFAULT_INTERVAL,
            repeat_interval_ms: DEFAULT_REPEAT,
        };
        let mut out = Vec::new();
        walk(self, &self.inherit(&top, "0".into()), labels, &mut out);
        out
    }
}

fn walk(node: &Route, here: &Target, labels: &Labels, out: &mut Vec<Target>) {
    let mut taken = false;
    for (i, child) in node.routes.iter().enumerate() {
        if !child.matches.matches(labels) {
            continue;
        }
        taken = true;
        walk(child, &child.inherit(here, format!("{}.{i}", here.route)), labels, out);
        if !child.continue_ {
            break;
        }
    }
    if !taken {
        out.push(here.clone());
    }
}

impl AlertConfig {
    /// Checks the document: every bad field, by path.
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut bad = |path: String, reason: String| errors.push(FieldError { path, reason });
        if !self.external_url.is_empty() && reqwest::Url::parse(&self.external_url).is_err() {
            bad("external_url".into(), format!("{:?} is not a URL", self.external_url));
        }
        let mut names = Vec::new();
        for (i, r) in self.receivers.iter().enumerate() {
            let p = format!("receivers[{i}]");
            if r.name.is_empty() || names.contains(&r.name.as_str()) {
                bad(format!("{p}.name"), format!("{:?}: every receiver needs a name of its own", r.name));
            }
            names.push(r.name.as_str());
            let kinds =
                [r.email.is_some(), r.slack.is_some(), r.webhook.is_some(), r.pagerduty.is_some(), r.log.is_some()];
            if kinds.iter().filter(|k| **k).count() != 1 {
                bad(p.clone(), "needs exactly one of email, slack, webhook, pagerduty, log".into());
            }
            let url = |u: &str| reqwest::Url::parse(u).ok().filter(|u| matches!(u.scheme(), "http" | "https"));
            if let Some(e) = &r.email {
                if e.to.is_empty() {
                    bad(format!("{p}.email.to"), "needs at least one address".into());
                }
                for (j, a) in e.to.iter().enumerate() {
                    if a.parse::<lettre::Address>().is_err() {
                        bad(format!("{p}.email.to[{j}]"), format!("{a:?} is not an e-mail address"));
                    }
                }
                if e.from.parse::<lettre::message::Mailbox>().is_err() {
                    bad(format!("{p}.email.from"), format!("{:?} is not an e-mail address", e.from));
                }
                if e.smarthost
                    .rsplit_once(':')
                    .and_then(|(h, port)| (!h.is_empty()).then_some(port))
                    .and_then(|p| p.parse::<u16>().ok())
                    .is_none()
                {
                    bad(format!("{p}.email.smarthost"), format!("{:?} is not host:port", e.smarthost));
                }
                if !matches!(e.tls.as_str(), "" | "starttls" | "tls" | "none") {
                    bad(format!("{p}.email.tls"), format!("{:?} is not starttls, tls or none", e.tls));
                }
                if e.username.is_empty() != e.password.is_empty() {
                    bad(format!("{p}.email.password"), "username and password go together".into());
                }
            }
            if let Some(s) = &r.slack {
                if url(&s.url).is_none() && s.url != REDACTED {
                    bad(format!("{p}.slack.url"), "not an http(s) URL".into());
                }
            }
            if let Some(w) = &r.webhook {
                if url(&w.url).is_none() {
                    bad(format!("{p}.webhook.url"), format!("{:?} is not an http(s) URL", w.url));
                }
            }
            if let Some(pd) = &r.pagerduty {
                if pd.routing_key.is_empty() {
                    bad(format!("{p}.pagerduty.routing_key"), "needed".into());
                }
                if !pd.url.is_empty() && url(&pd.url).is_none() {
                    bad(format!("{p}.pagerduty.url"), format!("{:?} is not an http(s) URL", pd.url));
                }
            }
        }
        for (which, t) in [("subject", &self.templates.subject), ("body", &self.templates.body)] {
            if let Err(e) = super::template::check(t) {
                bad(format!("templates.{which}"), e);
            }
        }
        check_route(&self.route, "route", true, &names, &mut errors);
        errors
    }

    /// The document with every secret replaced by [`REDACTED`].
    pub fn redacted(&self) -> AlertConfig {
        let mut c = self.clone();
        for r in &mut c.receivers {
            if let Some(e) = &mut r.email {
                if !e.password.is_empty() {
                    e.password = REDACTED.into();
                }
            }
            if let Some(s) = &mut r.slack {
                s.url = REDACTED.into();
            }
            if let Some(w) = &mut r.webhook {
                if !w.secret.is_empty() {
                    w.secret = REDACTED.into();
                }
            }
            if let Some(p) = &mut r.pagerduty {
                p.routing_key = REDACTED.into();
            }
        }
        c
    }

    /// Puts back the secrets of `stored` where this document (from a
    /// redacted copy) still says [`REDACTED`], by receiver name.
    pub fn unredact(&mut self, stored: &AlertConfig) {
        for r in &mut self.receivers {
            let Some(old) = stored.receivers.iter().find(|o| o.name == r.name) else { continue };
            if let (Some(e), Some(o)) = (&mut r.email, &old.email) {
                if e.password == REDACTED {
                    e.password = o.password.clone();
                }
            }
            if let (Some(s), Some(o)) = (&mut r.slack, &old.slack) {
                if s.url == REDACTED {
                    s.url = o.url.clone();
                }
            }
            if let (Some(w), Some(o)) = (&mut r.webhook, &old.webhook) {
                if w.secret == REDACTED {
                    w.secret = o.secret.clone();
                }
            }
            if let (Some(p), Some(o)) = (&mut r.pagerduty, &old.pagerduty) {
                if p.routing_key == REDACTED {
                    p.routing_key = o.routing_key.clone();
                }
            }
        }
    }
}

fn check_route(r: &Route, path: &str, root: bool, names: &[&str], errors: &mut Vec<FieldError>) {
    let mut bad = |p: String, reason: String| errors.push(FieldError { path: p, reason });
    if root && r.receivers.is_empty() {
        bad(format!("{path}.receivers"), "the root route needs a receiver: where everything else goes".into());
    }
    if root && r.matches != Match::default() {
        bad(format!("{path}.match"), "the root route takes every incident; match on its routes".into());
    }
    for (i, n) in r.receivers.iter().enumerate() {
        if !names.contains(&n.as_str()) {
            bad(format!("{path}.receivers[{i}]"), format!("no receiver {n:?}; defined: {}", names.join(", ")));
        }
    }
    for (i, l) in r.group_by.iter().flatten().enumerate() {
        if !GROUP_LABELS.contains(&l.as_str()) {
            bad(format!("{path}.group_by[{i}]"), format!("{l:?} is not one of {}", GROUP_LABELS.join(", ")));
        }
    }
    for (k, v) in
        [("group_wait", &r.group_wait), ("group_interval", &r.group_interval), ("repeat_interval", &r.repeat_interval)]
    {
        if let Some(Err(e)) = v.as_deref().map(parse_duration) {
            bad(format!("{path}.{k}"), e);
        }
    }
    for (i, s) in r.matches.severity.iter().enumerate() {
        if severity_of(s).is_none() {
            bad(format!("{path}.match.severity[{i}]"), format!("{s:?} is not one of {}", SEVERITIES.join(", ")));
        }
    }
    if let Some(s) = &r.matches.min_severity {
        if severity_of(s).is_none() {
            bad(format!("{path}.match.min_severity"), format!("{s:?} is not one of {}", SEVERITIES.join(", ")));
        }
    }
    for (i, child) in r.routes.iter().enumerate() {
        check_route(child, &format!("{path}.routes[{i}]"), false, names, errors);
    }
}

/// Parses the YAML document; serde's message says where.
pub fn parse_yaml(text: &str) -> Result<AlertConfig, String> {
    serde_saphyr::from_str(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> AlertConfig {
        parse_yaml(yaml).unwrap()
    }

    const TREE: &str = "
receivers:
  - name: mail
    email: { to: [ops@example.net], from: opmas@example.net, smarthost: 'mail.example.net:587' }
  - name: pager
    pagerduty: { routing_key: abc }
  - name: lab
    log: {}
route:
  receivers: [mail]
  group_by: [rule]
  routes:
    - match: { severity: [critical] }
      receivers: [pager]
      continue: true
      repeat_interval: 1h
    - match: { tag: [lab] }
      receivers: [lab]
      group_by: [device]
";

    fn labels(severity: i64, tags: &[&str]) -> Labels {
        Labels { rule: "r".into(), severity, tags: tags.iter().map(|t| t.to_string()).collect(), ..Labels::default() }
    }

    #[test]
    fn routes_take_the_first_match_or_go_on_with_continue_and_inherit() {
        let c = cfg(TREE);
        assert_eq!(c.check(), []);
        let t = c.route.targets(&labels(3, &[]));
        assert_eq!((t.len(), t[0].route.as_str(), t[0].receivers.clone()), (1, "0", vec!["mail".to_string()]));
        let t = c.route.targets(&labels(5, &["lab"]));
        let got: Vec<(&str, &str)> = t.iter().map(|t| (t.route.as_str(), t.receivers[0].as_str())).collect();
        assert_eq!(got, [("0.0", "pager"), ("0.1", "lab")], "continue goes on to the lab route");
        assert_eq!(
            (t[0].group_by.clone(), t[0].repeat_interval_ms),
            (vec!["rule".to_string()], 3_600_000),
            "inherited group_by"
        );
        assert_eq!((t[1].group_by.clone(), t[1].group_wait_ms), (vec!["device".to_string()], 30_000));
        let t = c.route.targets(&labels(4, &["lab"]));
        assert_eq!(t.iter().map(|t| t.route.as_str()).collect::<Vec<_>>(), ["0.1"]);
    }

    #[test]
    fn every_bad_field_is_named_and_secrets_are_redacted_and_kept() {
        let c = cfg("
receivers:
  - name: a
    email: { to: [not-an-address], from: x@y.z, smarthost: nohost, tls: sometimes, username: u }
  - name: a
    slack: { url: 'ftp://x' }
  - name: b
route:
  receivers: [nobody]
  group_by: [colour]
  group_wait: soon
  routes:
    - match: { severity: [urgent] }
");
        let paths: Vec<String> = c.check().into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            [
                "receivers[0].email.to[0]",
                "receivers[0].email.smarthost",
                "receivers[0].email.tls",
                "receivers[0].email.password",
                "receivers[1].name",
                "receivers[1].slack.url",
                "receivers[2]",
                "route.receivers[0]",
                "route.group_by[0]",
                "route.group_wait",
                "route.routes[0].match.severity[0]",
            ]
        );
        let mut c = cfg(TREE);
        c.receivers.push(Receiver {
            name: "s".into(),
            slack: Some(Slack { url: "https://hooks.example/T/B/x".into() }),
            ..Default::default()
        });
        let shown = c.redacted();
        assert_eq!(shown.receivers[1].pagerduty.as_ref().unwrap().routing_key, REDACTED);
        assert_eq!(shown.receivers[3].slack.as_ref().unwrap().url, REDACTED);
        let mut back = shown.clone();
        back.unredact(&c);
        assert_eq!(back, c, "sent back as shown, the secrets are kept");
    }
}
