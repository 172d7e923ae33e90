//! The one layout every page uses, and the pieces pages are made of:
//! navigation, state and severity badges, times, a table's filter form and
//! pager, the CSRF field of every form.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::assets;
use super::Signed;
use crate::http::severity_name;
use crate::store::users::Role;

/// The navigation's entries; the page's own is marked current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Findings,
    Incidents,
    Rules,
    /// Receivers, routes and the notification log.
    Alerting,
    /// Silences and maintenance windows.
    Silences,
    Commands,
    /// The audit log of actions, and the playbooks.
    Actions,
    Config,
    Users,
    Tokens,
    /// A page not in the navigation (a device, a finding).
    None,
}

/// `<head>` and the document around `body`, for pages without a session
/// (sign-in, errors).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · OPMAS" }
                link rel="stylesheet" href=(assets::url("app.css"));
                link rel="icon" href=(assets::url("icon.svg")) type="image/svg+xml";
                script src=(assets::url("app.js")) defer {}
            }
            body { (body) }
        }
    }
}

/// A page for a signed-in person: the header with navigation (admin pages
/// only for admins), who is signed in, sign-out, then `body`.
pub fn page(who: &Signed, title: &str, active: Nav, body: Markup) -> Markup {
    let item = |nav: Nav, href: &str, label: &str| {
        html! {
            li { a href=(href) aria-current=[(nav == active).then_some("page")] { (label) } }
        }
    };
    bare(
        title,
        html! {
            a.skip href="#main" { "Skip to content" }
            header.top {
                a.brand href="/" { "OPMAS" }
                nav aria-label="Main" {
                    ul {
                        (item(Nav::Overview, "/", "Overview"))
                        (item(Nav::Findings, "/findings", "Findings"))
                        (item(Nav::Incidents, "/incidents", "Incidents"))
                        (item(Nav::Rules, "/rules", "Rules"))
                        (item(Nav::Alerting, "/alerting", "Alerting"))
                        (item(Nav::Silences, "/silences", "Silences"))
                        (item(Nav::Actions, "/actions", "Actions"))
                        (item(Nav::Commands, "/commands", "Commands"))
                        (item(Nav::Config, "/config", "Configuration"))
                        @if who.may(Role::Admin) {
                            (item(Nav::Users, "/admin/users", "Users"))
                            (item(Nav::Tokens, "/admin/tokens", "API tokens"))
                        }
                    }
                }
                form.signout method="post" action="/signout" {
                    span.who { (who.session.user) " " span.role { "(" (who.session.role.as_str()) ")" } }
                    (csrf_field(who))
                    button type="submit" { "Sign out" }
                }
            }
            main #main { (body) }
        },
    )
}

/// The hidden field that carries the session's CSRF token in a form.
pub fn csrf_field(who: &Signed) -> Markup {
    html! { input type="hidden" name="csrf" value=(who.session.csrf); }
}

/// A device's state as a word with a symbol (never colour alone).
pub fn state_badge(state: &str) -> Markup {
    let symbol = match state {
        "online" => "●",
        "stale" => "◐",
        "offline" => "○",
        _ => "–",
    };
    html! { span class={ "badge state-" (state) } { span aria-hidden="true" { (symbol) " " } (state) } }
}

/// A word shown with the symbol and colour of device state `like`.
pub fn state_badge_as(word: &str, like: &str) -> Markup {
    let symbol = match like {
        "online" => "●",
        "stale" => "◐",
        "offline" => "○",
        _ => "–",
    };
    html! { span class={ "badge state-" (like) } { span aria-hidden="true" { (symbol) " " } (word) } }
}

/// An agent's state (`running`, `stopped`, `failed`), as [`state_badge`].
pub fn agent_badge(name: &str, state: &str) -> Markup {
    let symbol = match state {
        "running" => "▶",
        "stopped" => "■",
        "restarting" => "↻",
        _ => "✕",
    };
    html! { span class={ "badge agent-" (state) } title={ (name) ": " (state) } { span aria-hidden="true" { (symbol) " " } (name) } }
}

/// An incident's state (`open`, `acknowledged`, `resolved`) as a word
/// with a symbol: open is what needs someone.
pub fn incident_badge(state: &str) -> Markup {
    let symbol = match state {
        "open" => "●",
        "acknowledged" => "◐",
        "resolved" => "✓",
        _ => "–",
    };
    html! { span class={ "badge inc-" (state) } { span aria-hidden="true" { (symbol) " " } (state) } }
}

/// A severity as its name, with its level for screen readers and sorting.
pub fn severity_badge(severity: i64) -> Markup {
    let name = severity_name(severity);
    html! { span class={ "badge sev-" (name) } { (name) } }
}

/// A time as `<time>`: UTC date and time, and how long ago.
pub fn time(ms: i64, now_ms: i64) -> Markup {
    let iso = crate::http::rfc3339(ms);
    let shown = iso.get(..19).unwrap_or(&iso).replace('T', " ");
    html! { time datetime=(iso) title={ (shown) " UTC" } { (ago(now_ms - ms)) } }
}

/// `12 s ago`, `5 min ago`, `3 h ago`, `2 d ago`; `in 5 min` for the future.
pub fn ago(delta_ms: i64) -> String {
    let s = delta_ms.abs() / 1000;
    let text = match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    };
    if delta_ms < 0 {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// An uptime in seconds as `3 d 4 h`, `5 h 2 min`, `42 s`.
pub fn duration(s: i64) -> String {
    match s {
        ..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// One field of a filter form.
pub enum Filter<'a> {
    /// Free text.
    Text { name: &'a str, label: &'a str, value: &'a str, placeholder: &'a str },
    /// One of `options` (value, label); the first is "any".
    Select { name: &'a str, label: &'a str, value: &'a str, options: Vec<(String, String)> },
    /// A UTC date and time.
    Time { name: &'a str, label: &'a str, value: &'a str },
}

/// A table's filter form (GET, so a filtered view is a link), with a reset
/// link to `action`.
pub fn filters(action: &str, fields: &[Filter<'_>]) -> Markup {
    html! {
        form.filters method="get" action=(action) role="search" {
            @for f in fields {
                @match f {
                    Filter::Text { name, label, value, placeholder } => {
                        label { span { (label) } input type="search" name=(name) value=(value) placeholder=(placeholder) maxlength="200"; }
                    }
                    Filter::Select { name, label, value, options } => {
                        label { span { (label) }
                            select name=(name) {
                                @for (v, l) in options {
                                    option value=(v) selected[v == value] { (l) }
                                }
                            }
                        }
                    }
                    Filter::Time { name, label, value } => {
                        label { span { (label) " (UTC)" } input type="datetime-local" name=(name) value=(value); }
                    }
                }
            }
            div.actions {
                button type="submit" { "Apply" }
                a href=(action) { "Reset" }
            }
        }
    }
}

/// The pager under a table: a link to the first page when not on it, and
/// to the next page when there is one.
pub fn pager(first: Option<&str>, next: Option<&str>) -> Markup {
    html! {
        nav.pager aria-label="Pages" {
            @if let Some(f) = first { a href=(f) { "« Newest" } }
            @if let Some(n) = next { a href=(n) rel="next" { "Older »" } } @else { span.muted { "No older entries" } }
        }
    }
}

/// A definition list of label and value pairs.
pub fn facts(rows: &[(&str, Markup)]) -> Markup {
    html! {
        dl.facts {
            @for (k, v) in rows { div { dt { (k) } dd { (v) } } }
        }
    }
}

/// Percent-encodes `s` for a query string.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string of the non-empty `pairs`, `?` first (empty without any).
pub fn query(pairs: &[(&str, &str)]) -> String {
    let parts: Vec<String> =
        pairs.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}={}", url_encode(v))).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// Text that is already HTML (a fragment rendered by maud).
pub fn raw(s: String) -> PreEscaped<String> {
    PreEscaped(s)
}

/// Who changed a document last: a person, or `shipped` for one seeded from
/// a file under `config/` (`seed:<file>`; the file is in the title).
pub fn changed_by(by: &str) -> Markup {
    match by.strip_prefix("seed:") {
        Some(source) => html! { span title=(source) { "shipped" } },
        None => html! { (by) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_people_say_them() {
        assert_eq!(ago(5_000), "5 s ago");
        assert_eq!(ago(300_000), "5 min ago");
        assert_eq!(ago(7_200_000), "2 h ago");
        assert_eq!(ago(3 * 86_400_000), "3 d ago");
        assert_eq!(ago(-60_000), "in 1 min");
        assert_eq!(duration(3 * 86_400 + 4 * 3600 + 5), "3 d 4 h");
    }

    #[test]
    fn query_strings_are_encoded_and_skip_empty_values() {
        assert_eq!(query(&[("q", "a b&c"), ("x", "")]), "?q=a%20b%26c");
        assert_eq!(query(&[("x", "")]), "");
    }

    #[test]
    fn markup_escapes_what_devices_send() {
        let m = html! { p { ("<script>alert(1)</script>") } };
        assert_eq!(m.into_string(), "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>");
    }
}
