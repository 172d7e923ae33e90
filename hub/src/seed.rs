//! The fleet defaults from `config/agents/<agent>.yaml`, read at every
//! start and merged into the database's seed layer (`store::config::SEED`):
//! at the first start they fill it, after an upgrade the keys it brought are
//! added, and a key already stored keeps its stored value whatever the file
//! says, because the database is the source of truth; a difference is
//! logged. Administrators change the fleet, tag and device layers above it,
//! which seeding never touches.
//!
//! Correlation rules from `config/rules/*.yaml` are seeded the same way:
//! a rule whose name the database never had is added; one it has (changed
//! or deleted since) is left as it is.
//!
//! So are playbooks from `config/playbooks/*.yaml`.
//!
//! Without `agents_dir` (`rules_dir`, `playbooks_dir`) the hub uses the files shipped in the
//! repository, compiled in, so a binary alone starts with the documented
//! defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use opmas_proto::agents::AGENTS;
use serde_json::Value;
use thiserror::Error;

use crate::act::playbook::{Playbook, PlaybookSpec};
use crate::alert::config::AlertConfig;
use crate::correlate::rule::{parse_yaml, Rule, RuleSpec};
use crate::store::config::{validate, Layer, EXCLUDE};
use crate::store::{Store, StoreError};

/// The shipped files, by agent.
const SHIPPED: [(&str, &str); 4] = [
    ("network", include_str!("../../config/agents/network.yaml")),
    ("security", include_str!("../../config/agents/security.yaml")),
    ("system", include_str!("../../config/agents/system.yaml")),
    ("wifi", include_str!("../../config/agents/wifi.yaml")),
];

/// The shipped rules, by file name.
const SHIPPED_RULES: [(&str, &str); 5] = [
    ("bruteforce-then-login.yaml", include_str!("../../config/rules/bruteforce-then-login.yaml")),
    ("fleet-wifi-trouble.yaml", include_str!("../../config/rules/fleet-wifi-trouble.yaml")),
    ("one-attacker-many-routers.yaml", include_str!("../../config/rules/one-attacker-many-routers.yaml")),
    ("router-gone-quiet.yaml", include_str!("../../config/rules/router-gone-quiet.yaml")),
    ("wifi-attack-with-scan.yaml", include_str!("../../config/rules/wifi-attack-with-scan.yaml")),
];

/// The shipped playbooks, by file name.
const SHIPPED_PLAYBOOKS: [(&str, &str); 2] = [
    ("ban-wifi-attacker.yaml", include_str!("../../config/playbooks/ban-wifi-attacker.yaml")),
    ("block-bruteforce.yaml", include_str!("../../config/playbooks/block-bruteforce.yaml")),
];

/// The shipped alerting document.
const SHIPPED_ALERTING: &str = include_str!("../../config/alerting.yaml");

/// Why the agents' defaults or the rules cannot be used; the hub does not
/// start on one.
#[derive(Debug, Error)]
pub enum SeedError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{file}: {reason}")]
    Parse { file: String, reason: String },
    #[error("{file}: {path}: {reason}")]
    Field { file: String, path: String, reason: String },
    #[error("{dir}: {file} names no agent; known: {known}")]
    UnknownAgent { dir: String, file: String, known: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One agent's defaults file, read and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentFile {
    pub agent: String,
    /// As shown in messages and recorded as the change's author.
    pub file: String,
    pub layer: Layer,
}

/// Parses one file's text: a map of `enabled` (true/false),
/// `exclude_patterns` (a list of patterns) and parameters (whole numbers),
/// checked against the agent's schema.
pub fn parse(agent: &str, file: &str, text: &str) -> Result<AgentFile, SeedError> {
    let map: BTreeMap<String, Value> = if text.trim().is_empty() {
        BTreeMap::new()
    } else {
        serde_saphyr::from_str(text).map_err(|e| SeedError::Parse { file: file.into(), reason: e.to_string() })?
    };
    let field = |path: &str, reason: String| SeedError::Field { file: file.into(), path: path.into(), reason };
    let mut layer = Layer::default();
    for (key, v) in map {
        match key.as_str() {
            "enabled" => {
                layer.enabled = Some(v.as_bool().ok_or_else(|| field(&key, format!("{v} is not true or false")))?)
            }
            EXCLUDE => {
                let list = v.as_array().ok_or_else(|| field(&key, format!("{v} is not a list of patterns")))?;
                let patterns = list
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        p.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| field(&format!("{key}[{i}]"), format!("{p} is not text")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                layer.exclude_patterns = Some(patterns);
            }
            k if opmas_proto::local_response::NAMES.contains(&k) => {
                return Err(field(
                    &key,
                    "the local response is the router's own (UCI) unless set in the fleet, a tag or a device \
                     layer (web UI or API), not in the shipped defaults"
                        .into(),
                ))
            }
            _ => {
                let n = v.as_i64().ok_or_else(|| field(&key, format!("{v} is not a whole number")))?;
                layer.params.insert(key, n);
            }
        }
    }
    if let Err(errors) = validate(agent, &layer) {
        let e = &errors[0];
        // The layer's paths say `params.x`; the file has `x` at the top.
        return Err(field(e.path.strip_prefix("params.").unwrap_or(&e.path), e.reason.clone()));
    }
    Ok(AgentFile { agent: agent.into(), file: file.into(), layer })
}

/// Reads `dir/<agent>.yaml` for every agent that has one (an agent without
/// a file keeps the schema's defaults), or the shipped files if `dir` is
/// `None`. A `.yaml` file that names no agent is an error: a typo in a file
/// name would otherwise be silently ignored.
pub fn load(dir: Option<&Path>) -> Result<Vec<AgentFile>, SeedError> {
    let Some(dir) = dir else {
        return SHIPPED
            .iter()
            .map(|(agent, text)| parse(agent, &format!("config/agents/{agent}.yaml (built in)"), text))
            .collect();
    };
    let read_err = |source| SeedError::Read { path: dir.to_owned(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        let (Some(stem), Some("yaml" | "yml")) =
            (path.file_stem().and_then(|s| s.to_str()), path.extension().and_then(|s| s.to_str()))
        else {
            continue;
        };
        if !AGENTS.iter().any(|a| a.name == stem) {
            let known: Vec<&str> = AGENTS.iter().map(|a| a.name).collect();
            return Err(SeedError::UnknownAgent {
                dir: dir.display().to_string(),
                file: path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
                known: known.join(", "),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|source| SeedError::Read { path: path.clone(), source })?;
        files.push(parse(stem, &path.display().to_string(), &text)?);
    }
    files.sort_by(|a, b| a.agent.cmp(&b.agent));
    Ok(files)
}

/// The rules of `dir/*.yaml` (each file one rule or a list), or the shipped
/// ones if `dir` is `None`, each checked.
pub fn load_rules(dir: Option<&Path>) -> Result<Vec<(String, RuleSpec)>, SeedError> {
    let texts = yaml_files(dir, &SHIPPED_RULES, "config/rules")?;
    let mut rules = Vec::new();
    for (file, text) in texts {
        for spec in parse_yaml(&text).map_err(|reason| SeedError::Parse { file: file.clone(), reason })? {
            if let Err(errors) = Rule::compile(spec.clone()) {
                let e = &errors[0];
                return Err(SeedError::Field {
                    file,
                    path: format!("{}: {}", spec.name, e.path),
                    reason: e.reason.clone(),
                });
            }
            rules.push((file.clone(), spec));
        }
    }
    Ok(rules)
}

/// The `*.yaml` files of `dir` as (name, text), sorted; or the shipped
/// ones (named as `shipped_dir/<file> (built in)`) if `dir` is `None`.
fn yaml_files(
    dir: Option<&Path>,
    shipped: &[(&str, &str)],
    shipped_dir: &str,
) -> Result<Vec<(String, String)>, SeedError> {
    let Some(dir) = dir else {
        return Ok(shipped.iter().map(|(f, t)| (format!("{shipped_dir}/{f} (built in)"), (*t).to_owned())).collect());
    };
    let read_err = |source| SeedError::Read { path: dir.to_owned(), source };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    paths.sort();
    let mut texts = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(&p).map_err(|source| SeedError::Read { path: p.clone(), source })?;
        texts.push((p.display().to_string(), text));
    }
    Ok(texts)
}

/// The playbooks of `dir/*.yaml` (one each), or the shipped ones, checked.
pub fn load_playbooks(dir: Option<&Path>) -> Result<Vec<(String, PlaybookSpec)>, SeedError> {
    let mut out = Vec::new();
    for (file, text) in yaml_files(dir, &SHIPPED_PLAYBOOKS, "config/playbooks")? {
        let spec = crate::act::playbook::parse_yaml(&text)
            .map_err(|reason| SeedError::Parse { file: file.clone(), reason })?;
        if let Err(errors) = Playbook::compile(spec.clone()) {
            let e = &errors[0];
            return Err(SeedError::Field {
                file,
                path: format!("{}: {}", spec.name, e.path),
                reason: e.reason.clone(),
            });
        }
        out.push((file, spec));
    }
    Ok(out)
}

/// Adds the playbooks the database never had, and logs them.
pub async fn apply_playbooks(
    store: &Store,
    playbooks: &[(String, PlaybookSpec)],
    now_ms: i64,
) -> Result<(), SeedError> {
    for (file, spec) in playbooks {
        if store.seed_playbook(spec, file, now_ms).await? {
            tracing::info!(playbook = %spec.name, mode = spec.mode.as_str(), %file, "seeded a playbook");
        }
    }
    Ok(())
}

/// Adds the rules the database never had, and logs them.
pub async fn apply_rules(store: &Store, rules: &[(String, RuleSpec)], now_ms: i64) -> Result<(), SeedError> {
    for (file, spec) in rules {
        if store.seed_rule(spec, file, now_ms).await? {
            tracing::info!(rule = %spec.name, %file, "seeded a correlation rule");
        }
    }
    Ok(())
}

/// The alerting document of `file`, or the shipped one, checked.
pub fn load_alerting(file: Option<&Path>) -> Result<(String, AlertConfig), SeedError> {
    let (name, text) = match file {
        None => ("config/alerting.yaml (built in)".to_owned(), SHIPPED_ALERTING.to_owned()),
        Some(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p).map_err(|source| SeedError::Read { path: p.to_owned(), source })?,
        ),
    };
    let cfg =
        crate::alert::config::parse_yaml(&text).map_err(|reason| SeedError::Parse { file: name.clone(), reason })?;
    if let Some(e) = cfg.check().into_iter().next() {
        return Err(SeedError::Field { file: name, path: e.path, reason: e.reason });
    }
    Ok((name, cfg))
}

/// Stores the alerting document if the database has none yet.
pub async fn apply_alerting(store: &Store, (file, cfg): &(String, AlertConfig), now_ms: i64) -> Result<(), SeedError> {
    if store.seed_alert_config(cfg, file, now_ms).await? {
        tracing::info!(%file, receivers = cfg.receivers.len(), "seeded the alerting document");
    }
    Ok(())
}

/// Merges `files` into the seed layer (see the module's header) and logs
/// what it did.
pub async fn apply(store: &Store, files: &[AgentFile], now_ms: i64) -> Result<(), SeedError> {
    for f in files {
        let done = store.seed_layer(&f.agent, &f.layer, &f.file, now_ms).await?;
        if !done.added.is_empty() {
            tracing::info!(agent = %f.agent, file = %f.file, keys = %done.added.join(", "), version = ?done.version,
                "seeded the agent's defaults");
        }
        for k in &done.kept {
            tracing::warn!(agent = %f.agent, "{k}: the database wins (change it in the UI or the API)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::config::SEED;
    use crate::store::test_store;

    #[test]
    fn the_shipped_files_are_the_schemas_defaults() {
        let files = load(None).unwrap();
        assert_eq!(files.len(), AGENTS.len());
        for f in files {
            let spec = AGENTS.iter().find(|a| a.name == f.agent).unwrap();
            for p in spec.params {
                assert_eq!(f.layer.params.get(p.name), Some(&i64::from(p.default)), "{}.{}", f.agent, p.name);
            }
            assert_eq!(f.layer.enabled, Some(true));
        }
    }

    #[test]
    fn a_bad_file_is_refused_naming_the_file_and_the_key() {
        let err = |text: &str| parse("wifi", "wifi.yaml", text).unwrap_err().to_string();
        assert_eq!(err("deauth_window: 1\n"), "wifi.yaml: deauth_window: 1 is outside 2 to 3600 s");
        assert!(err("deauth_windw: 60\n").starts_with("wifi.yaml: deauth_windw: unknown parameter; known: "));
        assert_eq!(err("enabled: yes please\n"), "wifi.yaml: enabled: \"yes please\" is not true or false");
        assert_eq!(err("suppress: ten\n"), "wifi.yaml: suppress: \"ten\" is not a whole number");
        assert!(err("exclude_patterns: [\"[\"]\n").starts_with("wifi.yaml: exclude_patterns[0]: "));
        let e = err("suppress: 1\n  bad: indent: here\n");
        assert!(e.starts_with("wifi.yaml: ") && e.contains("line"), "{e}");
    }

    #[test]
    fn the_shipped_playbooks_check_and_a_bad_one_is_named_by_file_and_field() {
        let books = load_playbooks(None).unwrap();
        assert_eq!(books.len(), SHIPPED_PLAYBOOKS.len());
        assert!(books.iter().all(|(_, b)| b.mode != crate::act::playbook::Mode::Auto), "none acts alone as shipped");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("x.yaml"),
            "name: x\ntrigger: { finding: { kind: ssh.bruteforce } }\nsteps:\n  - action: block_ip\n    params: { net: \"{{ src_ip }}\", timeout_s: 0 }\n    targets: all\n",
        )
        .unwrap();
        let e = load_playbooks(Some(dir.path())).unwrap_err().to_string();
        assert!(
            e.ends_with("x.yaml: x: steps[0].params: timeout_s must be 1 to 604800 seconds (a week), got 0"),
            "{e}"
        );
    }

    #[test]
    fn the_shipped_rules_check_and_a_bad_one_is_named_by_file_rule_and_field() {
        let rules = load_rules(None).unwrap();
        assert_eq!(rules.len(), SHIPPED_RULES.len());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("mine.yaml"),
            "name: mine\ntype: all\nseverity: high\nwindow: 5m\nkey: src_ip\nmatch:\n  - kind: a\n",
        )
        .unwrap();
        let e = load_rules(Some(dir.path())).unwrap_err().to_string();
        assert!(e.ends_with("mine.yaml: mine: match: a all rule needs two or more steps; it has 1"), "{e}");
    }

    #[test]
    fn the_shipped_alerting_document_checks_and_its_examples_too() {
        let (_, cfg) = load_alerting(None).unwrap();
        assert_eq!(cfg.receivers[0].name, "hub-log");
        // The commented examples, uncommented, are a valid document too.
        let text: String = SHIPPED_ALERTING
            .lines()
            .map(|l| match l.strip_prefix("  # ") {
                Some(rest) => format!("  {rest}\n"),
                None => format!("{l}\n"),
            })
            .collect();
        let cfg = crate::alert::config::parse_yaml(&text).unwrap();
        assert_eq!(cfg.check(), []);
        assert_eq!(cfg.receivers.len(), 5);
        assert_eq!(cfg.route.routes.len(), 2);
    }

    #[tokio::test]
    async fn a_rule_is_seeded_once_and_a_deleted_one_stays_deleted() {
        let (store, _dir) = test_store().await;
        let rules = load_rules(None).unwrap();
        apply_rules(&store, &rules, 1).await.unwrap();
        assert_eq!(store.rules().await.unwrap().len(), SHIPPED_RULES.len());
        assert!(store.delete_rule("router-gone-quiet", "alice", 2).await.unwrap());
        apply_rules(&store, &rules, 3).await.unwrap();
        assert!(store.rule("router-gone-quiet").await.unwrap().is_none(), "not brought back");
        assert_eq!(store.rules().await.unwrap().len(), SHIPPED_RULES.len() - 1);
    }

    #[test]
    fn a_directory_with_a_file_for_no_agent_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("wifi.yaml"), "suppress: 30\n").unwrap();
        std::fs::write(dir.path().join("README"), "not yaml, not read\n").unwrap();
        let files = load(Some(dir.path())).unwrap();
        assert_eq!((files.len(), files[0].layer.params["suppress"]), (1, 30));
        std::fs::write(dir.path().join("wfii.yaml"), "suppress: 30\n").unwrap();
        let e = load(Some(dir.path())).unwrap_err().to_string();
        assert!(e.contains("wfii.yaml names no agent; known: "), "{e}");
    }

    #[tokio::test]
    async fn the_first_start_seeds_an_upgrade_adds_keys_and_the_database_wins_after() {
        let (store, _dir) = test_store().await;
        let file = |text: &str| vec![parse("wifi", "wifi.yaml", text).unwrap()];
        // The shipped defaults change nothing a device runs: no version, so
        // routers keep their own UCI settings until an administrator acts.
        apply(&store, &load(None).unwrap(), 1).await.unwrap();
        assert_eq!(store.effective_config("gw-1").await.unwrap().version, 0);
        let e = store.effective_config("gw-1").await.unwrap();
        assert_eq!(e.agents["wifi"].params["suppress"].from, "default");

        // A site's own default is a change every device gets.
        let (store, _dir) = test_store().await;
        apply(&store, &file("suppress: 30\n"), 1).await.unwrap();
        let e = store.effective_config("gw-1").await.unwrap();
        assert!(e.version > 0);
        assert_eq!(
            (e.agents["wifi"].params["suppress"].value, e.agents["wifi"].params["suppress"].from.as_str()),
            (30, "default")
        );
        // The fleet layer above it is the administrator's, and wins.
        let fleet = Layer { params: [("suppress".into(), 45)].into_iter().collect(), ..Default::default() };
        store.set_layer("fleet", "wifi", &fleet, "alice", 2).await.unwrap();
        // Next start: the file changed a stored key (kept) and an upgrade
        // added one (merged in); nothing the administrator set moves.
        let report = store
            .seed_layer(
                "wifi",
                &parse("wifi", "wifi.yaml", "suppress: 99\nauth_window: 120\n").unwrap().layer,
                "wifi.yaml",
                3,
            )
            .await
            .unwrap();
        assert_eq!(report.added, ["auth_window"]);
        assert_eq!(report.kept, ["suppress: 30 in the database, 99 in wifi.yaml"]);
        let seed = store.layers(SEED).await.unwrap().remove("wifi").unwrap();
        assert_eq!((seed.params["suppress"], seed.params["auth_window"]), (30, 120));
        let e = store.effective_config("gw-1").await.unwrap();
        assert_eq!(e.agents["wifi"].params["suppress"].value, 45);
        assert_eq!(e.agents["wifi"].params["auth_window"].value, 120);
        assert_eq!(e.version, report.version.unwrap(), "the added key is a new version");
        // Starting again with the same file changes nothing.
        let again = store.seed_layer("wifi", &seed, "wifi.yaml", 4).await.unwrap();
        assert_eq!((again.added.len(), again.version), (0, None));
    }
}
