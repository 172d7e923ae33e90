//! Named documents an administrator writes and the hub seeds from `config/`:
//! correlation rules (`rules`) and playbooks (`playbooks`). One table shape
//! for both: the document as JSON, an on/off switch, a deleted mark (so that
//! seeding never brings back what someone deleted), who changed it and when.

use super::{Store, StoreError};

/// The tables of named documents; SQL is built only from these names.
#[derive(Clone, Copy, Debug)]
pub(super) enum Table {
    Rules,
    Playbooks,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Rules => "rules",
            Table::Playbooks => "playbooks",
        }
    }
}

/// A stored document: its JSON, whether it is on, who changed it and when.
pub(super) type Stored = (String, super::Flag, String, i64);

impl Store {
    /// Every document of `t` (not deleted), by name.
    pub(super) async fn documents(&self, t: Table) -> Result<Vec<Stored>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT spec, enabled, updated_by, updated_ms FROM {} WHERE deleted = 0 ORDER BY name",
            t.name()
        ))
        .fetch_all(self.pool())
        .await?)
    }

    /// One document of `t`.
    pub(super) async fn document(&self, t: Table, name: &str) -> Result<Option<Stored>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT spec, enabled, updated_by, updated_ms FROM {} WHERE name = $1 AND deleted = 0",
            t.name()
        ))
        .bind(name)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Creates or replaces a document; `true` if it is new.
    pub(super) async fn put_document(
        &self,
        t: Table,
        name: &str,
        json: String,
        enabled: bool,
        by: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let existed: Option<i64> =
            sqlx::query_scalar(&format!("SELECT 1 FROM {} WHERE name = $1 AND deleted = 0", t.name()))
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query(&format!(
            "INSERT INTO {} (name, spec, enabled, deleted, updated_by, updated_ms) VALUES ($1, $2, $3, 0, $4, $5)
             ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, enabled = excluded.enabled, deleted = 0,
                updated_by = excluded.updated_by, updated_ms = excluded.updated_ms",
            t.name()
        ))
        .bind(name)
        .bind(json)
        .bind(i64::from(enabled))
        .bind(by)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(existed.is_none())
    }

    /// Turns a document on or off; `false` if there is none of that name.
    pub(super) async fn set_document_enabled(
        &self,
        t: Table,
        name: &str,
        enabled: bool,
        by: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(&format!(
            "UPDATE {} SET enabled = $1, updated_by = $2, updated_ms = $3 WHERE name = $4 AND deleted = 0",
            t.name()
        ))
        .bind(i64::from(enabled))
        .bind(by)
        .bind(now_ms)
        .bind(name)
        .execute(self.writer())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Deletes a document; its row stays, marked, so that seeding does not
    /// bring a shipped one back. `false` if there is none of that name.
    pub(super) async fn delete_document(
        &self,
        t: Table,
        name: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(&format!(
            "UPDATE {} SET deleted = 1, updated_by = $1, updated_ms = $2 WHERE name = $3 AND deleted = 0",
            t.name()
        ))
        .bind(by)
        .bind(now_ms)
        .bind(name)
        .execute(self.writer())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Adds a shipped document unless its name was ever stored (changed or
    /// deleted ones are left as they are); `true` if added.
    pub(super) async fn seed_document(
        &self,
        t: Table,
        name: &str,
        json: String,
        enabled: bool,
        source: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(&format!(
            "INSERT INTO {} (name, spec, enabled, deleted, updated_by, updated_ms) VALUES ($1, $2, $3, 0, $4, $5)
             ON CONFLICT (name) DO NOTHING",
            t.name()
        ))
        .bind(name)
        .bind(json)
        .bind(i64::from(enabled))
        .bind(format!("seed:{source}"))
        .bind(now_ms)
        .execute(self.writer())
        .await?
        .rows_affected();
        Ok(n == 1)
    }
}
