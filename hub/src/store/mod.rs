//! Storage: the hub's database behind one [`Store`] handle.
//!
//! SQLite in WAL mode through sqlx; the migrations under
//! `migrations/sqlite` are embedded in the binary and applied at open. Queries
//! live beside the entity they serve ([`devices`], [`findings`], [`tokens`]);
//! nothing outside this module writes SQL or sees a connection, a
//! transaction or any other SQLite type: callers use domain operations
//! ([`Store::apply_uplink`], [`Store::rekey_device`], ...), so that a
//! PostgreSQL store can sit beside this one.
//!
//! One writer: every write goes through a pool of one connection, and write
//! transactions start with `BEGIN IMMEDIATE`. SQLite allows one writer at a
//! time anyway; queueing the hub's writers in-process (ingest, the presence
//! sweep, enrolment) instead of letting them race for the file lock is what
//! keeps "database is locked" away under load, and `IMMEDIATE` takes the
//! lock up front so that a transaction never fails half-way when another
//! process (`opmas-hub device add`) writes at the same time; the busy
//! timeout covers that wait. Readers (the API) use their own pool and, in WAL
//! mode, never wait for the writer.

pub mod actions;
pub mod alerts;
pub mod archive;
pub mod commands;
pub mod config;
pub mod delivery;
pub mod devices;
mod documents;
pub mod findings;
pub mod fleet;
pub mod heartbeats;
pub mod incidents;
pub mod lifecycle;
pub mod playbooks;
pub mod rules;
pub mod sessions;
pub mod ssh;
pub mod tokens;
pub mod uplink;
pub mod users;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

pub use devices::{DeviceRow, StatusChange};
pub use findings::{FindingQuery, FindingRow};

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("device {0:?} is already enrolled")]
    DeviceExists(String),
    #[error("no device {0:?}")]
    NoDevice(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("creating {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("user {0:?} already exists")]
    UserExists(String),
    #[error("no user {0:?}")]
    NoUser(String),
    /// A value that is not acceptable, with the reason.
    #[error("{0}")]
    Invalid(String),
    #[error("hashing a password: {0}")]
    Password(String),
}

impl StoreError {
    /// True if the database refused a row for its content (a constraint, a
    /// trigger, a value of the wrong type or size), as opposed to failing
    /// itself (I/O, disk full, locked). Retrying such a row fails again;
    /// retrying after a failure of the database may succeed.
    pub fn is_row_error(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::Database(e)) => {
                // SQLite's extended code; its low byte is the primary code:
                // 18 TOOBIG, 19 CONSTRAINT, 20 MISMATCH.
                let code = e.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0);
                matches!(code & 0xff, 18..=20)
            }
            StoreError::Db(sqlx::Error::Encode(_)) => true,
            _ => false,
        }
    }
}

/// A cloneable handle on the hub database.
#[derive(Clone, Debug)]
pub struct Store {
    /// Readers.
    pool: SqlitePool,
    /// The one writer connection.
    writer: SqlitePool,
}

/// A write transaction on the one writer connection.
pub(crate) type WriteTx = sqlx::Transaction<'static, sqlx::Sqlite>;

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and migrates it.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir)?;
        }
        let opts = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable across process crashes in WAL mode; only an OS
            // crash can lose the last transactions, which the edge then resends.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // Never recycle the writer: its prepared statements are the hot path.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("../migrations/sqlite").run(&writer).await?;
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(opts.read_only(true)).await?;
        Ok(Store { pool, writer })
    }

    /// The readers' pool.
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The writer, for single write statements.
    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// Starts a write transaction (`BEGIN IMMEDIATE`) on the writer; waits
    /// for the writer if another write holds it.
    pub(crate) async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Cheap liveness check for `/health`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// Creates `dir` (and parents) readable by the owner only: it holds the
/// device secrets and the admin token.
pub fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StoreError::Io { path: dir.display().to_string(), source })
}

/// Current time in unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
pub(crate) async fn test_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("opmas.db")).await.unwrap();
    (store, dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan SQLite picks for `sql`, one line per step.
    async fn plan(store: &Store, sql: &str) -> String {
        let rows: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(&format!("EXPLAIN QUERY PLAN {sql}")).fetch_all(store.writer()).await.unwrap();
        rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n")
    }

    #[tokio::test]
    async fn every_ingest_statement_uses_an_index() {
        let (store, _dir) = test_store().await;
        let update = findings::update_sql(4);
        let cases = [
            (update.as_str(), "findings_by_identity (device_id=? AND epoch=? AND identity=?)"),
            (delivery::LOAD_SQL, "PRIMARY KEY"),
            (devices::SWEEP_SQL, "devices_by_presence"),
            (devices::STALE_SQL, "devices_by_presence"),
            ("UPDATE devices SET last_seen_ms = ? WHERE id = ?", "sqlite_autoindex_devices_1 (id=?)"),
            ("INSERT INTO finding_updates (device_id, epoch, seq, finding_id, count, last_ms, received_ms)
              VALUES ('d', 1, 1, 1, 1, 1, 1) ON CONFLICT (device_id, epoch, seq) DO NOTHING", ""),
            ("INSERT INTO findings (device_id, epoch, seq, agent, kind, severity, count, first_ms, last_ms,
                                    summary, evidence, received_ms) VALUES ('d', 1, 1, 'a', 'k', 1, 1, 1, 1, 's', '[]', 1)
              ON CONFLICT (device_id, epoch, seq) DO NOTHING", ""),
            ("SELECT id FROM findings WHERE device_id = ? ORDER BY id DESC LIMIT 10", "findings_by_device"),
            ("SELECT id FROM findings WHERE kind = ? ORDER BY id DESC LIMIT 10", "findings_by_kind"),
            ("SELECT uptime_s FROM heartbeats WHERE device_id = ? ORDER BY received_ms DESC LIMIT 1", "heartbeats_by_device"),
            ("DELETE FROM heartbeats WHERE received_ms < ?", "heartbeats_by_time"),
            ("DELETE FROM device_agents WHERE device_id = ?", "PRIMARY KEY"),
        ];
        for (sql, index) in cases {
            let p = plan(&store, sql).await;
            assert!(p.contains(index), "{sql}\nplan:\n{p}\nwanted {index}");
            assert!(
                !p.lines()
                    .any(|l| ["SCAN findings", "SCAN devices", "SCAN heartbeats"].iter().any(|s| l.starts_with(s))),
                "{sql}\nscans a table:\n{p}"
            );
        }
    }
}
