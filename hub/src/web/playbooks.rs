//! `/playbooks`: what the hub does on its own when a finding or an incident
//! matches, with each playbook's mode and who changed it last;
//! `/playbooks/{name}` and `/playbooks/new`: one playbook as YAML (the
//! format of `config/playbooks/*.yaml`) in the shared editor
//! ([`super::editor`]), checked whole by [`Playbook::compile`] and saved
//! through the API's own code. Administrators change playbooks (one in
//! `auto` mode acts on every router without asking anyone, as the API
//! says too); everyone else reads them.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};

use super::editor::{self, Doc, DocForm};
use super::layout::{self, Nav};
use super::{signed_page, CsrfOnly, PageError, Signed};
use crate::act::playbook::{parse_yaml, Playbook, PlaybookSpec};
use crate::act::ACTIONS;
use crate::http::AppState;
use crate::store::now_ms;
use crate::store::playbooks::PlaybookRow;
use crate::store::users::Role;

/// What `/playbooks/new` starts from: a playbook that checks, in dry run,
/// so saving it as it is does nothing to any router.
const TEMPLATE: &str = "name: new-playbook
description: What this playbook does and why
mode: dry_run
trigger:
  finding:
    kind: ssh.bruteforce
conditions:
  never_block: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16]
steps:
  - action: block_ip
    params: { net: \"{{ src_ip }}\", timeout_s: 3600 }
    targets: reporting
undo_after: 1h
rate_limit: { max: 20, per: 1h }
";

impl Doc for PlaybookSpec {
    const KIND: &'static str = "playbook";
    fn parse(text: &str) -> Result<Vec<PlaybookSpec>, String> {
        parse_yaml(text).map(|p| vec![p])
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn problems(&self) -> Vec<(String, String)> {
        match Playbook::compile(self.clone()) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| (e.path, e.reason)).collect(),
        }
    }
}

/// A playbook as the YAML a person edits, lists indented as in
/// `config/playbooks/`.
pub fn to_yaml(spec: &PlaybookSpec) -> Result<String, PageError> {
    let mut options = serde_saphyr::SerializerOptions::default();
    options.compact_list_indent = false;
    serde_saphyr::to_string_with_options(spec, options)
        .map_err(|e| PageError::Internal(format!("playbook {:?} as YAML: {e}", spec.name)))
}

fn named(name: &str) -> Result<(), PageError> {
    editor::named(name, "playbook")
}

/// A playbook's mode (or off), as a badge.
pub fn mode_badge(spec: &PlaybookSpec) -> Markup {
    let (class, symbol, text) = match (spec.enabled, spec.mode.as_str()) {
        (false, _) => ("state-never", "○", "off"),
        (true, "auto") => ("state-online", "✓", "auto"),
        (true, "approval") => ("state-stale", "…", "approval"),
        (true, _) => ("state-stale", "…", "dry run"),
    };
    html! { span class={ "badge " (class) } { span aria-hidden="true" { (symbol) " " } (text) } }
}

/// What sets it off, in a few words.
fn trigger_text(spec: &PlaybookSpec) -> Markup {
    let t = &spec.trigger;
    html! {
        @if let Some(f) = &t.finding {
            "finding "
            @if let Some(k) = &f.kind { code { (k.items().join(", ")) } }
            @if let Some(a) = &f.agent { " of " (a.items().join(", ")) }
            @if let Some(s) = &f.min_severity { " ≥ " (s) }
        }
        @if let Some(i) = &t.incident {
            "incident"
            @if let Some(r) = &i.rule { " of " code { (r.items().join(", ")) } }
            @if let Some(s) = &i.min_severity { " ≥ " (s) }
        }
    }
}

/// What it does, in a few words.
fn steps_text(spec: &PlaybookSpec) -> Markup {
    html! {
        @for (i, s) in spec.steps.iter().enumerate() {
            @if i > 0 { "; " }
            code { (s.action) } " on " (s.targets.items().join(", "))
        }
        @if let Some(u) = &spec.undo_after { span.muted { ", undone after " (u) } }
    }
}

/// `GET /playbooks?saved=&deleted=`.
pub async fn list(
    State(state): State<AppState>,
    who: Signed,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    editor::list_params(&params, "playbook")?;
    let rows = state.store.playbooks().await?;
    let admin = who.may(Role::Admin);
    let now = now_ms();
    let body = html! {
        div.pagehead {
            h1 { "Playbooks" }
            span.muted { "what the hub does on its own when a finding or an incident matches" }
            @if admin { a.button #new-playbook href="/playbooks/new" { "New playbook" } }
        }
        @if let Some(n) = params.get("saved") {
            p.notice #saved role="status" { "Saved playbook " strong { (n) } "; it judges the next finding." }
        }
        @if let Some(n) = params.get("deleted") {
            p.notice #deleted role="status" { "Deleted playbook " strong { (n) } "; its actions stay in the log." }
        }
        table #playbooks {
            thead { tr {
                th { "Playbook" } th { "Mode" } th { "Trigger" } th { "Does" } th { "Changed" }
                @if admin { th { "Switch" } }
            } }
            tbody {
                @for r in &rows {
                    @let s = &r.spec;
                    tr data-playbook=(s.name) data-enabled=(s.enabled) {
                        td data-label="Playbook" {
                            a href={ "/playbooks/" (s.name) } { (s.name) }
                            @if !s.description.is_empty() { div.muted.rule-description { (s.description) } }
                        }
                        td data-label="Mode" { (mode_badge(s)) }
                        td data-label="Trigger" { (trigger_text(s)) }
                        td data-label="Does" { (steps_text(s)) }
                        td data-label="Changed" { (layout::changed_by(&r.updated_by)) " " span.muted { (layout::time(r.updated_ms, now)) } }
                        @if admin {
                            td data-label="Switch" {
                                (editor::switch(&who, "/playbooks", &s.name, s.enabled))
                            }
                        }
                    }
                }
                @if rows.is_empty() { tr.empty { td colspan="6" { "No playbooks: the hub acts only when a person asks." } } }
            }
        }
        p.muted { "Shipped playbooks come from " code { "config/playbooks/" } "; a changed or deleted one is left as it is. "
            a href="/actions" { "The actions" } " show what each decided." }
    };
    Ok(signed_page(&who, "Playbooks", Nav::Actions, body))
}

/// The editor page for `existing` (a stored playbook) or a new one.
fn editor(who: &Signed, existing: Option<&PlaybookRow>, yaml: &str, problems: &[(String, String)]) -> Response {
    let now = now_ms();
    let facts = existing.map(|r| {
        let s = &r.spec;
        let actions = format!("/actions?playbook={}", layout::url_encode(&s.name));
        layout::facts(&[
            ("Trigger", trigger_text(s)),
            ("Does", steps_text(s)),
            (
                "Changed",
                html! { (layout::changed_by(&r.updated_by)) " " span.muted { (layout::time(r.updated_ms, now)) } },
            ),
            ("Actions", html! { a href=(actions) { "what it decided" } }),
        ])
    });
    let help = html! {
        dl.help {
            dt { code { "name" } } dd { "1 to 64 of a-z, 0-9, " code { "-" } ", " code { "_" } ", " code { "." } }
            dt { code { "mode" } } dd {
                code { "auto" } " (sent at once), " code { "approval" } " (waits for an operator), "
                code { "dry_run" } " (recorded, nothing sent)"
            }
            dt { code { "trigger" } } dd {
                code { "finding" } " (" code { "kind" } ", " code { "agent" } ", " code { "min_severity" } ") or "
                code { "incident" } " (" code { "rule" } ", " code { "min_severity" } ")"
            }
            dt { code { "conditions" } } dd {
                code { "tags" } " the reporting router carries; " code { "never_block" } ": networks never touched"
            }
            dt { code { "steps" } } dd {
                code { "action" } " (" (ACTIONS.join(", ")) "), " code { "params" } " (whole fields of the trigger: "
                code { "\"{{ src_ip }}\"" } "), " code { "targets" } ": " code { "reporting" } ", " code { "all" } ", "
                code { "tag:<tag>" } ", " code { "device:<id>" }
            }
            dt { code { "undo_after" } } dd { "take blocks and bans back after " code { "30m" } ", " code { "1h" } ", up to " code { "7d" } }
            dt { code { "rate_limit" } } dd { code { "{ max: 20, per: 1h }" } ": at most that many actions" }
        }
    };
    let page = editor::Page {
        kind: "playbook",
        title: existing.map_or_else(|| "New playbook".to_owned(), |r| format!("Playbook {}", r.spec.name)),
        nav: Nav::Actions,
        base: "/playbooks",
        base_title: "Playbooks",
        action: existing.map_or_else(|| "/playbooks/new".to_owned(), |r| format!("/playbooks/{}", r.spec.name)),
        existing: existing.map(|r| r.spec.name.as_str()),
        badge: existing.map(|r| mode_badge(&r.spec)),
        facts,
        help,
        may_edit: who.may(Role::Admin),
        read_only_note: "Everyone sees the playbooks; administrators change them.",
        delete_note: "Its actions stay in the log; a shipped playbook is not brought back at the next start.",
    };
    editor::page(who, page, yaml, problems)
}

async fn found(state: &AppState, name: &str) -> Result<PlaybookRow, PageError> {
    state.store.playbook(name).await?.ok_or_else(|| PageError::NotFound(format!("There is no playbook {name:?}.")))
}

/// `GET /playbooks/{name}`.
pub async fn edit(State(state): State<AppState>, who: Signed, Path(name): Path<String>) -> Result<Response, PageError> {
    named(&name)?;
    let row = found(&state, &name).await?;
    let yaml = to_yaml(&row.spec)?;
    Ok(editor(&who, Some(&row), &yaml, &[]))
}

/// `GET /playbooks/new` (administrators).
pub async fn new_form(who: Signed) -> Result<Response, PageError> {
    who.require(Role::Admin, "writing playbooks")?;
    Ok(editor(&who, None, TEMPLATE, &[]))
}

async fn saved(state: &AppState, spec: &PlaybookSpec, who: &Signed) -> Result<Response, PageError> {
    crate::http::playbooks::save(state, spec, &who.session.user).await?;
    Ok(Redirect::to(&format!("/playbooks?saved={}", layout::url_encode(&spec.name))).into_response())
}

/// `POST /playbooks/{name}` (administrators): saves the edited playbook,
/// or shows the form again with its problems (422).
pub async fn save(
    State(state): State<AppState>,
    who: Signed,
    Path(name): Path<String>,
    Form(f): Form<DocForm>,
) -> Result<Response, PageError> {
    who.check_csrf(&f.csrf)?;
    who.require(Role::Admin, "changing playbooks")?;
    named(&name)?;
    let row = found(&state, &name).await?;
    let text = f.text();
    match editor::read::<PlaybookSpec>(&text, Some(&name)) {
        (Some(spec), problems) if problems.is_empty() => saved(&state, &spec, &who).await,
        (_, problems) => Ok(editor(&who, Some(&row), &text, &problems)),
    }
}

/// `POST /playbooks/new` (administrators): saves a playbook under a name
/// not taken.
pub async fn create(State(state): State<AppState>, who: Signed, Form(f): Form<DocForm>) -> Result<Response, PageError> {
    who.check_csrf(&f.csrf)?;
    who.require(Role::Admin, "writing playbooks")?;
    let text = f.text();
    let (spec, mut problems) = editor::read::<PlaybookSpec>(&text, None);
    if let Some(s) = &spec {
        let taken = s.name != "new" && state.store.playbook(&s.name).await?.is_some();
        problems.splice(0..0, editor::new_name_problems(s, taken, "/playbooks"));
    }
    match spec {
        Some(spec) if problems.is_empty() => saved(&state, &spec, &who).await,
        _ => Ok(editor(&who, None, &text, &problems)),
    }
}

/// `POST /playbooks/{name}/{enable|disable|delete}` (administrators).
pub async fn action(
    State(state): State<AppState>,
    who: Signed,
    Path((name, action)): Path<(String, String)>,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, PageError> {
    who.check_csrf(&f.csrf)?;
    who.require(Role::Admin, "changing playbooks")?;
    named(&name)?;
    let by = &who.session.user;
    let (found, to) = match editor::Change::parse(&action)? {
        editor::Change::Enabled(on) => {
            (state.store.set_playbook_enabled(&name, on, by, now_ms()).await?, "/playbooks".to_owned())
        }
        editor::Change::Delete => {
            (state.store.delete_playbook(&name, by, now_ms()).await?, format!("/playbooks?deleted={name}"))
        }
    };
    if !found {
        return Err(PageError::NotFound(format!("There is no playbook {name:?}.")));
    }
    tracing::info!(playbook = %name, %action, by = %by, "playbook changed from the web UI");
    Ok(Redirect::to(&to).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_playbook_goes_to_yaml_and_back_unchanged() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/playbooks");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_none_or(|x| x != "yaml") {
                continue;
            }
            let spec = parse_yaml(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let yaml = to_yaml(&spec).unwrap();
            let (read, problems) = editor::read::<PlaybookSpec>(&yaml, Some(&spec.name));
            assert_eq!((read.as_ref(), problems.len()), (Some(&spec), 0), "{}: {problems:?}\n{yaml}", path.display());
            n += 1;
        }
        assert_eq!(n, 2);
    }

    #[test]
    fn the_new_playbook_template_checks_and_acts_on_nothing() {
        let (spec, problems) = editor::read::<PlaybookSpec>(TEMPLATE, None);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(spec.unwrap().mode.as_str(), "dry_run");
    }

    #[test]
    fn a_playbook_text_with_mistakes_names_each_by_path() {
        let text = "name: other\ntrigger: { finding: { kind: ssh.bruteforce } }\nsteps:\n  - action: block_ipp\n    targets: everywhere\n";
        let (_, problems) = editor::read::<PlaybookSpec>(text, Some("mine"));
        let paths: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths[0], "name", "{problems:?}");
        assert!(paths.iter().any(|p| p.starts_with("steps[0]")), "{problems:?}");
        let (spec, problems) = editor::read::<PlaybookSpec>("name: a\nmode: sometimes\n", None);
        assert!(spec.is_none());
        assert_eq!(problems[0].0, "yaml");
    }
}
