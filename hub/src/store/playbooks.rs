//! The `playbooks` table: playbooks as written, with who changed them
//! (stored like rules, `store::documents`).

use serde::Serialize;

use super::documents::Table;
use super::{Store, StoreError};
use crate::act::playbook::PlaybookSpec;

/// A stored playbook.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PlaybookRow {
    pub spec: PlaybookSpec,
    pub updated_by: String,
    pub updated_ms: i64,
}

fn row((spec, enabled, by, ms): super::documents::Stored) -> Option<PlaybookRow> {
    let mut spec: PlaybookSpec = serde_json::from_str(&spec).ok()?;
    spec.enabled = enabled.0;
    Some(PlaybookRow { spec, updated_by: by, updated_ms: ms })
}

impl Store {
    /// Every playbook (not deleted), by name.
    pub async fn playbooks(&self) -> Result<Vec<PlaybookRow>, StoreError> {
        Ok(self.documents(Table::Playbooks).await?.into_iter().filter_map(row).collect())
    }

    pub async fn playbook(&self, name: &str) -> Result<Option<PlaybookRow>, StoreError> {
        Ok(self.document(Table::Playbooks, name).await?.and_then(row))
    }

    /// Creates or replaces a playbook (check it first); `true` if it is new.
    pub async fn put_playbook(&self, spec: &PlaybookSpec, by: &str, now_ms: i64) -> Result<bool, StoreError> {
        let json = serde_json::to_string(spec).unwrap_or_default();
        self.put_document(Table::Playbooks, &spec.name, json, spec.enabled, by, now_ms).await
    }

    pub async fn set_playbook_enabled(&self, name: &str, on: bool, by: &str, now_ms: i64) -> Result<bool, StoreError> {
        self.set_document_enabled(Table::Playbooks, name, on, by, now_ms).await
    }

    pub async fn delete_playbook(&self, name: &str, by: &str, now_ms: i64) -> Result<bool, StoreError> {
        self.delete_document(Table::Playbooks, name, by, now_ms).await
    }

    /// Adds a shipped playbook unless its name was ever stored.
    pub async fn seed_playbook(&self, spec: &PlaybookSpec, source: &str, now_ms: i64) -> Result<bool, StoreError> {
        let json = serde_json::to_string(spec).unwrap_or_default();
        self.seed_document(Table::Playbooks, &spec.name, json, spec.enabled, source, now_ms).await
    }
}
