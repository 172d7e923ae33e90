//! The `device_ssh` table: routers the hub reaches over SSH (no OPMAS
//! agent), with the host key pinned at enrolment, and the commands waiting
//! for them.

use serde::Serialize;

use super::commands::{CommandRow, COLUMNS as COMMAND_COLUMNS};
use super::{Store, StoreError};

/// How the hub reaches a router over SSH.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SshTarget {
    pub device_id: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The router's host key as pinned at enrolment (an OpenSSH public-key
    /// line); a router that offers another is refused.
    pub host_key: String,
    /// The services `restart_service` may restart there.
    pub services: Vec<String>,
    pub enrolled_ms: i64,
}

type Row = (String, String, i64, String, String, String, i64);
const COLUMNS: &str = "device_id, host, port, \"user\", host_key, services, enrolled_ms";

fn target(r: Row) -> Result<SshTarget, StoreError> {
    let (device_id, host, port, user, host_key, services, enrolled_ms) = r;
    let services = serde_json::from_str(&services)
        .map_err(|e| StoreError::Invalid(format!("device {device_id}: stored SSH services unreadable: {e}")))?;
    let port = u16::try_from(port).map_err(|_| StoreError::Invalid(format!("device {device_id}: SSH port {port}")))?;
    Ok(SshTarget { device_id, host, port, user, host_key, services, enrolled_ms })
}

impl Store {
    /// Enrols `t.device_id` as a router reached over SSH: the device (with
    /// `secret_hex`, which no router ever holds) and how to reach it, in one
    /// transaction.
    pub async fn insert_ssh_device(&self, t: &SshTarget, secret_hex: &str) -> Result<(), StoreError> {
        let mut tx = self.writer().begin().await?;
        super::devices::insert(&mut tx, &t.device_id, &t.device_id, secret_hex, t.enrolled_ms).await?;
        let services = serde_json::to_string(&t.services).map_err(|e| StoreError::Invalid(e.to_string()))?;
        sqlx::query(&format!("INSERT INTO device_ssh ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"))
            .bind(&t.device_id)
            .bind(&t.host)
            .bind(i64::from(t.port))
            .bind(&t.user)
            .bind(&t.host_key)
            .bind(services)
            .bind(t.enrolled_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// How to reach `device` over SSH; `None` for a router with an agent.
    pub async fn ssh_target(&self, device: &str) -> Result<Option<SshTarget>, StoreError> {
        let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM device_ssh WHERE device_id = $1"))
            .bind(device)
            .fetch_optional(self.pool())
            .await?;
        row.map(target).transpose()
    }

    /// Every router reached over SSH.
    pub async fn ssh_targets(&self) -> Result<Vec<SshTarget>, StoreError> {
        let rows: Vec<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM device_ssh ORDER BY device_id"))
            .fetch_all(self.pool())
            .await?;
        rows.into_iter().map(target).collect()
    }

    /// The blocks, unblocks, bans and unbans `device` carried out since
    /// `since_ms`, oldest first: what is in force there follows from them.
    pub async fn ssh_remedies_done(&self, device: &str, since_ms: i64) -> Result<Vec<CommandRow>, StoreError> {
        let sql = format!(
            "SELECT {COMMAND_COLUMNS} FROM commands
              WHERE device_id = $1 AND state = 'done' AND created_ms >= $2
                AND (action LIKE '{{\"BlockIp\":%' OR action LIKE '{{\"UnblockIp\":%'
                  OR action LIKE '{{\"BanClient\":%' OR action LIKE '{{\"UnbanClient\":%')
              ORDER BY id"
        );
        Ok(sqlx::query_as::<_, CommandRow>(&sql).bind(device).bind(since_ms).fetch_all(self.pool()).await?)
    }

    /// The pending, unexpired commands of routers reached over SSH, oldest
    /// first.
    pub async fn ssh_pending_commands(&self, now_ms: i64) -> Result<Vec<CommandRow>, StoreError> {
        let sql = format!(
            "SELECT {COMMAND_COLUMNS} FROM commands
              WHERE state = 'pending' AND expires_ms > $1
                AND device_id IN (SELECT device_id FROM device_ssh)
              ORDER BY id"
        );
        Ok(sqlx::query_as::<_, CommandRow>(&sql).bind(now_ms).fetch_all(self.pool()).await?)
    }
}
