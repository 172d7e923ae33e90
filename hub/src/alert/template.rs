//! Subjects and bodies of notifications: minijinja templates over a
//! [`Notification`]. Checked when the alerting document is saved, so a
//! mistake is a 422 then, not a blank message later.

use minijinja::Environment;
use serde::{Deserialize, Serialize};

/// The built-in subject.
pub const SUBJECT: &str = "[OPMAS {{ status | upper }}] {{ title }}";
/// The built-in body.
pub const BODY: &str = "{{ title }}
{% for i in incidents %}
- [{{ i.state }}] {{ i.severity }} {{ i.rule }} on {{ i.key }}: {{ i.findings }} findings from {{ i.devices | join(', ') }}, {{ i.first }} to {{ i.last }}
  {{ i.reason }}
  {{ i.link }}
{%- endfor %}
";

/// One incident in a notification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IncidentNote {
    pub id: i64,
    pub rule: String,
    pub key: String,
    pub severity: String,
    /// open, acknowledged or resolved.
    pub state: String,
    pub reason: String,
    pub findings: i64,
    pub devices: Vec<String>,
    pub first: String,
    pub last: String,
    /// Its page in the web UI.
    pub link: String,
}

/// What a notification says: the group's incidents, firing or resolved.
/// This is also the generic webhook's JSON body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Notification {
    /// `firing` while any incident of the group is open, else `resolved`.
    pub status: String,
    /// The highest severity among the firing ones (or all, when resolved).
    pub severity: String,
    pub title: String,
    pub receiver: String,
    /// The group's labels, as `rule=x,severity=high`.
    pub group_key: String,
    pub incidents: Vec<IncidentNote>,
    /// The incidents page, filtered to the group's.
    pub link: String,
    pub subject: String,
    pub body: String,
}

/// Checks a template (empty is the built-in one).
pub fn check(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Ok(());
    }
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_template("t", text).map(|_| ()).map_err(|e| format!("{e:#}"))
}

/// Renders `subject` and `body` (empty: the built-in ones) for `n`.
pub fn render(subject: &str, body: &str, n: &Notification) -> Result<(String, String), String> {
    let mut env = Environment::new();
    // A name the notification does not have is an error, not a blank.
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let pick = |t: &'static str, given: &str| if given.is_empty() { t.to_owned() } else { given.to_owned() };
    env.add_template_owned("subject", pick(SUBJECT, subject)).map_err(|e| format!("subject: {e:#}"))?;
    env.add_template_owned("body", pick(BODY, body)).map_err(|e| format!("body: {e:#}"))?;
    let s = env.get_template("subject").and_then(|t| t.render(n)).map_err(|e| format!("subject: {e:#}"))?;
    let b = env.get_template("body").and_then(|t| t.render(n)).map_err(|e| format!("body: {e:#}"))?;
    // A subject is one line.
    Ok((s.lines().next().unwrap_or_default().trim().to_owned(), b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note() -> Notification {
        Notification {
            status: "firing".into(),
            severity: "high".into(),
            title: "one address brute-forcing two routers".into(),
            receiver: "mail".into(),
            group_key: "rule=two-routers".into(),
            incidents: vec![IncidentNote {
                id: 7,
                rule: "two-routers".into(),
                key: "src_ip=198.51.100.77".into(),
                severity: "high".into(),
                state: "open".into(),
                reason: "2 findings from 2 routers within 10m".into(),
                findings: 2,
                devices: vec!["gw-a".into(), "gw-b".into()],
                first: "2026-12-02T10:00:00Z".into(),
                last: "2026-12-02T10:01:00Z".into(),
                link: "http://hub/incidents/7".into(),
            }],
            link: "http://hub/incidents?rule=two-routers".into(),
            subject: String::new(),
            body: String::new(),
        }
    }

    #[test]
    fn the_built_in_templates_name_the_incident_and_link_it() {
        let (s, b) = render("", "", &note()).unwrap();
        assert_eq!(s, "[OPMAS FIRING] one address brute-forcing two routers");
        assert!(b.contains("high two-routers on src_ip=198.51.100.77: 2 findings from gw-a, gw-b"), "{b}");
        assert!(b.contains("http://hub/incidents/7"), "{b}");
    }

    #[test]
    fn a_template_mistake_is_found_when_checked_and_names_are_strict() {
        assert!(check("{{ title ").is_err());
        assert!(check("{% for i in incidents %}").is_err());
        assert_eq!(check("{{ title }} ({{ incidents | length }})"), Ok(()));
        let e = render("{{ titel }}", "", &note()).unwrap_err();
        assert!(e.starts_with("subject: ") && e.contains("undefined"), "{e}");
    }
}
