//! Actions on routers: what may be asked, of which routers, recorded in
//! the audit log before anything is sent.
//!
//! An action is named as the playbooks and the API write it (`block_ip`,
//! `unblock_ip`, `ban_wifi_client`, `unban_wifi_client`, `restart_service`,
//! `wifi_reload`) with typed parameters; [`parse_action`] turns it into the
//! wire's [`Action`] and checks it with the edge's own bounds
//! ([`Action::check`]), so a request the edge would refuse is refused here,
//! with every mistake named. [`Targets`] pick the routers (a list, a tag,
//! or all). [`Actor::act`] stores the action and one command per router in
//! one transaction ([`Store::insert_action`]), then publishes the commands;
//! a router that is away gets its command when it is back, until it
//! expires (`command.rs`).

pub mod playbook;
pub mod runner;
pub mod ssh;

use opmas_proto::msg::Action;
use opmas_proto::DeviceId;
use serde::Deserialize;

use crate::command::Commander;
use crate::store::actions::{ActionRow, NewAction};
use crate::store::config::FieldError;
use crate::store::{Store, StoreError};

/// The actions routers run, by the names playbooks and the API use.
pub const ACTIONS: [&str; 6] =
    ["block_ip", "unblock_ip", "ban_wifi_client", "unban_wifi_client", "restart_service", "wifi_reload"];

/// Which routers an action goes to: exactly one of the three.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// These devices, by id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
    /// Every device carrying this tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Every enrolled device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,
}

/// `name` with `params` (a JSON object) as the wire's action, checked; every
/// mistake by path (`params.net`, `action`).
pub fn parse_action(name: &str, params: &serde_json::Value) -> Result<Action, Vec<FieldError>> {
    let err = |path: &str, reason: String| vec![FieldError { path: path.into(), reason }];
    let variant = match name {
        "block_ip" => "BlockIp",
        "unblock_ip" => "UnblockIp",
        "ban_wifi_client" => "BanClient",
        "unban_wifi_client" => "UnbanClient",
        "restart_service" => "RestartService",
        "wifi_reload" => "ReloadWifi",
        other => return Err(err("action", format!("unknown action {other:?}; known: {}", ACTIONS.join(", ")))),
    };
    let empty = params.is_null() || params.as_object().is_some_and(|m| m.is_empty());
    let value = match (variant, params) {
        ("ReloadWifi", _) if empty => serde_json::Value::String(variant.into()),
        ("ReloadWifi", _) => return Err(err("params", "wifi_reload takes no parameters".into())),
        (_, serde_json::Value::Object(_)) => serde_json::json!({ variant: params }),
        _ => return Err(err("params", format!("{name} takes an object of parameters"))),
    };
    let action: Action = serde_json::from_value(value).map_err(|e| err("params", e.to_string()))?;
    action.check().map_err(|reason| err("params", reason))?;
    Ok(action)
}

/// The devices `targets` name, checked: a named device must exist, a tag be
/// a tag; none at all is a mistake (an action that reaches no router).
pub async fn resolve(store: &Store, targets: &Targets) -> Result<Vec<String>, Vec<FieldError>> {
    let err = |path: &str, reason: String| vec![FieldError { path: path.into(), reason }];
    let store_err = |e: StoreError| err("targets", e.to_string());
    let given = usize::from(targets.devices.is_some())
        + usize::from(targets.tag.is_some())
        + usize::from(targets.all.is_some());
    if given != 1 {
        return Err(err("targets", "give exactly one of devices (a list of ids), tag, or all: true".into()));
    }
    let devices = if let Some(list) = &targets.devices {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for (i, d) in list.iter().enumerate() {
            match DeviceId::new(d) {
                Err(e) => errors.push(FieldError { path: format!("targets.devices[{i}]"), reason: e.to_string() }),
                Ok(_) if store.device_secret(d).await.map_err(store_err)?.is_none() => errors
                    .push(FieldError { path: format!("targets.devices[{i}]"), reason: format!("no device {d:?}") }),
                Ok(_) if out.contains(d) => {}
                Ok(_) => out.push(d.clone()),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        out
    } else if let Some(tag) = &targets.tag {
        crate::store::config::check_tag(tag).map_err(|r| err("targets.tag", r))?;
        store.devices_with_tag(tag).await.map_err(store_err)?
    } else if targets.all == Some(true) {
        store.list_devices().await.map_err(store_err)?.into_iter().map(|d| d.id).collect()
    } else {
        return Err(err("targets.all", "all must be true (or give devices or tag)".into()));
    };
    if devices.is_empty() {
        return Err(err("targets", "no device matches: the action would reach no router".into()));
    }
    Ok(devices)
}

/// Asks routers to act; cheap to clone.
#[derive(Clone)]
pub struct Actor {
    pub store: Store,
    pub commander: Commander,
}

/// One request to act.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub action: Action,
    pub targets: &'a Targets,
    pub devices: &'a [String],
    pub by: &'a str,
    pub comment: Option<&'a str>,
    pub undo_of: Option<i64>,
    pub ttl_ms: i64,
}

impl Actor {
    /// Records the action with one command per device, then sends them.
    pub async fn act(&self, r: Request<'_>) -> Result<ActionRow, StoreError> {
        let targets = serde_json::to_value(r.targets).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let row = self
            .store
            .insert_action(&NewAction {
                comment: r.comment,
                undo_of: r.undo_of,
                ttl_ms: r.ttl_ms,
                ..NewAction::sent(&r.action, &targets, r.devices, r.by)
            })
            .await?;
        tracing::info!(action = row.id, what = %r.action, by = r.by, routers = r.devices.len(), "action");
        self.publish(&row).await?;
        Ok(self.store.action(row.id).await?.unwrap_or(row))
    }

    /// Publishes a stored action's commands to their routers.
    pub async fn publish(&self, row: &ActionRow) -> Result<(), StoreError> {
        for c in &row.commands {
            let Ok(device) = DeviceId::new(&c.device_id) else { continue };
            self.commander.publish(&device, c).await?;
        }
        Ok(())
    }

    /// Takes `original` (a sent block or ban) back on the routers it went
    /// to, as `by`; `None` if its action has no undo.
    pub async fn undo(&self, original: &ActionRow, by: &str, comment: &str) -> Result<Option<ActionRow>, StoreError> {
        let Some(back) = original.action()?.undo() else { return Ok(None) };
        let mut devices: Vec<String> = original.commands.iter().map(|c| c.device_id.clone()).collect();
        devices.sort();
        devices.dedup();
        let targets = Targets { devices: Some(devices.clone()), ..Targets::default() };
        let request = Request {
            action: back,
            targets: &targets,
            devices: &devices,
            by,
            comment: Some(comment),
            undo_of: Some(original.id),
            ttl_ms: crate::command::DEFAULT_TTL_MS,
        };
        self.act(request).await.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_named_and_checked_as_the_edge_would() {
        let ok = parse_action("block_ip", &serde_json::json!({"net": "198.51.100.0/24", "timeout_s": 600})).unwrap();
        assert_eq!(ok, Action::BlockIp { net: "198.51.100.0/24".parse().unwrap(), timeout_s: 600 });
        assert_eq!(parse_action("wifi_reload", &serde_json::Value::Null).unwrap(), Action::ReloadWifi);
        let reason = |name: &str, p: serde_json::Value| {
            let e = parse_action(name, &p).unwrap_err();
            format!("{}: {}", e[0].path, e[0].reason)
        };
        assert!(reason("block_ipp", serde_json::json!({}))
            .starts_with("action: unknown action \"block_ipp\"; known: block_ip,"));
        assert!(
            reason("block_ip", serde_json::json!({"net": "10.0.0.0/8", "timeout_s": 60})).contains("wider than a /16")
        );
        assert!(reason("block_ip", serde_json::json!({"net": "1.2.3.4; reboot", "timeout_s": 60}))
            .contains("not an IP address"));
        assert!(reason("block_ip", serde_json::json!({"net": "198.51.100.7"})).contains("missing field `timeout_s`"));
        assert!(reason("block_ip", serde_json::json!({"net": "198.51.100.7", "timeout_s": 9, "x": 1}))
            .contains("unknown field `x`"));
        assert!(reason("ban_wifi_client", serde_json::json!({"mac": "ff:ff:ff:ff:ff:ff", "ban_s": 60}))
            .contains("not one station's address"));
        assert!(reason("restart_service", serde_json::json!({"service": "../sh"})).contains("not a service name"));
        assert_eq!(reason("wifi_reload", serde_json::json!({"x": 1})), "params: wifi_reload takes no parameters");
    }
}
