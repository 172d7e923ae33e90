//! The `rules` table: correlation rules as written, with who changed them.

use serde::Serialize;

use super::documents::Table;
use super::{Store, StoreError};
use crate::correlate::rule::RuleSpec;

/// A stored rule.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RuleRow {
    pub spec: RuleSpec,
    pub updated_by: String,
    pub updated_ms: i64,
}

fn row((spec, enabled, by, ms): super::documents::Stored) -> Option<RuleRow> {
    let mut spec: RuleSpec = serde_json::from_str(&spec).ok()?;
    spec.enabled = enabled.0;
    Some(RuleRow { spec, updated_by: by, updated_ms: ms })
}

impl Store {
    /// Every rule (not deleted), by name.
    pub async fn rules(&self) -> Result<Vec<RuleRow>, StoreError> {
        Ok(self.documents(Table::Rules).await?.into_iter().filter_map(row).collect())
    }

    /// One rule.
    pub async fn rule(&self, name: &str) -> Result<Option<RuleRow>, StoreError> {
        Ok(self.document(Table::Rules, name).await?.and_then(row))
    }

    /// Creates or replaces a rule (check it first); `true` if it is new.
    pub async fn put_rule(&self, spec: &RuleSpec, by: &str, now_ms: i64) -> Result<bool, StoreError> {
        let json = serde_json::to_string(spec).unwrap_or_default();
        self.put_document(Table::Rules, &spec.name, json, spec.enabled, by, now_ms).await
    }

    /// Turns a rule on or off; `false` if there is no such rule.
    pub async fn set_rule_enabled(&self, name: &str, enabled: bool, by: &str, now_ms: i64) -> Result<bool, StoreError> {
        self.set_document_enabled(Table::Rules, name, enabled, by, now_ms).await
    }

    /// Deletes a rule; its row stays (marked) so that seeding does not
    /// bring a shipped rule back. `false` if there is no such rule.
    pub async fn delete_rule(&self, name: &str, by: &str, now_ms: i64) -> Result<bool, StoreError> {
        self.delete_document(Table::Rules, name, by, now_ms).await
    }

    /// Adds a shipped rule unless its name was ever stored (changed or
    /// deleted ones are left as they are); `true` if added.
    pub async fn seed_rule(&self, spec: &RuleSpec, source: &str, now_ms: i64) -> Result<bool, StoreError> {
        let json = serde_json::to_string(spec).unwrap_or_default();
        self.seed_document(Table::Rules, &spec.name, json, spec.enabled, source, now_ms).await
    }
}
