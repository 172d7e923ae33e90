//! `/rules`: the correlation rules, with who changed each last and the
//! buttons that turn them on and off; `/rules/{name}` and `/rules/new`: one
//! rule as YAML (the format of `config/rules/*.yaml`) in a text area. On
//! saving, the text is read as exactly one rule and checked whole
//! ([`Rule::compile`]); every problem is listed by its path with the text
//! kept as typed, else the rule is saved through the API's own code
//! (`http::rules::save`, which also has the correlator rebuild). Operators
//! change rules; viewers read them.

use std::collections::HashMap;

use super::editor::{self, Doc, DocForm};
use super::layout::{self, Nav};
use super::{signed_page, CsrfOnly, PageError, Signed};
use crate::correlate::rule::{parse_yaml, KeyField, Rule, RuleSpec, RuleType, SEVERITIES};
use crate::events::Event;
use crate::http::AppState;
use crate::store::now_ms;
use crate::store::rules::RuleRow;
use crate::store::users::Role;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};

/// What `/rules/new` starts from: a rule that checks, to change.
const TEMPLATE: &str = "name: new-rule
description: What an incident of this rule means
type: threshold
severity: medium
window: 10m
key: src_ip
count: 5
devices: 2
match:
  - kind: ssh.bruteforce
";

fn type_name(t: RuleType) -> &'static str {
    match t {
        RuleType::All => "all",
        RuleType::Sequence => "sequence",
        RuleType::Threshold => "threshold",
        RuleType::Absence => "absence",
    }
}

/// A rule as the YAML a person edits: the fields it sets, in the order of
/// [`RuleSpec`], lists indented under their key as in `config/rules/`.
pub fn to_yaml(spec: &RuleSpec) -> Result<String, PageError> {
    let mut options = serde_saphyr::SerializerOptions::default();
    options.compact_list_indent = false;
    serde_saphyr::to_string_with_options(spec, options)
        .map_err(|e| PageError::Internal(format!("rule {:?} as YAML: {e}", spec.name)))
}

/// A rule name from the path, or 422.
fn named(name: &str) -> Result<(), PageError> {
    editor::named(name, "rule")
}

impl Doc for RuleSpec {
    const KIND: &'static str = "rule";
    fn parse(text: &str) -> Result<Vec<RuleSpec>, String> {
        parse_yaml(text)
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn problems(&self) -> Vec<(String, String)> {
        match Rule::compile(self.clone()) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| (e.path, e.reason)).collect(),
        }
    }
}

/// What joins a rule's findings, in words.
fn key_text(spec: &RuleSpec) -> Markup {
    html! {
        @match (&spec.key, spec.rule_type) {
            (Some(k), _) => { code { (k) } }
            (None, RuleType::Threshold) => { span.muted { "fleet-wide" } }
            (None, RuleType::Absence) => { span.muted { "per router" } }
            (None, _) => { span.muted { "—" } }
        }
        @if spec.same_device { " " span.muted { "on one router" } }
        @if let Some(t) = &spec.tag { " " span.muted { "tag " } span.badge { (t) } }
    }
}

fn enabled_badge(on: bool) -> Markup {
    if on {
        layout::state_badge_as("on", "online")
    } else {
        layout::state_badge_as("off", "never")
    }
}

/// `GET /rules?saved=&deleted=`.
pub async fn list(
    State(state): State<AppState>,
    who: Signed,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    editor::list_params(&params, "rule")?;
    let rules = state.store.rules().await?;
    let operator = who.may(Role::Operator);
    let now = now_ms();
    let body = html! {
        div.pagehead {
            h1 { "Rules" }
            span.muted { "correlation: which findings together make an incident" }
            @if operator { a.button #new-rule href="/rules/new" { "New rule" } }
        }
        @if let Some(n) = params.get("saved") {
            p.notice #saved role="status" { "Saved rule " strong { (n) } "; the correlator uses it from now on." }
        }
        @if let Some(n) = params.get("deleted") {
            p.notice #deleted role="status" { "Deleted rule " strong { (n) } "; its incidents stay." }
        }
        table #rules {
            thead { tr {
                th { "Rule" } th { "Type" } th { "Severity" } th { "Window" } th { "Key" } th { "Enabled" } th { "Changed" }
                @if operator { th { "Switch" } }
            } }
            tbody {
                @for r in &rules {
                    @let s = &r.spec;
                    tr data-rule=(s.name) data-enabled=(s.enabled) {
                        td data-label="Rule" {
                            a href={ "/rules/" (s.name) } { (s.name) }
                            @if !s.description.is_empty() { div.muted.rule-description { (s.description) } }
                        }
                        td data-label="Type" { (type_name(s.rule_type)) }
                        td data-label="Severity" {
                            @match crate::correlate::rule::severity_of(&s.severity) {
                                Some(n) => { (layout::severity_badge(n)) }
                                None => { (s.severity) }
                            }
                        }
                        td.nowrap data-label="Window" { (s.window) }
                        td.nowrap data-label="Key" { (key_text(s)) }
                        td data-label="Enabled" { (enabled_badge(s.enabled)) }
                        td data-label="Changed" { (layout::changed_by(&r.updated_by)) " " span.muted { (layout::time(r.updated_ms, now)) } }
                        @if operator {
                            td data-label="Switch" {
                                (editor::switch(&who, "/rules", &s.name, s.enabled))
                            }
                        }
                    }
                }
                @if rules.is_empty() { tr.empty { td colspan="8" { "No rules: nothing is correlated." } } }
            }
        }
        p.muted { "Shipped rules come from " code { "config/rules/" } "; a changed or deleted one is left as it is. "
            a href="/incidents" { "The incidents" } " are what the rules made." }
    };
    Ok(signed_page(&who, "Rules", Nav::Rules, body))
}

/// The editor page for `existing` (a stored rule) or a new one.
fn editor(who: &Signed, existing: Option<&RuleRow>, yaml: &str, problems: &[(String, String)]) -> Response {
    let now = now_ms();
    let facts = existing.map(|r| {
        let s = &r.spec;
        layout::facts(&[
            ("Type", html! { (type_name(s.rule_type)) }),
            ("Severity", html! { (s.severity) }),
            ("Window", html! { (s.window) }),
            ("Key", key_text(s)),
            (
                "Changed",
                html! { (layout::changed_by(&r.updated_by)) " " span.muted { (layout::time(r.updated_ms, now)) } },
            ),
            (
                "Incidents",
                html! { a href={ "/incidents?rule=" (layout::url_encode(&s.name)) } { "this rule's incidents" } },
            ),
        ])
    });
    let help = html! {
        dl.help {
            dt { code { "name" } } dd { "1 to 64 of a-z, 0-9, " code { "-" } ", " code { "_" } ", " code { "." } }
            dt { code { "type" } } dd {
                code { "all" } " (every step, any order), " code { "sequence" } " (the steps in order), "
                code { "threshold" } " (" code { "count" } " findings from " code { "devices" } " routers), "
                code { "absence" } " (nothing from a router)"
            }
            dt { code { "severity" } } dd { (SEVERITIES.join(", ")) }
            dt { code { "window" } } dd { "how close in time: " code { "90s" } ", " code { "10m" } ", " code { "2h" } ", up to " code { "7d" } }
            dt { code { "key" } } dd {
                "what joins findings: "
                @for (i, (k, _)) in KeyField::ALL.iter().enumerate() { @if i > 0 { ", " } code { (k) } }
            }
            dt { code { "match" } } dd {
                "the steps, each with " code { "agent" } ", " code { "kind" } " (wildcards: " code { "wifi.*" } ") or "
                code { "min_severity" }
            }
            dt { code { "quiet" } } dd { "how long without a finding before an incident resolves itself (default: the window)" }
            dt { code { "same_device" } ", " code { "tag" } ", " code { "enabled" } } dd { "one router only; routers with a tag; on or off" }
        }
    };
    let page = editor::Page {
        kind: "rule",
        title: existing.map_or_else(|| "New rule".to_owned(), |r| format!("Rule {}", r.spec.name)),
        nav: Nav::Rules,
        base: "/rules",
        base_title: "Rules",
        action: existing.map_or_else(|| "/rules/new".to_owned(), |r| format!("/rules/{}", r.spec.name)),
        existing: existing.map(|r| r.spec.name.as_str()),
        badge: existing.map(|r| enabled_badge(r.spec.enabled)),
        facts,
        help,
        may_edit: who.may(Role::Operator),
        read_only_note: "Viewers see the rules; operators change them.",
        delete_note: "Its incidents stay; a shipped rule is not brought back at the next start.",
    };
    editor::page(who, page, yaml, problems)
}

/// `GET /rules/{name}`.
pub async fn edit(State(state): State<AppState>, who: Signed, Path(name): Path<String>) -> Result<Response, PageError> {
    named(&name)?;
    let row =
        state.store.rule(&name).await?.ok_or_else(|| PageError::NotFound(format!("There is no rule {name:?}.")))?;
    let yaml = to_yaml(&row.spec)?;
    Ok(editor(&who, Some(&row), &yaml, &[]))
}

/// `GET /rules/new` (operators).
pub async fn new_form(who: Signed) -> Result<Response, PageError> {
    who.require(Role::Operator, "writing rules")?;
    Ok(editor(&who, None, TEMPLATE, &[]))
}

/// The one rule in `text` and everything wrong with it, by path.
fn read_rule(text: &str, name: Option<&str>) -> (Option<RuleSpec>, Vec<(String, String)>) {
    editor::read(text, name)
}

/// `POST /rules/{name}` (operators): saves the edited rule, or shows the
/// form again with its problems (422).
pub async fn save(
    State(state): State<AppState>,
    who: Signed,
    Path(name): Path<String>,
    Form(f): Form<DocForm>,
) -> Result<Response, PageError> {
    who.check_csrf(&f.csrf)?;
    who.require(Role::Operator, "changing rules")?;
    named(&name)?;
    let row =
        state.store.rule(&name).await?.ok_or_else(|| PageError::NotFound(format!("There is no rule {name:?}.")))?;
    let text = f.text();
    match read_rule(&text, Some(&name)) {
        (Some(spec), problems) if problems.is_empty() => {
            // The list shows the stored row; the status (new or not) is the API's.
            let _saved = crate::http::rules::save(&state, &spec, &who.session.user).await?;
            Ok(Redirect::to(&format!("/rules?saved={}", layout::url_encode(&spec.name))).into_response())
        }
        (_, problems) => Ok(editor(&who, Some(&row), &text, &problems)),
    }
}

/// `POST /rules/new` (operators): saves a rule under a name not taken.
pub async fn create(State(state): State<AppState>, who: Signed, Form(f): Form<DocForm>) -> Result<Response, PageError> {
    who.check_csrf(&f.csrf)?;
    who.require(Role::Operator, "writing rules")?;
    let text = f.text();
    let (spec, mut problems) = read_rule(&text, None);
    if let Some(s) = &spec {
        let taken = s.name != "new" && state.store.rule(&s.name).await?.is_some();
        problems.splice(0..0, editor::new_name_problems(s, taken, "/rules"));
    }
    match spec {
        Some(spec) if problems.is_empty() => {
            // The list shows the stored row; the status (new or not) is the API's.
            let _saved = crate::http::rules::save(&state, &spec, &who.session.user).await?;
            Ok(Redirect::to(&format!("/rules?saved={}", layout::url_encode(&spec.name))).into_response())
        }
        _ => Ok(editor(&who, None, &text, &problems)),
    }
}

/// `POST /rules/{name}/{enable|disable|delete}` (operators): back to the
/// rules; the correlator rebuilds with the change.
pub async fn action(
    State(state): State<AppState>,
    who: Signed,
    Path((name, action)): Path<(String, String)>,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, PageError> {
    who.check_csrf(&f.csrf)?;
    who.require(Role::Operator, "changing rules")?;
    named(&name)?;
    let by = &who.session.user;
    let (found, to) = match editor::Change::parse(&action)? {
        editor::Change::Enabled(on) => {
            (state.store.set_rule_enabled(&name, on, by, now_ms()).await?, "/rules".to_owned())
        }
        editor::Change::Delete => {
            (state.store.delete_rule(&name, by, now_ms()).await?, format!("/rules?deleted={name}"))
        }
    };
    if !found {
        return Err(PageError::NotFound(format!("There is no rule {name:?}.")));
    }
    state.bus.publish([Event::Rules]);
    tracing::info!(rule = %name, %action, by = %by, "rule changed from the web UI");
    Ok(Redirect::to(&to).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped rules, as `config/rules/*.yaml` holds them.
    fn shipped() -> Vec<(String, RuleSpec)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/rules");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == "yaml") {
                let text = std::fs::read_to_string(&path).unwrap();
                for spec in parse_yaml(&text).unwrap() {
                    out.push((path.display().to_string(), spec));
                }
            }
        }
        out
    }

    #[test]
    fn every_shipped_rule_goes_to_yaml_and_back_unchanged() {
        let rules = shipped();
        assert_eq!(rules.len(), 5, "{:?}", rules.iter().map(|(p, _)| p).collect::<Vec<_>>());
        for (path, spec) in rules {
            let yaml = to_yaml(&spec).unwrap();
            let back = parse_yaml(&yaml).unwrap_or_else(|e| panic!("{path}: {e}\n{yaml}"));
            assert_eq!(back, std::slice::from_ref(&spec), "{path}:\n{yaml}");
            let (read, problems) = read_rule(&yaml, Some(&spec.name));
            assert_eq!((read.as_ref(), problems.len()), (Some(&spec), 0), "{path}: {problems:?}");
        }
    }

    #[test]
    fn the_new_rule_template_checks() {
        let (spec, problems) = read_rule(TEMPLATE, None);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(spec.unwrap().name, "new-rule");
    }

    #[test]
    fn a_rule_text_with_mistakes_names_each_by_path() {
        let text =
            "name: other\ntype: threshold\nseverity: urgent\nwindow: 10\nkey: src_ip\ncount: 3\nmatch:\n  - kind: x\n";
        let (_, problems) = read_rule(text, Some("mine"));
        let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["name", "severity", "window"], "{problems:?}");
        assert!(problems[1].1.contains("urgent"), "{problems:?}");

        let (spec, problems) = read_rule("name: a\ntype: often\n", None);
        assert!(spec.is_none());
        assert_eq!(problems[0].0, "yaml");
        assert!(problems[0].1.contains("often"), "{problems:?}");

        let two = "- name: a\n  type: absence\n  severity: high\n  window: 15m\n- name: b\n  type: absence\n  severity: low\n  window: 1h\n";
        let (_, problems) = read_rule(two, None);
        assert!(problems[0].1.contains("holds 2 rules"), "{problems:?}");
        let (_, problems) = read_rule(&"#".repeat(editor::YAML_LEN + 1), None);
        assert!(problems[0].1.contains("longer than"), "{problems:?}");
    }
}
