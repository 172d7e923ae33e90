//! Agent configuration in layers (the seeded defaults, the fleet, then each
//! of the device's tags in order, then the device), its history, device
//! tags, and a device's effective configuration: defaults from the schema in
//! `opmas-proto`, then each layer's overrides. Versions are change ids, so
//! they only grow and a device's version is the highest change that applies
//! to it.

use std::collections::BTreeMap;

use opmas_proto::agents::{params_of, AGENTS};
use opmas_proto::local_response::{self as local, LocalOverride};
use opmas_proto::msg::{AgentConfig, ConfigDoc, Value};
use opmas_proto::pattern::{Pattern, MAX_PATTERNS};
use serde::{Deserialize, Serialize};

use super::{Flag, Store, StoreError};

/// The scope of the defaults seeded from `config/agents/*.yaml` (see
/// `crate::seed`): below the fleet layer, shown as `default`, never edited
/// by hand.
pub const SEED: &str = "seed";

/// The name of the patterns in layers, in the document sent to the edge, and in UCI.
pub const EXCLUDE: &str = "exclude_patterns";

/// One layer's settings for one agent: only what was set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// Run the agent or not; absent: as the layer below (the fleet default
    /// is to run it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Parameter overrides by name (whole numbers; see the agent's schema).
    #[serde(default)]
    pub params: BTreeMap<String, i64>,
    /// Patterns of log lines the agent ignores (shell wildcards over the
    /// whole line; see `opmas_proto::pattern`); absent: as the layer below,
    /// present: replaces its list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_patterns: Option<Vec<String>>,
    /// The security agent's local response (`opmas_proto::local_response`):
    /// block the source of a brute force on the router at once, hub or no
    /// hub. Each of the three absent: as the layer below; set by no layer:
    /// the router's own UCI setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_block: Option<bool>,
    /// Seconds each local block lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_block_for: Option<i64>,
    /// Finding kinds whose source the router blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_kinds: Option<Vec<String>>,
}

/// A layer's local response settings, as the `local_response` column holds them.
#[derive(Default, Serialize, Deserialize)]
struct LocalColumn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    local_block: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    local_block_for: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    local_kinds: Option<Vec<String>>,
}

impl Layer {
    /// Whether this layer sets any of the local response.
    pub fn sets_local(&self) -> bool {
        self.local_block.is_some() || self.local_block_for.is_some() || self.local_kinds.is_some()
    }

    /// The `local_response` column: `None` if nothing is set.
    fn local_column(&self) -> Option<String> {
        let c = LocalColumn {
            local_block: self.local_block,
            local_block_for: self.local_block_for,
            local_kinds: self.local_kinds.clone(),
        };
        self.sets_local().then(|| serde_json::to_string(&c).ok()).flatten()
    }
}

/// Where a value of the effective configuration came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Sourced<T> {
    pub value: T,
    /// `default`, `fleet`, `tag:<name>` or `device`.
    pub from: String,
}

/// One agent's effective configuration on a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EffectiveAgent {
    #[schema(value_type = Object)]
    pub enabled: Sourced<bool>,
    #[schema(value_type = Object)]
    pub params: BTreeMap<String, Sourced<i64>>,
    #[schema(value_type = Object)]
    pub exclude_patterns: Sourced<Vec<String>>,
    /// The local response settings some layer sets (security only);
    /// absent: the router's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub local_block: Option<Sourced<bool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub local_block_for: Option<Sourced<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub local_kinds: Option<Sourced<Vec<String>>>,
}

impl EffectiveAgent {
    /// What the hub sets of the local response, as the edge takes it.
    pub fn local_override(&self) -> LocalOverride {
        LocalOverride {
            block: self.local_block.as_ref().map(|s| s.value),
            block_s: self.local_block_for.as_ref().and_then(|s| u32::try_from(s.value).ok()),
            kinds: self.local_kinds.as_ref().map(|s| s.value.clone()),
        }
    }
}

/// A device's effective configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Effective {
    /// 0 until anything was configured at the hub: the router then runs its
    /// own UCI configuration.
    pub version: i64,
    pub agents: BTreeMap<String, EffectiveAgent>,
}

impl Effective {
    /// What the edge is sent.
    pub fn doc(&self) -> ConfigDoc {
        let agents = self
            .agents
            .iter()
            .map(|(name, a)| {
                let mut params: BTreeMap<String, Value> =
                    a.params.iter().map(|(k, v)| (k.clone(), Value::Int(v.value))).collect();
                if !a.exclude_patterns.value.is_empty() {
                    params.insert(EXCLUDE.to_owned(), Value::List(a.exclude_patterns.value.clone()));
                }
                a.local_override().put(&mut params);
                (name.clone(), AgentConfig { enabled: a.enabled.value, params })
            })
            .collect();
        ConfigDoc { version: self.version as u64, agents }
    }
}

/// A field of a configuration change that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// `params.ssh_failures`, `agent`.
    pub path: String,
    pub reason: String,
}

/// Checks `layer` for `agent` against the schema: every error, by path.
pub fn validate(agent: &str, layer: &Layer) -> Result<(), Vec<FieldError>> {
    let Some(specs) = params_of(agent) else {
        let known: Vec<&str> = AGENTS.iter().map(|a| a.name).collect();
        return Err(vec![FieldError {
            path: "agent".into(),
            reason: format!("unknown agent {agent:?}; known: {}", known.join(", ")),
        }]);
    };
    let mut errors = Vec::new();
    for (name, &v) in &layer.params {
        let path = format!("params.{name}");
        match specs.iter().find(|s| s.name == name) {
            None => {
                let known: Vec<&str> = specs.iter().map(|s| s.name).collect();
                errors.push(FieldError { path, reason: format!("unknown parameter; known: {}", known.join(", ")) });
            }
            Some(s) if v < i64::from(s.min) || v > i64::from(s.max) => errors
                .push(FieldError { path, reason: format!("{v} is outside {} to {}{}", s.min, s.max, s.unit.suffix()) }),
            Some(_) => {}
        }
    }
    if let Some(patterns) = &layer.exclude_patterns {
        if patterns.len() > MAX_PATTERNS {
            errors.push(FieldError {
                path: EXCLUDE.into(),
                reason: format!("{} patterns; at most {MAX_PATTERNS}", patterns.len()),
            });
        }
        for (i, p) in patterns.iter().enumerate() {
            if let Err(e) = Pattern::new(p) {
                errors.push(FieldError { path: format!("{EXCLUDE}[{i}]"), reason: format!("{p:?}: {e}") });
            }
        }
    }
    if layer.sets_local() && agent != "security" {
        errors.push(FieldError {
            path: local::BLOCK.into(),
            reason: "only the security agent has a local response".into(),
        });
    }
    if let Some(s) = layer.local_block_for {
        if let Err(reason) = local::check_block_for(s) {
            errors.push(FieldError { path: local::BLOCK_FOR.into(), reason });
        }
    }
    if let Some(kinds) = &layer.local_kinds {
        if let Err((i, reason)) = local::check_kinds(kinds) {
            errors.push(FieldError { path: format!("{}[{i}]", local::KINDS), reason });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// `agent_config` as stored: scope, agent, then [`LayerRow`].
type ScopedLayerRow = (String, String, Option<Flag>, String, Option<String>, Option<String>);

/// A layer's columns: enabled, params, patterns, local response.
type LayerRow = (Option<Flag>, String, Option<String>, Option<String>);

/// The columns [`LayerRow`] reads.
const LAYER_COLUMNS: &str = "enabled, params, exclude_patterns, local_response";

/// A layer from its columns (validated when stored).
fn layer_of((enabled, params, patterns, local): LayerRow) -> Layer {
    let local: LocalColumn = local.and_then(|l| serde_json::from_str(&l).ok()).unwrap_or_default();
    Layer {
        enabled: enabled.map(bool::from),
        params: serde_json::from_str(&params).unwrap_or_default(),
        exclude_patterns: patterns.and_then(|p| serde_json::from_str(&p).ok()),
        local_block: local.local_block,
        local_block_for: local.local_block_for,
        local_kinds: local.local_kinds,
    }
}

/// Writes `layer` as `scope`'s layer of `agent`.
async fn put_layer(tx: &mut super::WriteTx, scope: &str, agent: &str, layer: &Layer) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO agent_config (scope, agent, enabled, params, exclude_patterns, local_response) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (scope, agent) DO UPDATE
            SET enabled = excluded.enabled, params = excluded.params, exclude_patterns = excluded.exclude_patterns,
                local_response = excluded.local_response",
    )
    .bind(scope)
    .bind(agent)
    .bind(layer.enabled.map(i64::from))
    .bind(serde_json::to_string(&layer.params).unwrap_or_else(|_| "{}".into()))
    .bind(layer.exclude_patterns.as_ref().and_then(|p| serde_json::to_string(p).ok()))
    .bind(layer.local_column())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `scope`'s stored layer of `agent`, if any.
async fn stored_layer(tx: &mut super::WriteTx, scope: &str, agent: &str) -> Result<Option<Layer>, StoreError> {
    let row: Option<LayerRow> =
        sqlx::query_as(&format!("SELECT {LAYER_COLUMNS} FROM agent_config WHERE scope = $1 AND agent = $2"))
            .bind(scope)
            .bind(agent)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(row.map(layer_of))
}

/// The scopes that apply to `device`, lowest first: the seeded defaults,
/// the fleet, its tags in order, its own.
fn scopes_of(device: &str, tags: &[String]) -> Vec<String> {
    let mut scopes = vec![SEED.to_owned(), "fleet".to_owned()];
    scopes.extend(tags.iter().map(|t| tag_scope(t)));
    scopes.push(device_scope(device));
    scopes
}

/// What a value from `scope` says it came from: `default`, `fleet`,
/// `tag:<name>` or `device`.
pub fn source_of(scope: &str) -> String {
    if scope == SEED {
        "default".to_owned()
    } else if scope.starts_with("device:") {
        "device".to_owned()
    } else {
        scope.to_owned()
    }
}

/// The scope of a device's own layer.
pub fn device_scope(device: &str) -> String {
    format!("device:{device}")
}

/// The scope of a tag's layer.
pub fn tag_scope(tag: &str) -> String {
    format!("tag:{tag}")
}

/// Checks a tag: 1 to 64 of a-z, 0-9, '-', '_', '.', as device ids.
pub fn check_tag(tag: &str) -> Result<(), String> {
    opmas_proto::DeviceId::new(tag).map(|_| ()).map_err(|e| e.to_string().replace("device id", "tag"))
}

/// Merges the defaults and then `layers` (lowest first, each with the name
/// of where it comes from) for every agent.
pub fn merge(version: i64, layers: &[(String, BTreeMap<String, Layer>)]) -> Effective {
    let mut agents = BTreeMap::new();
    for spec in AGENTS {
        let mut enabled = Sourced { value: true, from: "default".to_owned() };
        let mut exclude_patterns = Sourced { value: Vec::new(), from: "default".to_owned() };
        let mut params: BTreeMap<String, Sourced<i64>> = spec
            .params
            .iter()
            .map(|p| (p.name.to_owned(), Sourced { value: i64::from(p.default), from: "default".to_owned() }))
            .collect();
        let (mut local_block, mut local_block_for, mut local_kinds) = (None, None, None);
        for (from, layer) in layers {
            let Some(l) = layer.get(spec.name) else { continue };
            if let Some(e) = l.enabled {
                enabled = Sourced { value: e, from: from.clone() };
            }
            if let Some(b) = l.local_block {
                local_block = Some(Sourced { value: b, from: from.clone() });
            }
            if let Some(s) = l.local_block_for {
                local_block_for = Some(Sourced { value: s, from: from.clone() });
            }
            if let Some(k) = &l.local_kinds {
                local_kinds = Some(Sourced { value: k.clone(), from: from.clone() });
            }
            if let Some(p) = &l.exclude_patterns {
                exclude_patterns = Sourced { value: p.clone(), from: from.clone() };
            }
            for (k, &v) in &l.params {
                // Validated when stored; a name a later schema dropped is left out.
                if let Some(slot) = params.get_mut(k) {
                    *slot = Sourced { value: v, from: from.clone() };
                }
            }
        }
        agents.insert(
            spec.name.to_owned(),
            EffectiveAgent { enabled, params, exclude_patterns, local_block, local_block_for, local_kinds },
        );
    }
    Effective { version, agents }
}

/// What seeding one agent's defaults did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seeded {
    /// Keys added to the seed layer.
    pub added: Vec<String>,
    /// Keys whose stored value differs from the file's and was kept, each
    /// as `key: stored in the database, value in file`.
    pub kept: Vec<String>,
    /// The change's id, if what devices run changed.
    pub version: Option<i64>,
}

/// A device's configuration version against what it runs.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct SyncRow {
    pub id: String,
    pub version: i64,
    pub running: Option<i64>,
    pub error: Option<String>,
}

/// One change, as the history shows it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ChangeRow {
    pub id: i64,
    pub scope: String,
    pub agent: String,
    /// The layer before (`null`: none), or for `agent` "" the tags before.
    #[schema(value_type = Option<Object>)]
    #[sqlx(try_from = "Option<String>")]
    pub before: OptionalJson,
    /// The layer after, or for `agent` "" the device's tags after.
    #[schema(value_type = Object)]
    #[sqlx(try_from = "String")]
    pub after: Json,
    pub changed_by: String,
    pub changed_ms: i64,
}

/// JSON text read back from the database.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(transparent)]
pub struct Json(pub serde_json::Value);

impl TryFrom<String> for Json {
    type Error = serde_json::Error;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        serde_json::from_str(&s).map(Json)
    }
}

/// Optional JSON text read back from the database.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(transparent)]
pub struct OptionalJson(pub Option<serde_json::Value>);

impl TryFrom<Option<String>> for OptionalJson {
    type Error = serde_json::Error;
    fn try_from(s: Option<String>) -> Result<Self, Self::Error> {
        s.map(|s| serde_json::from_str(&s)).transpose().map(OptionalJson)
    }
}

impl ChangeRow {
    /// The layer this change set, if it set one (not a change of tags).
    pub fn layer(&self) -> Option<Layer> {
        if self.agent.is_empty() {
            return None;
        }
        serde_json::from_value(self.after.0.clone()).ok()
    }
}

/// Adds a row to the history; its id is the new version.
async fn record_change(
    tx: &mut super::WriteTx,
    scope: &str,
    agent: &str,
    before: Option<String>,
    after: String,
    by: &str,
    now_ms: i64,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO config_changes (scope, agent, before, after, changed_by, changed_ms) VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id",
    )
    .bind(scope)
    .bind(agent)
    .bind(before)
    .bind(after)
    .bind(by)
    .bind(now_ms)
    .fetch_one(&mut **tx)
    .await?)
}

impl Store {
    /// Every agent's layer in `scope`.
    pub async fn layers(&self, scope: &str) -> Result<BTreeMap<String, Layer>, StoreError> {
        let rows: Vec<ScopedLayerRow> =
            sqlx::query_as(&format!("SELECT scope, agent, {LAYER_COLUMNS} FROM agent_config WHERE scope = $1"))
                .bind(scope)
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().map(|(_, agent, e, p, x, l)| (agent, layer_of((e, p, x, l)))).collect())
    }

    /// Sets `scope`'s layer of `agent` (validate it first); returns the
    /// change's id, the new version of every device it applies to.
    pub async fn set_layer(
        &self,
        scope: &str,
        agent: &str,
        layer: &Layer,
        by: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        let mut tx = self.begin_write().await?;
        let before = stored_layer(&mut tx, scope, agent).await?;
        let json = |l: &Layer| serde_json::to_string(l).unwrap_or_else(|_| "{}".into());
        put_layer(&mut tx, scope, agent, layer).await?;
        let id = record_change(&mut tx, scope, agent, before.as_ref().map(json), json(layer), by, now_ms).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// `device`'s effective configuration: the fleet layer, its tags' in
    /// order, its own. Its version is the highest change of any of them (a
    /// change of its tags is a change of its own scope).
    pub async fn effective_config(&self, device: &str) -> Result<Effective, StoreError> {
        let scopes = scopes_of(device, &self.tags(device).await?);
        let mut version = 0i64;
        let mut layers = Vec::with_capacity(scopes.len());
        for scope in scopes {
            let v: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM config_changes WHERE scope = $1")
                .bind(&scope)
                .fetch_one(self.pool())
                .await?;
            version = version.max(v);
            layers.push((source_of(&scope), self.layers(&scope).await?));
        }
        Ok(merge(version, &layers))
    }

    /// Every device's effective version and what its latest heartbeat
    /// says it runs (and why it refused, if it did), by device id: the
    /// fleet's sync view in one query.
    pub async fn sync_states(&self) -> Result<Vec<SyncRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT d.id,
                    COALESCE((SELECT MAX(c.id) FROM config_changes c
                               WHERE c.scope IN ('seed', 'fleet') OR c.scope = 'device:' || d.id
                                  OR c.scope IN (SELECT 'tag:' || t.tag FROM device_tags t WHERE t.device_id = d.id)), 0)
                        AS version,
                    h.config_version AS running, h.config_error AS error
               FROM devices d
               LEFT JOIN heartbeats h ON h.device_id = d.id
                AND h.received_ms = (SELECT MAX(received_ms) FROM heartbeats WHERE device_id = d.id)
              GROUP BY d.id ORDER BY d.id",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// `device`'s configuration version alone (one query; what the
    /// commander compares each heartbeat with).
    pub async fn effective_version(&self, device: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE(MAX(c.id), 0) FROM config_changes c
              WHERE c.scope IN ('seed', 'fleet') OR c.scope = 'device:' || $1
                 OR c.scope IN (SELECT 'tag:' || t.tag FROM device_tags t WHERE t.device_id = $1)",
        )
        .bind(device)
        .fetch_one(self.pool())
        .await?)
    }

    /// Every device's effective configuration, in four queries whatever
    /// the fleet's size (a fleet-wide change sends them all at once).
    pub async fn effective_configs(&self) -> Result<Vec<(String, Effective)>, StoreError> {
        let rows: Vec<ScopedLayerRow> =
            sqlx::query_as(&format!("SELECT scope, agent, {LAYER_COLUMNS} FROM agent_config"))
                .fetch_all(self.pool())
                .await?;
        let mut layers: BTreeMap<String, BTreeMap<String, Layer>> = BTreeMap::new();
        for (scope, agent, e, p, x, l) in rows {
            layers.entry(scope).or_default().insert(agent, layer_of((e, p, x, l)));
        }
        let versions: BTreeMap<String, i64> =
            sqlx::query_as::<_, (String, i64)>("SELECT scope, MAX(id) FROM config_changes GROUP BY scope")
                .fetch_all(self.pool())
                .await?
                .into_iter()
                .collect();
        let mut tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT device_id, tag FROM device_tags ORDER BY device_id, position")
                .fetch_all(self.pool())
                .await?;
        for (device, tag) in rows {
            tags.entry(device).or_default().push(tag);
        }
        let devices: Vec<String> =
            sqlx::query_scalar("SELECT id FROM devices ORDER BY id").fetch_all(self.pool()).await?;
        let empty = BTreeMap::new();
        Ok(devices
            .into_iter()
            .map(|d| {
                let scopes = scopes_of(&d, tags.get(&d).map_or(&[][..], Vec::as_slice));
                let version = scopes.iter().filter_map(|s| versions.get(s)).copied().max().unwrap_or(0);
                let stack: Vec<(String, BTreeMap<String, Layer>)> =
                    scopes.iter().map(|s| (source_of(s), layers.get(s).unwrap_or(&empty).clone())).collect();
                let effective = merge(version, &stack);
                (d, effective)
            })
            .collect())
    }

    /// Every tag some device carries, sorted.
    pub async fn all_tags(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT DISTINCT tag FROM device_tags ORDER BY tag").fetch_all(self.pool()).await?)
    }

    /// The device's tags, in order.
    pub async fn tags(&self, device: &str) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT tag FROM device_tags WHERE device_id = $1 ORDER BY position")
            .bind(device)
            .fetch_all(self.pool())
            .await?)
    }

    /// The devices carrying `tag`.
    pub async fn devices_with_tag(&self, tag: &str) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT device_id FROM device_tags WHERE tag = $1 ORDER BY device_id")
            .bind(tag)
            .fetch_all(self.pool())
            .await?)
    }

    /// Replaces the device's tags (check each first); recorded as a change
    /// of its scope, so its configuration version moves. Returns the
    /// change's id.
    pub async fn set_tags(&self, device: &str, tags: &[String], by: &str, now_ms: i64) -> Result<i64, StoreError> {
        let before = self.tags(device).await?;
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM device_tags WHERE device_id = $1").bind(device).execute(&mut *tx).await?;
        for (i, t) in tags.iter().enumerate() {
            sqlx::query("INSERT INTO device_tags (device_id, tag, position) VALUES ($1, $2, $3)")
                .bind(device)
                .bind(t)
                .bind(i as i64)
                .execute(&mut *tx)
                .await?;
        }
        let before = serde_json::json!({ "tags": before }).to_string();
        let after = serde_json::json!({ "tags": tags }).to_string();
        let id = record_change(&mut tx, &device_scope(device), "", Some(before), after, by, now_ms).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Merges `file`'s defaults for `agent` (from `source`, a file name)
    /// into the seed layer: a key the layer lacks is added (the first start,
    /// or a key an upgrade brought); a key it has keeps its stored value,
    /// since after the first start the database is the source of truth.
    /// What devices run changes only if an added key differs from the
    /// schema's default: only then is it a change, with a version.
    pub async fn seed_layer(&self, agent: &str, file: &Layer, source: &str, now_ms: i64) -> Result<Seeded, StoreError> {
        let mut tx = self.begin_write().await?;
        let stored = stored_layer(&mut tx, SEED, agent).await?;
        let before = stored.clone().unwrap_or_default();
        let mut after = before.clone();
        let mut report = Seeded::default();
        for (k, &v) in &file.params {
            match after.params.get(k) {
                None => {
                    after.params.insert(k.clone(), v);
                    report.added.push(k.clone());
                }
                Some(&db) if db != v => report.kept.push(format!("{k}: {db} in the database, {v} in {source}")),
                Some(_) => {}
            }
        }
        match (after.enabled, file.enabled) {
            (None, Some(e)) => {
                after.enabled = Some(e);
                report.added.push("enabled".into());
            }
            (Some(db), Some(e)) if db != e => {
                report.kept.push(format!("enabled: {db} in the database, {e} in {source}"))
            }
            _ => {}
        }
        match (&after.exclude_patterns, &file.exclude_patterns) {
            (None, Some(p)) => {
                after.exclude_patterns = Some(p.clone());
                report.added.push(EXCLUDE.into());
            }
            (Some(db), Some(p)) if db != p => {
                report.kept.push(format!("{EXCLUDE}: {db:?} in the database, {p:?} in {source}"))
            }
            _ => {}
        }
        if stored.as_ref() != Some(&after) {
            put_layer(&mut tx, SEED, agent, &after).await?;
            let runs = |l: &Layer| {
                // Labelled as the schema's defaults are, so that only values count.
                let layers = [(source_of(SEED), BTreeMap::from([(agent.to_owned(), l.clone())]))];
                merge(0, &layers).agents.remove(agent)
            };
            if runs(&before) != runs(&after) {
                let json = |l: &Layer| serde_json::to_string(l).unwrap_or_else(|_| "{}".into());
                let by = format!("seed:{source}");
                let before = stored.as_ref().map(json);
                report.version = Some(record_change(&mut tx, SEED, agent, before, json(&after), &by, now_ms).await?);
            }
        }
        tx.commit().await?;
        Ok(report)
    }

    /// One change.
    pub async fn config_change(&self, id: i64) -> Result<Option<ChangeRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, scope, agent, before, after, changed_by, changed_ms FROM config_changes WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Changes of `scope` (and `agent`, if given), newest first.
    pub async fn config_history(
        &self,
        scope: &str,
        agent: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ChangeRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, scope, agent, before, after, changed_by, changed_ms FROM config_changes
              WHERE scope = $1 AND ($2 IS NULL OR agent = $3) ORDER BY id DESC LIMIT $4",
        )
        .bind(scope)
        .bind(agent)
        .bind(agent)
        .bind(limit as i64)
        .fetch_all(self.pool())
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_store;

    #[test]
    fn every_bad_field_is_named_with_its_reason() {
        let layer = Layer {
            enabled: None,
            params: [("ssh_failures".into(), 0), ("colour".into(), 3)].into_iter().collect(),
            ..Default::default()
        };
        let errors = validate("security", &layer).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["params.colour", "params.ssh_failures"]);
        assert!(errors[1].reason.starts_with("0 is outside"), "{errors:?}");
        assert_eq!(validate("dns", &Layer::default()).unwrap_err()[0].path, "agent");
        assert_eq!(validate("security", &Layer { enabled: Some(false), ..Default::default() }), Ok(()));
    }

    #[tokio::test]
    async fn layers_merge_over_the_defaults_and_each_change_is_a_version() {
        let (store, _dir) = test_store().await;
        assert_eq!(store.effective_config("gw-1").await.unwrap().version, 0, "nothing configured");
        let fleet = Layer { params: [("ssh_failures".into(), 8)].into_iter().collect(), ..Default::default() };
        let v1 = store.set_layer("fleet", "security", &fleet, "alice", 1).await.unwrap();
        let mine = Layer { enabled: Some(false), ..Default::default() };
        let v2 = store.set_layer(&device_scope("gw-1"), "wifi", &mine, "bob", 2).await.unwrap();
        let e1 = store.effective_config("gw-1").await.unwrap();
        let e2 = store.effective_config("gw-2").await.unwrap();
        assert_eq!((e1.version, e2.version), (v2, v1), "a device's change is its own version");
        assert_eq!(e1.agents["security"].params["ssh_failures"], Sourced { value: 8, from: "fleet".into() });
        assert_eq!(e1.agents["security"].params["ssh_window"].from, "default");
        assert_eq!(e1.agents["wifi"].enabled, Sourced { value: false, from: "device".into() });
        assert!(e2.agents["wifi"].enabled.value);
        let doc = e1.doc();
        assert_eq!(doc.version, v2 as u64);
        assert!(!doc.agents["wifi"].enabled);
        let history = store.config_history("fleet", None, 10).await.unwrap();
        assert_eq!((history.len(), history[0].changed_by.as_str()), (1, "alice"));
        assert!(history[0].before.0.is_none());
        assert_eq!(history[0].layer(), Some(fleet));
    }

    #[tokio::test]
    async fn tag_layers_apply_in_the_devices_order_and_a_tag_change_is_a_version() {
        let (store, _dir) = test_store().await;
        store.insert_device("gw-1", "gw-1", "aa", 1).await.unwrap();
        let set = |n: i64| Layer { params: [("ssh_failures".into(), n)].into_iter().collect(), ..Default::default() };
        store.set_layer("fleet", "security", &set(8), "a", 1).await.unwrap();
        store.set_layer(&tag_scope("branch"), "security", &set(4), "a", 1).await.unwrap();
        let v = store.set_layer(&tag_scope("lab"), "security", &set(3), "a", 1).await.unwrap();
        assert_eq!(store.effective_config("gw-1").await.unwrap().agents["security"].params["ssh_failures"].value, 8);
        let t1 = store.set_tags("gw-1", &["lab".into(), "branch".into()], "a", 2).await.unwrap();
        assert!(t1 > v);
        let e = store.effective_config("gw-1").await.unwrap();
        assert_eq!(e.version, t1, "tagging moved the version");
        assert_eq!(
            e.agents["security"].params["ssh_failures"],
            Sourced { value: 4, from: "tag:branch".into() },
            "the later tag wins"
        );
        store.set_tags("gw-1", &["branch".into(), "lab".into()], "a", 3).await.unwrap();
        assert_eq!(store.effective_config("gw-1").await.unwrap().agents["security"].params["ssh_failures"].value, 3);
        assert_eq!(store.devices_with_tag("lab").await.unwrap(), ["gw-1"]);
        assert!(check_tag("Bad Tag").is_err());
        let history = store.config_history(&device_scope("gw-1"), None, 10).await.unwrap();
        assert_eq!(history[0].layer(), None, "a tag change is not a layer");
        assert_eq!(history[0].after.0, serde_json::json!({ "tags": ["branch", "lab"] }));
    }

    #[tokio::test]
    async fn the_bulk_effective_configurations_equal_the_one_by_one_ones() {
        let (store, _dir) = crate::store::test_store().await;
        for d in ["gw-1", "gw-2", "gw-3"] {
            store.insert_device(d, d, "aa", 1).await.unwrap();
        }
        let set = |n: i64| Layer { params: [("ssh_failures".into(), n)].into_iter().collect(), ..Default::default() };
        store.set_layer("fleet", "security", &set(8), "t", 1).await.unwrap();
        store.set_tags("gw-2", &["lab".into(), "edge".into()], "t", 2).await.unwrap();
        store.set_layer(&tag_scope("lab"), "security", &set(6), "t", 3).await.unwrap();
        store
            .set_layer(&tag_scope("edge"), "wifi", &Layer { enabled: Some(false), ..Default::default() }, "t", 4)
            .await
            .unwrap();
        store.set_layer(&device_scope("gw-3"), "security", &set(3), "t", 5).await.unwrap();
        let bulk = store.effective_configs().await.unwrap();
        assert_eq!(bulk.len(), 3);
        for (d, e) in bulk {
            assert_eq!(e, store.effective_config(&d).await.unwrap(), "{d}");
            assert_eq!(e.version, store.effective_version(&d).await.unwrap(), "{d}");
        }
    }

    #[tokio::test]
    async fn the_local_response_is_sent_only_as_far_as_a_layer_sets_it() {
        let (store, _dir) = test_store().await;
        store.insert_device("gw-1", "gw-1", "aa", 1).await.unwrap();
        let none = store.effective_config("gw-1").await.unwrap();
        assert_eq!(none.agents["security"].local_override(), LocalOverride::default());
        let doc = none.doc();
        assert!(local::NAMES.iter().all(|n| !doc.agents["security"].params.contains_key(*n)), "the router decides");

        let fleet = Layer { local_block: Some(true), local_block_for: Some(900), ..Default::default() };
        assert_eq!(validate("security", &fleet), Ok(()));
        store.set_layer("fleet", "security", &fleet, "alice", 2).await.unwrap();
        let mine = Layer { local_block: Some(false), ..Default::default() };
        store.set_layer(&device_scope("gw-1"), "security", &mine, "bob", 3).await.unwrap();
        let e = store.effective_config("gw-1").await.unwrap();
        let sec = &e.agents["security"];
        assert_eq!(sec.local_block, Some(Sourced { value: false, from: "device".into() }));
        assert_eq!(sec.local_block_for, Some(Sourced { value: 900, from: "fleet".into() }));
        assert_eq!(sec.local_kinds, None, "nobody set the kinds: the router's own");
        let mut params = e.doc().agents["security"].params.clone();
        let sent = LocalOverride::take(&mut params).unwrap();
        assert_eq!(sent, LocalOverride { block: Some(false), block_s: Some(900), kinds: None });
        assert_eq!(store.layers("fleet").await.unwrap()["security"], fleet, "stored and read back");
        assert_eq!(store.effective_configs().await.unwrap()[0].1, e);

        let bad = Layer { local_block_for: Some(0), local_kinds: Some(vec!["ssh.nope".into()]), ..Default::default() };
        let paths: Vec<String> = validate("security", &bad).unwrap_err().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, ["local_block_for", "local_kinds[0]"]);
        let elsewhere = validate("wifi", &Layer { local_block: Some(true), ..Default::default() }).unwrap_err();
        assert_eq!(elsewhere[0].reason, "only the security agent has a local response");
    }
}
