//! The YAML editor that rules and playbooks share: one document in a text
//! area, in the format of its seed files (`config/rules/`,
//! `config/playbooks/`). On saving, the text is read as exactly one
//! document and checked whole; every problem is listed by its path with
//! the text kept as typed (422), else the page saves it through the API's
//! own code. Who may change it is the page's to say; everyone else reads.
//! The lists' parameters, on/off buttons and changes are shared here too,
//! and the problems box with the alerting page.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{self, Nav};
use super::{signed_page, PageError, Signed};

/// Longest document text a form may send, in bytes (one is a few hundred).
pub const YAML_LEN: usize = 64 * 1024;

/// A document edited on these pages.
pub trait Doc: Sized {
    /// `rule`, `playbook`.
    const KIND: &'static str;
    /// Every document in `text` (a seed file may hold several).
    fn parse(text: &str) -> Result<Vec<Self>, String>;
    fn name(&self) -> &str;
    /// Everything wrong with it, by path; empty if it may be saved.
    fn problems(&self) -> Vec<(String, String)>;
}

/// The editor's form.
#[derive(Debug, Deserialize)]
pub struct DocForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub yaml: String,
}

impl DocForm {
    /// The text as typed, with the browser's CR LF line ends made LF.
    pub fn text(&self) -> String {
        self.yaml.replace("\r\n", "\n")
    }
}

/// The one document in `text` and everything wrong with it, by path:
/// `yaml` for text that is not one document, `name` when it is not `name`
/// (editing a stored one), else the document's own problems.
pub fn read<D: Doc>(text: &str, name: Option<&str>) -> (Option<D>, Vec<(String, String)>) {
    let kind = D::KIND;
    if text.len() > YAML_LEN {
        return (None, vec![("yaml".into(), format!("longer than {YAML_LEN} bytes; a {kind} is a few lines"))]);
    }
    let mut docs = match D::parse(text) {
        Ok(d) => d,
        Err(e) => return (None, vec![("yaml".into(), e)]),
    };
    if docs.len() != 1 {
        let n = docs.len();
        return (None, vec![("yaml".into(), format!("the text holds {n} {kind}s; this page saves exactly one"))]);
    }
    let doc = docs.remove(0);
    let mut problems = Vec::new();
    if let Some(name) = name {
        if doc.name() != name {
            problems.push((
                "name".into(),
                format!(
                    "{:?} is not this {kind}'s name ({name:?}); a {kind} under another name is written with New {kind}",
                    doc.name()
                ),
            ));
        }
    }
    problems.extend(doc.problems());
    (Some(doc), problems)
}

/// The problems of a new document's name: `new` is the page's own
/// address, and a name taken is changed on its own page.
pub fn new_name_problems<D: Doc>(doc: &D, taken: bool, base: &str) -> Vec<(String, String)> {
    let kind = D::KIND;
    if doc.name() == "new" {
        vec![("name".into(), "\"new\" is this page's address; choose another name".into())]
    } else if taken {
        let name = doc.name();
        vec![("name".into(), format!("a {kind} {name:?} exists already; change it on its own page, {base}/{name}"))]
    } else {
        Vec::new()
    }
}

/// One editor page.
pub struct Page<'a> {
    /// `rule`, `playbook`.
    pub kind: &'static str,
    /// `Rule two-routers`, `New playbook`.
    pub title: String,
    pub nav: Nav,
    /// Where the list is (`/rules`) and so the back link.
    pub base: &'static str,
    /// `Rules`, for the back link.
    pub base_title: &'static str,
    /// Where the form posts.
    pub action: String,
    /// The stored document's name, for its delete form (`None` when new).
    pub existing: Option<&'a str>,
    /// Shown after the title (on or off, a mode).
    pub badge: Option<Markup>,
    /// Facts above the editor (type, who changed it last, links).
    pub facts: Option<Markup>,
    /// The fields, explained beside the text area.
    pub help: Markup,
    /// Whether this person may change it.
    pub may_edit: bool,
    /// Said to those who may not.
    pub read_only_note: &'static str,
    /// What deleting keeps or loses, said beside the delete button.
    pub delete_note: &'static str,
}

/// The page: the YAML (as stored, or as typed with its problems, 422).
pub fn page(who: &Signed, p: Page<'_>, yaml: &str, problems: &[(String, String)]) -> Response {
    let kind = p.kind;
    let body = html! {
        p { a href=(p.base) { "« " (p.base_title) } }
        div.pagehead {
            h1 { (p.title) }
            @if let Some(b) = &p.badge { (b) }
        }
        (problems_box(problems))
        @if let Some(f) = &p.facts { div.compact-facts { (f) } }
        div.rule-editor {
            form.stack.rule #rule-form method="post" action=(p.action) {
                (layout::csrf_field(who))
                label for="yaml" { "The " (kind) " as YAML" }
                textarea #yaml name="yaml" rows="18" spellcheck="false" autocomplete="off" readonly[!p.may_edit]
                    aria-describedby="rule-help" { (yaml) }
                @if p.may_edit {
                    div.actions {
                        button #save type="submit" { "Save" }
                        a href=(p.base) { "Cancel" }
                    }
                } @else {
                    p.muted { (p.read_only_note) }
                }
            }
            aside.card #rule-help {
                h2 { "Fields" }
                (p.help)
            }
        }
        @if p.may_edit {
            @if let Some(name) = p.existing {
                // No script may ask "are you sure?": the button is behind a
                // disclosure, a second deliberate click.
                details.danger-zone #delete {
                    summary { "Delete this " (kind) "…" }
                    form method="post" action={ (p.base) "/" (name) "/delete" } {
                        (layout::csrf_field(who))
                        p { (p.delete_note) }
                        button.danger type="submit" { "Delete " (kind) " " (name) }
                    }
                }
            }
        }
    };
    let mut resp = signed_page(who, &p.title, p.nav, body);
    if !problems.is_empty() {
        *resp.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    resp
}

/// Why a document was not saved, every problem by its path (nothing when
/// there is none).
pub fn problems_box(problems: &[(String, String)]) -> Markup {
    html! {
        @if !problems.is_empty() {
            div.errors #errors role="alert" {
                h2 { "Not saved: " (problems.len()) " problem" @if problems.len() > 1 { "s" } " to fix" }
                ul {
                    @for (path, reason) in problems {
                        li data-path=(path) {
                            code { (path) } ": "
                            // The YAML reader's message quotes the lines around the mistake.
                            @if reason.contains('\n') { pre.reason { (reason) } } @else { span.reason { (reason) } }
                        }
                    }
                }
            }
        }
    }
}

/// A list page's parameters: `saved` and `deleted`, each naming the
/// document the notice is about.
pub fn list_params(params: &HashMap<String, String>, kind: &str) -> Result<(), PageError> {
    if let Some(k) = params.keys().find(|k| !["saved", "deleted"].contains(&k.as_str())) {
        return Err(PageError::Invalid(format!("unknown parameter {k:?}; known: saved, deleted")));
    }
    params.values().try_for_each(|v| named(v, kind))
}

/// A document's on/off button in a list (`POST {base}/{name}/enable|disable`).
pub fn switch(who: &Signed, base: &str, name: &str, enabled: bool) -> Markup {
    let action = if enabled { "disable" } else { "enable" };
    html! {
        form method="post" action={ (base) "/" (name) "/" (action) } {
            (layout::csrf_field(who))
            button type="submit" class={ "small" @if enabled { " secondary" } }
                aria-label={ (action) " " (name) } { (action) }
        }
    }
}

/// What a `POST {base}/{name}/{change}` asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Turn it on (`true`) or off.
    Enabled(bool),
    Delete,
}

impl Change {
    /// `enable`, `disable` or `delete`, else 422.
    pub fn parse(change: &str) -> Result<Change, PageError> {
        match change {
            "enable" => Ok(Change::Enabled(true)),
            "disable" => Ok(Change::Enabled(false)),
            "delete" => Ok(Change::Delete),
            other => Err(PageError::Invalid(format!("{other:?} is not enable, disable or delete"))),
        }
    }
}

/// A document name from the path, or 422.
pub fn named(name: &str, kind: &str) -> Result<(), PageError> {
    crate::correlate::rule::check_name(name).map_err(|m| PageError::Invalid(m.replace("rule", kind)))
}
