//! The `rules` table: correlation rules as written, with who changed them.

use serde::Serialize;

use super::{Store, StoreError};
use crate::correlate::rule::RuleSpec;

/// A stored rule.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RuleRow {
    pub spec: RuleSpec,
    pub updated_by: String,
    pub updated_ms: i64,
}

fn row((spec, enabled, by, ms): (String, bool, String, i64)) -> Option<RuleRow> {
    let mut spec: RuleSpec = serde_json::from_str(&spec).ok()?;
    spec.enabled = enabled;
    Some(RuleRow { spec, updated_by: by, updated_ms: ms })
}

impl Store {
    /// Every rule (not deleted), by name.
    pub async fn rules(&self) -> Result<Vec<RuleRow>, StoreError> {
        let rows: Vec<(String, bool, String, i64)> =
            sqlx::query_as("SELECT spec, enabled, updated_by, updated_ms FROM rules WHERE deleted = 0 ORDER BY name")
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().filter_map(row).collect())
    }

    /// One rule.
    pub async fn rule(&self, name: &str) -> Result<Option<RuleRow>, StoreError> {
        let r: Option<(String, bool, String, i64)> =
            sqlx::query_as("SELECT spec, enabled, updated_by, updated_ms FROM rules WHERE name = ? AND deleted = 0")
                .bind(name)
                .fetch_optional(self.pool())
                .await?;
        Ok(r.and_then(row))
    }

    /// Creates or replaces a rule (check it first); `true` if it is new.
    pub async fn put_rule(&self, spec: &RuleSpec, by: &str, now_ms: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let existed: Option<i64> = sqlx::query_scalar("SELECT 1 FROM rules WHERE name = ? AND deleted = 0")
            .bind(&spec.name)
            .fetch_optional(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO rules (name, spec, enabled, deleted, updated_by, updated_ms) VALUES (?, ?, ?, 0, ?, ?)
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, enabled = excluded.enabled, deleted = 0,
                updated_by = excluded.updated_by, updated_ms = excluded.updated_ms",
        )
        .bind(&spec.name)
        .bind(serde_json::to_string(spec).unwrap_or_default())
        .bind(spec.enabled)
        .bind(by)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(existed.is_none())
    }

    /// Turns a rule on or off; `false` if there is no such rule.
    pub async fn set_rule_enabled(&self, name: &str, enabled: bool, by: &str, now_ms: i64) -> Result<bool, StoreError> {
        let n =
            sqlx::query("UPDATE rules SET enabled = ?, updated_by = ?, updated_ms = ? WHERE name = ? AND deleted = 0")
                .bind(enabled)
                .bind(by)
                .bind(now_ms)
                .bind(name)
                .execute(self.writer())
                .await?
                .rows_affected();
        Ok(n == 1)
    }

    /// Deletes a rule; its row stays (marked) so that seeding does not
    /// bring a shipped rule back. `false` if there is no such rule.
    pub async fn delete_rule(&self, name: &str, by: &str, now_ms: i64) -> Result<bool, StoreError> {
        let n =
            sqlx::query("UPDATE rules SET deleted = 1, updated_by = ?, updated_ms = ? WHERE name = ? AND deleted = 0")
                .bind(by)
                .bind(now_ms)
                .bind(name)
                .execute(self.writer())
                .await?
                .rows_affected();
        Ok(n == 1)
    }

    /// Adds a shipped rule unless its name was ever stored (changed or
    /// deleted ones are left as they are); `true` if added.
    pub async fn seed_rule(&self, spec: &RuleSpec, source: &str, now_ms: i64) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "INSERT INTO rules (name, spec, enabled, deleted, updated_by, updated_ms) VALUES (?, ?, ?, 0, ?, ?)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&spec.name)
        .bind(serde_json::to_string(spec).unwrap_or_default())
        .bind(spec.enabled)
        .bind(format!("seed:{source}"))
        .bind(now_ms)
        .execute(self.writer())
        .await?
        .rows_affected();
        Ok(n == 1)
    }
}
