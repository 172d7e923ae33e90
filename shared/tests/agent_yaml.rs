//! `config/agents/<agent>.yaml` documents each agent's defaults for
//! operators and the hub. This test keeps every file equal to the built-in
//! defaults of `opmas_proto::agents`, with a comment per parameter that
//! states its range, so neither can drift.

use std::collections::BTreeMap;
use std::path::PathBuf;

use opmas_proto::agents::{NetworkConfig, ParamSpec, SecurityConfig, SystemConfig, WifiConfig, AGENTS};
use opmas_proto::msg::Value;
use yaml_rust2::{Yaml, YamlLoader};

fn path(agent: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/agents").join(format!("{agent}.yaml"))
}

/// The file's `enabled` flag and its parameters as the hub would send them.
fn load(agent: &str) -> (String, bool, BTreeMap<String, Value>) {
    let text = std::fs::read_to_string(path(agent)).unwrap_or_else(|e| panic!("{}: {e}", path(agent).display()));
    let docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{agent}.yaml: {e}"));
    assert_eq!(docs.len(), 1, "{agent}.yaml holds one document");
    let Yaml::Hash(h) = &docs[0] else { panic!("{agent}.yaml is not a mapping") };
    let mut enabled = None;
    let mut params = BTreeMap::new();
    for (k, v) in h {
        let Yaml::String(k) = k else { panic!("{agent}.yaml: key {k:?} is not a string") };
        match (k.as_str(), v) {
            ("enabled", Yaml::Boolean(b)) => enabled = Some(*b),
            (_, Yaml::Integer(i)) => {
                params.insert(k.clone(), Value::Int(*i));
            }
            (_, other) => panic!("{agent}.yaml: {k} is {other:?}, not a whole number"),
        }
    }
    (text, enabled.unwrap_or_else(|| panic!("{agent}.yaml: no `enabled`")), params)
}

/// Every parameter line is preceded by a comment that ends with its range, `(min-max).`.
fn check_comments(agent: &str, text: &str, table: &[ParamSpec]) {
    let lines: Vec<&str> = text.lines().collect();
    for p in table {
        let at = lines
            .iter()
            .position(|l| l.starts_with(&format!("{}:", p.name)))
            .unwrap_or_else(|| panic!("{agent}.yaml: no line for {}", p.name));
        let comment = at.checked_sub(1).map(|i| lines[i]).unwrap_or("");
        assert!(comment.starts_with("# "), "{agent}.yaml: {} has no comment line above it", p.name);
        let range = format!("({}-{}).", p.min, p.max);
        assert!(comment.ends_with(&range), "{agent}.yaml: the comment of {} should end with {range}", p.name);
    }
}

fn check<T: Default + PartialEq + std::fmt::Debug>(
    agent: &str,
    table: &[ParamSpec],
    params_of: impl Fn(&T) -> BTreeMap<String, Value>,
    apply: impl Fn(&mut T, &BTreeMap<String, Value>) -> Result<(), opmas_proto::agents::AgentConfigError>,
) {
    let (text, enabled, params) = load(agent);
    assert!(enabled, "{agent}.yaml: agents ship enabled");
    assert_eq!(params, params_of(&T::default()), "{agent}.yaml differs from {agent}'s Default");
    let mut cfg = T::default();
    apply(&mut cfg, &params).unwrap_or_else(|e| panic!("{agent}.yaml: {e}"));
    assert_eq!(cfg, T::default());
    check_comments(agent, &text, table);
}

#[test]
fn every_agent_yaml_equals_its_defaults_and_validates() {
    check(SecurityConfig::AGENT, SecurityConfig::PARAMS, SecurityConfig::params, SecurityConfig::apply);
    check(WifiConfig::AGENT, WifiConfig::PARAMS, WifiConfig::params, WifiConfig::apply);
    check(NetworkConfig::AGENT, NetworkConfig::PARAMS, NetworkConfig::params, NetworkConfig::apply);
    check(SystemConfig::AGENT, SystemConfig::PARAMS, SystemConfig::params, SystemConfig::apply);
}

#[test]
fn there_is_one_yaml_file_per_agent_and_no_other() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/agents");
    let mut files: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    let mut want: Vec<String> = AGENTS.iter().map(|a| format!("{}.yaml", a.name)).collect();
    want.sort();
    assert_eq!(files, want);
}
