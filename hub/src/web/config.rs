//! `/config`: the fleet's configuration sync and agent states, and
//! `/config/{agent}?scope=`: one agent's layer (the fleet's, a tag's or a
//! device's) as a form built from the schema in `opmas-proto` (what each
//! parameter does, its unit, range and default, and what the layers below
//! give it), with a diff preview before saving, the layer's history with
//! restore, and the sync state of the devices it applies to. Saving and
//! restoring go through the API's own code (`http::agent_config::change`),
//! so a page cannot store what the API would refuse. Viewers see all of it
//! and change nothing.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use opmas_proto::agents::{AgentSpec, AGENTS};

use super::layout::{self, Nav};
use super::{signed_page, PageError, Signed};
use crate::http::agent_config::sync_state;
use crate::http::AppState;
use crate::store::config::{check_tag, device_scope, merge, source_of, tag_scope, validate, Layer, EXCLUDE, SEED};
use crate::store::now_ms;
use crate::store::users::Role;
use opmas_proto::local_response as local;

/// A scope from the query or form: `fleet`, `tag:<t>` or `device:<id>`.
async fn scope_of(state: &AppState, raw: &str) -> Result<String, PageError> {
    if raw.is_empty() || raw == "fleet" {
        return Ok("fleet".into());
    }
    if let Some(t) = raw.strip_prefix("tag:") {
        check_tag(t).map_err(|e| PageError::Invalid(format!("scope: {e}")))?;
        return Ok(tag_scope(t));
    }
    if let Some(d) = raw.strip_prefix("device:") {
        let id = crate::http::known_device(state, d).await?;
        return Ok(device_scope(id.as_str()));
    }
    Err(PageError::Invalid(format!("scope {raw:?} is not fleet, tag:<tag> or device:<id>")))
}

fn agent_spec(agent: &str) -> Result<&'static AgentSpec, PageError> {
    AGENTS.iter().find(|a| a.name == agent).ok_or_else(|| {
        let known: Vec<&str> = AGENTS.iter().map(|a| a.name).collect();
        PageError::NotFound(format!("no agent {agent:?}; known: {}", known.join(", ")))
    })
}

fn sync_badge(sync: &str) -> Markup {
    match sync {
        "in_sync" => layout::state_badge_as("in sync", "online"),
        "pending" => layout::state_badge_as("pending", "stale"),
        "rejected" => layout::state_badge_as("rejected", "offline"),
        "local" => layout::state_badge_as("local", "never"),
        _ => layout::state_badge_as("unknown", "never"),
    }
}

/// The sync table of `devices` (all when `None`).
async fn sync_table(state: &AppState, only: Option<&[String]>) -> Result<Markup, PageError> {
    let rows = state.store.sync_states().await?;
    let rows: Vec<_> = rows.into_iter().filter(|r| only.is_none_or(|o| o.contains(&r.id))).collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &rows {
        *counts.entry(sync_state(r.version, r.running, r.error.as_deref())).or_default() += 1;
    }
    Ok(html! {
        p #sync-summary {
            @for (s, n) in &counts { (sync_badge(s)) " " (n) " " }
            @if rows.is_empty() { span.muted { "No devices." } }
        }
        table #sync {
            thead { tr { th { "Device" } th { "Sync" } th.num { "Effective version" } th.num { "Running" } th { "Refusal" } } }
            tbody {
                @for r in &rows {
                    @let sync = sync_state(r.version, r.running, r.error.as_deref());
                    tr data-device=(r.id) data-sync=(sync) {
                        td data-label="Device" { a href={ "/devices/" (r.id) } { (r.id) } }
                        td data-label="Sync" { (sync_badge(sync)) }
                        td.num data-label="Effective version" { (r.version) }
                        td.num data-label="Running" { @if let Some(v) = r.running { (v) } @else { "—" } }
                        td data-label="Refusal" { @if let Some(e) = &r.error { code { (e) } } }
                    }
                }
            }
        }
    })
}

/// `GET /config`: the agents, every device's sync state and agent states.
pub async fn index(State(state): State<AppState>, who: Signed) -> Result<Response, PageError> {
    let fleet = state.store.fleet(now_ms()).await?;
    let sync = sync_table(&state, None).await?;
    let body = html! {
        div.pagehead { h1 { "Configuration" } }
        section.card {
            h2 { "Agents" }
            p.muted { "The fleet's settings per agent; a tag's or a device's override from the scope picker on each." }
            ul.agents { @for a in AGENTS { li { a href={ "/config/" (a.name) } { (a.name) } " — " (a.params.len()) " parameters" } } }
        }
        section.card {
            h2 { "Sync" }
            (sync)
        }
        section.card {
            h2 { "Agent states" }
            table #fleet-agents {
                thead { tr { th { "Device" } @for a in AGENTS { th { (a.name) } } } }
                tbody {
                    @for d in &fleet {
                        tr data-device=(d.id) {
                            td data-label="Device" { a href={ "/devices/" (d.id) "#agents" } { (d.id) } }
                            @for a in AGENTS {
                                td data-label=(a.name) {
                                    @match d.agents.iter().find(|(n, _)| n == a.name) {
                                        Some((_, s)) => { (layout::agent_badge(s, s)) }
                                        None => { span.muted { "—" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(signed_page(&who, "Configuration", Nav::Config, body))
}

/// A submitted form: everything as text, checked by [`layer_from`].
#[derive(Debug, Default, serde::Deserialize)]
pub struct LayerForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    scope: String,
    /// `preview` or `save`.
    #[serde(default)]
    step: String,
    /// `inherit`, `on` or `off`.
    #[serde(default)]
    enabled: String,
    /// `on` to set this layer's own list of patterns.
    #[serde(default)]
    exclude_set: String,
    #[serde(default)]
    exclude_patterns: String,
    /// The local response (security): `inherit`, `on` or `off`.
    #[serde(default)]
    local_block: String,
    /// Seconds; empty inherits.
    #[serde(default)]
    local_block_for: String,
    /// `on` to set this layer's own list of kinds.
    #[serde(default)]
    local_kinds_set: String,
    #[serde(default)]
    local_kinds: String,
    /// `p.<name>`: a parameter; empty inherits.
    #[serde(flatten)]
    params: HashMap<String, String>,
}

/// An `inherit` / `on` / `off` choice of a form; the error names `field`.
fn switch(field: &str, v: &str, errors: &mut Vec<(String, String)>) -> Option<bool> {
    match v {
        "" | "inherit" => None,
        "on" => Some(true),
        "off" => Some(false),
        other => {
            errors.push((field.into(), format!("{other:?} is not inherit, on or off")));
            None
        }
    }
}

/// The words of a setting: `on`, `off`.
fn on_off(v: bool) -> &'static str {
    if v {
        "on"
    } else {
        "off"
    }
}

/// A `select` of `inherit` / `on` / `off` (what [`switch`] reads back),
/// showing `value`.
fn switch_select(name: &str, value: Option<bool>) -> maud::Markup {
    let chosen = value.map_or("inherit", on_off);
    html! {
        select id=(name) name=(name) {
            @for v in ["inherit", "on", "off"] { option value=(v) selected[chosen == v] { (v) } }
        }
    }
}

/// The form's local response settings into `layer` (as typed; `errors`
/// gets what is not even a number).
fn local_from(f: &LayerForm, layer: &mut Layer, errors: &mut Vec<(String, String)>) {
    layer.local_block = switch(local::BLOCK, &f.local_block, errors);
    let s = f.local_block_for.trim();
    if !s.is_empty() {
        match s.parse::<i64>() {
            Ok(n) => layer.local_block_for = Some(n),
            Err(_) => errors.push((local::BLOCK_FOR.into(), format!("{s:?} is not a whole number of seconds"))),
        }
    }
    layer.local_kinds = (f.local_kinds_set == "on").then(|| {
        f.local_kinds.split([',', '\n']).map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
    });
}

/// The layer a form describes, or what is wrong with each field.
fn layer_from(spec: &AgentSpec, f: &LayerForm) -> Result<Layer, Vec<(String, String)>> {
    let mut errors = Vec::new();
    let enabled = switch("enabled", &f.enabled, &mut errors);
    let mut params = BTreeMap::new();
    for (k, v) in &f.params {
        let Some(name) = k.strip_prefix("p.") else { continue };
        let v = v.trim();
        if v.is_empty() {
            continue;
        }
        match v.parse::<i64>() {
            Ok(n) => {
                params.insert(name.to_owned(), n);
            }
            Err(_) => errors.push((format!("params.{name}"), format!("{v:?} is not a whole number"))),
        }
    }
    let exclude_patterns = (f.exclude_set == "on").then(|| {
        f.exclude_patterns.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect::<Vec<_>>()
    });
    let mut layer = Layer { enabled, params, exclude_patterns, ..Layer::default() };
    if spec.name == "security" {
        local_from(f, &mut layer, &mut errors);
    }
    if let Err(bad) = validate(spec.name, &layer) {
        errors.extend(bad.into_iter().map(|e| (e.path, e.reason)));
    }
    if errors.is_empty() {
        Ok(layer)
    } else {
        errors.sort();
        Err(errors)
    }
}

/// What the layers below `scope` give each value (for the form's hints).
async fn inherited(state: &AppState, scope: &str) -> Result<crate::store::config::Effective, PageError> {
    let mut layers = vec![(source_of(SEED), state.store.layers(SEED).await?)];
    if scope != "fleet" {
        layers.push(("fleet".to_owned(), state.store.layers("fleet").await?));
    }
    if let Some(d) = scope.strip_prefix("device:") {
        for t in state.store.tags(d).await? {
            let s = tag_scope(&t);
            layers.push((s.clone(), state.store.layers(&s).await?));
        }
    }
    Ok(merge(0, &layers))
}

/// One row of the diff preview: a field, its value before and after.
fn diff(before: &Layer, after: &Layer) -> Vec<(String, String, String)> {
    let show = |v: Option<String>| v.unwrap_or_else(|| "inherited".into());
    let mut rows = Vec::new();
    if before.enabled != after.enabled {
        let f = |e: Option<bool>| show(e.map(|e| on_off(e).into()));
        rows.push(("enabled".into(), f(before.enabled), f(after.enabled)));
    }
    let names: std::collections::BTreeSet<&String> = before.params.keys().chain(after.params.keys()).collect();
    for n in names {
        let (b, a) = (before.params.get(n), after.params.get(n));
        if b != a {
            rows.push((n.clone(), show(b.map(i64::to_string)), show(a.map(i64::to_string))));
        }
    }
    if before.exclude_patterns != after.exclude_patterns {
        let f =
            |p: &Option<Vec<String>>| show(p.as_ref().map(|p| if p.is_empty() { "none".into() } else { p.join("\n") }));
        rows.push((EXCLUDE.into(), f(&before.exclude_patterns), f(&after.exclude_patterns)));
    }
    if before.local_block != after.local_block {
        let f = |e: Option<bool>| show(e.map(|e| on_off(e).into()));
        rows.push((local::BLOCK.into(), f(before.local_block), f(after.local_block)));
    }
    if before.local_block_for != after.local_block_for {
        let f = |s: Option<i64>| show(s.map(|s| format!("{s} s")));
        rows.push((local::BLOCK_FOR.into(), f(before.local_block_for), f(after.local_block_for)));
    }
    if before.local_kinds != after.local_kinds {
        let f = |k: &Option<Vec<String>>| show(k.as_ref().map(|k| k.join(", ")));
        rows.push((local::KINDS.into(), f(&before.local_kinds), f(&after.local_kinds)));
    }
    rows
}

/// `GET /config/{agent}?scope=&saved=`.
pub async fn agent_page(
    State(state): State<AppState>,
    who: Signed,
    Path(agent): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let spec = agent_spec(&agent)?;
    let scope = scope_of(&state, q.get("scope").map(String::as_str).unwrap_or("")).await?;
    let layer = state.store.layers(&scope).await?.remove(spec.name).unwrap_or_default();
    let notice = q.get("saved").map(|v| format!("Saved as version {v}; sent to the devices it applies to."));
    render(&state, &who, spec, &scope, &layer, None, notice).await
}

/// `POST /config/{agent}`: `step=preview` shows the diff (or every bad
/// field) with the form kept as typed; `step=save` stores and sends it.
pub async fn agent_submit(
    State(state): State<AppState>,
    who: Signed,
    Path(agent): Path<String>,
    Form(f): Form<LayerForm>,
) -> Result<Response, PageError> {
    who.check_csrf(&f.csrf)?;
    who.require(Role::Operator, "changing configuration")?;
    let spec = agent_spec(&agent)?;
    let scope = scope_of(&state, &f.scope).await?;
    let current = state.store.layers(&scope).await?.remove(spec.name).unwrap_or_default();
    match layer_from(spec, &f) {
        Ok(layer) if f.step == "save" => {
            let change =
                crate::http::agent_config::change(&state, &scope, spec.name, &layer, &who.session.user).await?;
            let to = format!(
                "/config/{}{}",
                spec.name,
                layout::query(&[("scope", &scope), ("saved", &change.version.to_string())])
            );
            Ok(Redirect::to(&to).into_response())
        }
        Ok(layer) => {
            let rows = diff(&current, &layer);
            render(&state, &who, spec, &scope, &layer, Some(Preview::Diff(rows)), None).await
        }
        Err(errors) => {
            // Keep what was typed, so the person can fix it.
            let typed = typed_layer(&f);
            render(&state, &who, spec, &scope, &typed, Some(Preview::Errors(errors)), None).await
        }
    }
}

/// The form's values as typed, for showing them again next to the errors.
fn typed_layer(f: &LayerForm) -> Layer {
    let mut layer = Layer {
        enabled: switch("enabled", &f.enabled, &mut Vec::new()),
        params: f
            .params
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("p.")?.to_owned(), v.trim().parse().ok()?)))
            .collect(),
        exclude_patterns: (f.exclude_set == "on").then(|| f.exclude_patterns.lines().map(str::to_owned).collect()),
        ..Layer::default()
    };
    local_from(f, &mut layer, &mut Vec::new());
    layer
}

/// The local response part of the security agent's form: each setting
/// left empty is the layer below's, and if no layer sets it, the router's
/// own (UCI `config response`).
fn local_fieldset(layer: &Layer, below: Option<&crate::store::config::EffectiveAgent>) -> maud::Markup {
    let below_or_router = |v: Option<String>| v.unwrap_or_else(|| "the router's own".into());
    let b_block = below.and_then(|b| b.local_block.as_ref()).map(|s| format!("{} ({})", on_off(s.value), s.from));
    let b_for = below.and_then(|b| b.local_block_for.as_ref()).map(|s| format!("{} s ({})", s.value, s.from));
    let b_kinds = below.and_then(|b| b.local_kinds.as_ref()).map(|s| format!("{} ({})", s.value.join(", "), s.from));
    html! {
        fieldset.local #local-response {
            legend { "Local response: the router blocks the source itself, at once, hub or no hub" }
            p.muted { "Unset here and below, each setting is the router's own (UCI " code { "config response" } ")." }
            label for="local_block" { code { (local::BLOCK) } " " }
            (switch_select("local_block", layer.local_block))
            span.muted { " below: " (below_or_router(b_block)) }
            br;
            label for="local_block_for" { code { (local::BLOCK_FOR) } " " }
            input type="number" #local_block_for name="local_block_for" min="1" max=(opmas_proto::msg::MAX_ACTION_S) step="1"
                value=[layer.local_block_for];
            " s " span.muted { "below: " (below_or_router(b_for)) }
            div {
                label {
                    input type="checkbox" name="local_kinds_set" value="on" checked[layer.local_kinds.is_some()];
                    " This layer sets its own " code { (local::KINDS) } " (finding kinds, one per line, such as " code { "ssh.bruteforce" } ")"
                }
                textarea name="local_kinds" rows="2" cols="40" {
                    @if let Some(k) = &layer.local_kinds { (k.join("\n")) }
                }
                p.muted { "Below: " (below_or_router(b_kinds)) }
            }
        }
    }
}

enum Preview {
    Diff(Vec<(String, String, String)>),
    Errors(Vec<(String, String)>),
}

async fn render(
    state: &AppState,
    who: &Signed,
    spec: &AgentSpec,
    scope: &str,
    layer: &Layer,
    preview: Option<Preview>,
    notice: Option<String>,
) -> Result<Response, PageError> {
    let operator = who.may(Role::Operator);
    let below = inherited(state, scope).await?;
    let below = below.agents.get(spec.name);
    let tags = state.store.all_tags().await?;
    let devices = state.store.list_devices().await?;
    let applies: Option<Vec<String>> = if let Some(d) = scope.strip_prefix("device:") {
        Some(vec![d.to_owned()])
    } else if let Some(t) = scope.strip_prefix("tag:") {
        Some(state.store.devices_with_tag(t).await?)
    } else {
        None
    };
    let sync = sync_table(state, applies.as_deref()).await?;
    let history = state.store.config_history(scope, Some(spec.name), 20).await?;
    let now = now_ms();
    let scope_label = match scope {
        "fleet" => "the fleet default".to_owned(),
        s => s.replacen(':', " ", 1),
    };
    let body = html! {
        div.pagehead { h1 { "Agent " (spec.name) } span.muted { "layer of " (scope_label) } }
        @if let Some(n) = &notice { p.notice #saved role="status" { (n) } }
        form.scope method="get" action={ "/config/" (spec.name) } {
            label for="scope" { "Scope " }
            select #scope name="scope" {
                option value="fleet" selected[scope == "fleet"] { "fleet default" }
                @for t in &tags { @let s = tag_scope(t); option value=(s) selected[scope == s] { "tag " (t) } }
                @for d in &devices { @let s = device_scope(&d.id); option value=(s) selected[scope == s] { "device " (d.id) } }
            }
            " " button type="submit" { "Show" }
        }
        @match &preview {
            Some(Preview::Errors(errors)) => {
                div.errors #errors role="alert" {
                    h2 { "Not saved: " (errors.len()) " field(s) to fix" }
                    ul { @for (path, reason) in errors { li { code { (path) } ": " (reason) } } }
                }
            }
            Some(Preview::Diff(rows)) => {
                section.card #preview {
                    h2 { "Preview" }
                    @if rows.is_empty() { p { "No change from what is stored." } } @else {
                        table.diff {
                            thead { tr { th { "Field" } th { "Now" } th { "After saving" } } }
                            tbody { @for (f, b, a) in rows { tr data-field=(f) { td data-label="Field" { code { (f) } } td.before data-label="Now" { (b) } td.after data-label="After saving" { (a) } } } }
                        }
                        p.muted { "Saving sends the effective configuration to every device this layer applies to." }
                    }
                }
            }
            None => {}
        }
        form.layer #layer-form method="post" action={ "/config/" (spec.name) } {
            (layout::csrf_field(who))
            input type="hidden" name="scope" value=(scope);
            fieldset disabled[!operator] {
                legend { "Settings (empty: inherited from the layer below)" }
                label for="enabled" { "Run the agent " }
                (switch_select("enabled", layer.enabled))
                @if let Some(b) = below { span.muted { " below: " (on_off(b.enabled.value)) " (" (b.enabled.from) ")" } }
                table.params {
                    thead { tr { th { "Parameter" } th { "Value" } th { "Range" } th { "Below" } th { "What it does" } } }
                    tbody {
                        @for p in spec.params {
                            @let id = format!("p.{}", p.name);
                            @let inherited = below.and_then(|b| b.params.get(p.name));
                            tr data-param=(p.name) {
                                td data-label="Parameter" { label for=(id) { code { (p.name) } } }
                                td data-label="Value" {
                                    input type="number" id=(id) name=(id) min=(p.min) max=(p.max) step="1"
                                        value=[layer.params.get(p.name)]
                                        placeholder=(inherited.map_or(i64::from(p.default), |s| s.value));
                                    (p.unit.suffix())
                                }
                                td data-label="Range" { (p.min) "–" (p.max) (p.unit.suffix()) }
                                td data-label="Below" {
                                    @if let Some(s) = inherited { (s.value) " " span.muted { "(" (s.from) ")" } } @else { (p.default) " " span.muted { "(default)" } }
                                }
                                td.summary-cell data-label="What it does" { (p.doc) }
                            }
                        }
                    }
                }
                div.exclude {
                    label {
                        input type="checkbox" name="exclude_set" value="on" checked[layer.exclude_patterns.is_some()];
                        " This layer sets its own " code { "exclude_patterns" } " (one per line; shell wildcards over the whole log line, such as "
                        code { "*from 192.168.1.*" } ")"
                    }
                    textarea name="exclude_patterns" rows="4" cols="60" {
                        @if let Some(p) = &layer.exclude_patterns { (p.join("\n")) }
                    }
                    @if let Some(b) = below { @if !b.exclude_patterns.value.is_empty() {
                        p.muted { "Below (" (b.exclude_patterns.from) "): " @for p in &b.exclude_patterns.value { code { (p) } " " } }
                    } }
                }
                @if spec.name == "security" { (local_fieldset(layer, below)) }
                @if operator {
                    div.actions {
                        button type="submit" name="step" value="preview" { "Preview changes" }
                        @if matches!(preview, Some(Preview::Diff(_))) {
                            button type="submit" name="step" value="save" #save { "Save and send" }
                        }
                    }
                }
            }
            @if !operator { p.muted { "Viewers see the configuration; operators change it." } }
        }
        section.card {
            h2 { "Devices" }
            (sync)
        }
        section.card {
            h2 { "History" }
            table #history {
                thead { tr { th.num { "Version" } th { "When" } th { "By" } th { "Layer after" } @if operator { th {} } } }
                tbody {
                    @for c in &history {
                        tr data-change=(c.id) {
                            td.num data-label="Version" { (c.id) }
                            td data-label="When" { (layout::time(c.changed_ms, now)) }
                            td data-label="By" { (c.changed_by) }
                            td data-label="Layer after" { code { (c.after.0.to_string()) } }
                            @if operator {
                                td {
                                    form method="post" action={ "/config/history/" (c.id) "/restore" } {
                                        (layout::csrf_field(who))
                                        button.small type="submit" aria-label={ "restore version " (c.id) } { "Restore" }
                                    }
                                }
                            }
                        }
                    }
                    @if history.is_empty() { tr.empty { td colspan="5" { "No changes yet: the layer inherits everything." } } }
                }
            }
        }
    };
    Ok(signed_page(who, &format!("Configuration: {}", spec.name), Nav::Config, body))
}

/// `POST /config/history/{id}/restore` (operators): that change's layer
/// again, as a new change; back to its agent's page.
pub async fn restore(
    State(state): State<AppState>,
    who: Signed,
    Path(id): Path<i64>,
    Form(f): Form<super::CsrfOnly>,
) -> Result<Response, PageError> {
    who.check_csrf(&f.csrf)?;
    who.require(Role::Operator, "restoring configuration")?;
    let c = state.store.config_change(id).await?.ok_or_else(|| PageError::NotFound(format!("no change {id}")))?;
    let layer = c.layer().ok_or_else(|| PageError::Invalid(format!("change {id} set a device's tags, not a layer")))?;
    let change = crate::http::agent_config::change(&state, &c.scope, &c.agent, &layer, &who.session.user).await?;
    let to =
        format!("/config/{}{}", c.agent, layout::query(&[("scope", &c.scope), ("saved", &change.version.to_string())]));
    Ok(Redirect::to(&to).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> LayerForm {
        let body: String = pairs.iter().map(|(k, v)| format!("{k}={}&", layout::url_encode(v))).collect();
        serde_urlencoded::from_str(&body).unwrap()
    }

    #[test]
    fn a_form_becomes_a_layer_or_every_bad_field_by_path() {
        let spec = agent_spec("security").unwrap();
        let f = form(&[("csrf", "x"), ("enabled", "off"), ("p.ssh_failures", " 3 "), ("p.ssh_window", "")]);
        let layer = layer_from(spec, &f).unwrap();
        assert_eq!((layer.enabled, layer.params.get("ssh_failures"), layer.params.len()), (Some(false), Some(&3), 1));
        assert_eq!(layer.exclude_patterns, None, "not set here: inherited");

        let f = form(&[
            ("p.ssh_failures", "1"),
            ("p.ssh_window", "soon"),
            ("exclude_set", "on"),
            ("exclude_patterns", "*ok*\r\n[bad\r\n"),
        ]);
        let errors = layer_from(spec, &f).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["exclude_patterns[1]", "params.ssh_failures", "params.ssh_window"], "{errors:?}");

        let before = Layer::default();
        let rows = diff(&before, &layer_from(spec, &form(&[("p.ssh_failures", "3")])).unwrap());
        assert_eq!(rows, [("ssh_failures".to_owned(), "inherited".to_owned(), "3".to_owned())]);
    }

    #[test]
    fn the_security_form_sets_the_local_response_and_names_what_is_wrong() {
        let spec = agent_spec("security").unwrap();
        let f = form(&[("local_block", "on"), ("local_block_for", "600"), ("local_kinds_set", "")]);
        let layer = layer_from(spec, &f).unwrap();
        assert_eq!(
            (layer.local_block, layer.local_block_for, layer.local_kinds.as_ref()),
            (Some(true), Some(600), None)
        );
        let rows = diff(&Layer::default(), &layer);
        assert_eq!(rows[0], ("local_block".to_owned(), "inherited".to_owned(), "on".to_owned()));

        let f = form(&[
            ("local_block", "maybe"),
            ("local_block_for", "an hour"),
            ("local_kinds_set", "on"),
            ("local_kinds", "ssh.bruteforce\r\nssh.brute"),
        ]);
        let errors = layer_from(spec, &f).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["local_block", "local_block_for", "local_kinds[1]"], "{errors:?}");
        assert_eq!(typed_layer(&f).local_kinds.map(|k| k.len()), Some(2), "kept as typed");
    }
}
