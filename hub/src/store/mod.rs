//! Storage: the hub's database behind one [`Store`] handle.
//!
//! SQLite in WAL mode (the default) or PostgreSQL (several hub replicas),
//! through sqlx's `Any` driver so that one statement serves both: SQL here
//! is written in their common dialect, with numbered placeholders (`$1`),
//! 0/1 integers for flags ([`Flag`]) and `BIGINT`-sized integers, and the
//! few differences go through [`Dialect`]. The migrations under
//! `migrations/sqlite` and `migrations/postgres` (the same schema in each
//! dialect) are embedded in the binary and applied at open. Queries
//! live beside the entity they serve ([`devices`], [`findings`], [`tokens`]);
//! nothing outside this module writes SQL or sees a connection, a
//! transaction or any other database type: callers use domain operations
//! ([`Store::apply_uplink`], [`Store::rekey_device`], ...).
//!
//! On PostgreSQL every write transaction first takes one advisory lock
//! ([`Store::begin_write`]), so that the writes of all hub replicas run one
//! at a time, as SQLite's do, and findings commit in id order.
//!
//! One writer (SQLite): every write goes through a pool of one connection, and write
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
pub mod retention;
pub mod rules;
pub mod sessions;
pub mod ssh;
pub mod tokens;
pub mod uplink;
pub mod users;

use std::fmt::Write as _;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyArguments, AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Any, AnyPool, Arguments, ConnectOptions, Executor};

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
    /// A database URL this hub cannot use.
    #[error("database URL {0:?}: use a file path, sqlite://PATH or postgres://USER@HOST/DB")]
    Url(String),
}

impl StoreError {
    /// True if the database refused a row for its content (a constraint, a
    /// trigger, a value of the wrong type or size), as opposed to failing
    /// itself (I/O, disk full, locked). Retrying such a row fails again;
    /// retrying after a failure of the database may succeed.
    pub fn is_row_error(&self) -> bool {
        match self {
            StoreError::Db(sqlx::Error::Database(e)) => {
                let code = e.code().unwrap_or_default();
                if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    // SQLite's extended code; its low byte is the primary code:
                    // 18 TOOBIG, 19 CONSTRAINT, 20 MISMATCH.
                    matches!(code.parse::<i32>().unwrap_or(0) & 0xff, 18..=20)
                } else {
                    // A PostgreSQL SQLSTATE: class 22 data exception, 23
                    // integrity constraint violation.
                    code.starts_with("22") || code.starts_with("23")
                }
            }
            StoreError::Db(sqlx::Error::Encode(_)) => true,
            _ => false,
        }
    }
}

/// Which database a [`Store`] is on, for the few statements that differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The dialect of a connection, for the steps of a transaction.
    pub(crate) fn of(conn: &Conn) -> Dialect {
        if conn.backend_name() == "PostgreSQL" {
            Dialect::Postgres
        } else {
            Dialect::Sqlite
        }
    }

    /// The placeholder of the `n`th argument (from 1), for statements
    /// written at run time whose arguments are bound in order: `?` on
    /// SQLite, `$n` on PostgreSQL. SQLite keeps numbered parameters in a
    /// list it searches on every bind, so a statement of thousands of `$n`
    /// costs time in their square (it was a tenth of the hub's CPU under a
    /// burst); anonymous `?` are not listed.
    pub(crate) fn param(self, n: usize) -> Param {
        Param(self, n)
    }

    /// The larger of two values (SQLite's two-argument `MAX`).
    pub(crate) fn greatest(self) -> &'static str {
        match self {
            Dialect::Sqlite => "MAX",
            Dialect::Postgres => "GREATEST",
        }
    }

    /// The smaller of two values (SQLite's two-argument `MIN`).
    pub(crate) fn least(self) -> &'static str {
        match self {
            Dialect::Sqlite => "MIN",
            Dialect::Postgres => "LEAST",
        }
    }

    /// A table of the strings of a JSON array of text, as a `FROM` item
    /// with one column, `value`.
    pub(crate) fn json_strings(self, array: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_each({array})"),
            Dialect::Postgres => format!("json_array_elements_text(({array})::json) AS j(value)"),
        }
    }

    /// An aggregate making a JSON array (text) of `value`.
    pub(crate) fn json_agg(self, value: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_group_array({value})"),
            Dialect::Postgres => format!("COALESCE(json_agg({value})::text, '[]')"),
        }
    }
}

/// A cloneable handle on the hub database.
#[derive(Clone, Debug)]
pub struct Store {
    /// Readers.
    pool: AnyPool,
    /// The writers: one connection on SQLite.
    writer: AnyPool,
    dialect: Dialect,
}

/// A write transaction on a writer connection.
pub(crate) type WriteTx = sqlx::Transaction<'static, Any>;
/// A connection, for the steps of a transaction.
pub(crate) type Conn = sqlx::AnyConnection;

/// Connections a PostgreSQL hub keeps for its writers. One, as on SQLite:
/// a few read-then-write steps (the next sequence of a lifecycle finding,
/// the correlator's cursor) rely on one hub's writes not interleaving; the
/// duties where replicas could collide are for one leader (doc/scale-out.md).
const PG_WRITERS: u32 = 1;

impl Store {
    /// Opens the database at `url` and migrates it: `postgres://...` for
    /// PostgreSQL, anything else (`sqlite://PATH` or a plain path) for a
    /// SQLite file, created if missing.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Store::open_postgres(url).await;
        }
        if let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            return Store::open_sqlite(Path::new(rest)).await;
        }
        if url.contains("://") {
            return Err(StoreError::Url(url.to_owned()));
        }
        Store::open_sqlite(Path::new(url)).await
    }

    /// Opens (creating if needed) the SQLite database at `path` and migrates it.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir)?;
        }
        let file = SqliteConnectOptions::from_str("sqlite:")?.filename(path);
        let rw = AnyConnectOptions::from_url(&file.clone().create_if_missing(true).to_url_lossy())?;
        let ro = AnyConnectOptions::from_url(&file.read_only(true).to_url_lossy())?;
        // Each connection's settings (the URL cannot carry them): NORMAL is
        // durable across process crashes in WAL mode; only an OS crash can
        // lose the last transactions, which the edge then resends.
        const PRAGMAS: &str = "PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;";
        let writer = AnyPoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // Never recycle the writer: its prepared statements are the hot path.
            .idle_timeout(None)
            .max_lifetime(None)
            .after_connect(|c, _| {
                Box::pin(async move {
                    c.execute("PRAGMA journal_mode = WAL;").await?;
                    c.execute(PRAGMAS).await.map(drop)
                })
            })
            .connect_with(rw)
            .await?;
        sqlx::migrate!("../migrations/sqlite").run(&writer).await?;
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .after_connect(|c, _| Box::pin(async move { c.execute(PRAGMAS).await.map(drop) }))
            .connect_with(ro)
            .await?;
        Ok(Store { pool, writer, dialect: Dialect::Sqlite })
    }

    /// Connects to PostgreSQL at `url` and migrates the database (several
    /// hubs may start at once: sqlx's migrator takes an advisory lock).
    pub async fn open_postgres(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let opts = AnyConnectOptions::from_str(url)?;
        let writer = AnyPoolOptions::new()
            .max_connections(PG_WRITERS)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("../migrations/postgres").run(&writer).await?;
        let pool = AnyPoolOptions::new().max_connections(8).connect_with(opts).await?;
        Ok(Store { pool, writer, dialect: Dialect::Postgres })
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The readers' pool.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The writer, for single write statements.
    pub(crate) fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// Starts a write transaction; on SQLite `BEGIN IMMEDIATE` on the one
    /// writer, waiting for it if another write holds it. On PostgreSQL the
    /// transaction first takes [`WRITE_LOCK`], so that the write
    /// transactions of all hub replicas run one at a time as SQLite's do:
    /// findings then commit in id order, which the cursors of the
    /// correlator and the playbook runner rely on (a finding committed
    /// after a higher id was read would be skipped), and read-then-write
    /// steps (the next sequence of a lifecycle finding) never interleave.
    pub(crate) async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        Ok(match self.dialect {
            Dialect::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => {
                let mut tx = self.writer.begin().await?;
                // The lock function returns `void`, which the Any driver cannot read.
                sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS l")
                    .bind(WRITE_LOCK)
                    .execute(&mut *tx)
                    .await?;
                tx
            }
        })
    }

    /// A connection of its own for holding the leader lock (see
    /// [`crate::leader`]); `None` on SQLite, where one hub is the only one.
    pub async fn leader_connection(&self) -> Result<Option<LeaderConnection>, StoreError> {
        match self.dialect {
            Dialect::Sqlite => Ok(None),
            Dialect::Postgres => Ok(Some(LeaderConnection(self.pool.acquire().await?.detach()))),
        }
    }

    /// Cheap liveness check for `/health`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// The PostgreSQL advisory lock every write transaction takes.
const WRITE_LOCK: i64 = 0x6f_706d_6173_0001;
/// The PostgreSQL advisory lock the leader holds for as long as it leads.
const LEADER_LOCK: i64 = 0x6f_706d_6173_0002;

/// A PostgreSQL session that may hold the leader lock; the lock goes with
/// the session, so a leader that dies (or loses its connection) lets
/// another take over at once.
pub struct LeaderConnection(sqlx::AnyConnection);

impl LeaderConnection {
    /// Takes the leader lock if no other session holds it; true if this
    /// session holds it now.
    pub async fn try_lead(&mut self) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(LEADER_LOCK).fetch_one(&mut self.0).await?)
    }

    /// Checks that the session (and so the lock) is still there.
    pub async fn ping(&mut self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&mut self.0).await?;
        Ok(())
    }
}

impl std::fmt::Debug for LeaderConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeaderConnection")
    }
}

/// A placeholder, written by [`Dialect::param`].
pub(crate) struct Param(Dialect, usize);

impl std::fmt::Display for Param {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Dialect::Sqlite => f.write_str("?"),
            Dialect::Postgres => write!(f, "${}", self.1),
        }
    }
}

/// A statement put together at run time, its placeholders in the
/// database's own style ([`Dialect::param`]); sqlx's `QueryBuilder<Any>`
/// always writes `?`, which PostgreSQL does not read.
pub(crate) struct Sql<'a> {
    dialect: Dialect,
    sql: String,
    args: AnyArguments<'a>,
    error: Option<sqlx::error::BoxDynError>,
}

impl<'a> Sql<'a> {
    pub(crate) fn new(dialect: Dialect, init: impl Into<String>) -> Self {
        Sql { dialect, sql: init.into(), args: AnyArguments::default(), error: None }
    }

    /// Appends SQL text.
    pub(crate) fn push(&mut self, text: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.sql, "{text}");
        self
    }

    /// Appends a placeholder bound to `value`.
    pub(crate) fn push_bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'a + sqlx::Encode<'a, Any> + sqlx::Type<Any>,
    {
        if let Err(e) = self.args.add(value) {
            self.error.get_or_insert(e);
        }
        let _ = write!(self.sql, "{}", self.dialect.param(self.args.len()));
        self
    }

    /// Appends `v1, v2, ...` as placeholders (for `IN (...)`).
    pub(crate) fn push_list<T>(&mut self, values: impl IntoIterator<Item = T>) -> &mut Self
    where
        T: 'a + sqlx::Encode<'a, Any> + sqlx::Type<Any>,
    {
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.push_bind(v);
        }
        self
    }

    /// Appends `VALUES (...), (...)`, one tuple per item; `row` binds an
    /// item's values with [`Tuple::bind`].
    pub(crate) fn push_values<I: IntoIterator>(
        &mut self,
        items: I,
        mut row: impl FnMut(&mut Tuple<'_, 'a>, I::Item),
    ) -> &mut Self {
        self.sql.push_str("VALUES ");
        for (i, item) in items.into_iter().enumerate() {
            self.sql.push_str(if i == 0 { "(" } else { ", (" });
            row(&mut Tuple { sql: self, first: true }, item);
            self.sql.push(')');
        }
        self
    }

    /// The statement and its arguments, or the first value that could not be bound.
    pub(crate) fn finish(self) -> Result<(String, AnyArguments<'a>), StoreError> {
        match self.error {
            Some(e) => Err(StoreError::Db(sqlx::Error::Encode(e))),
            None => Ok((self.sql, self.args)),
        }
    }
}

/// One tuple of [`Sql::push_values`].
pub(crate) struct Tuple<'s, 'a> {
    sql: &'s mut Sql<'a>,
    first: bool,
}

impl<'a> Tuple<'_, 'a> {
    pub(crate) fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'a + sqlx::Encode<'a, Any> + sqlx::Type<Any>,
    {
        if !std::mem::take(&mut self.first) {
            self.sql.sql.push_str(", ");
        }
        self.sql.push_bind(value);
        self
    }
}

/// A 0/1 flag column read as a `bool`: SQLite has no boolean type, and the
/// PostgreSQL schema keeps the same integers so that one statement serves both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Flag(pub bool);

impl From<Flag> for bool {
    fn from(f: Flag) -> bool {
        f.0
    }
}

impl sqlx::Type<Any> for Flag {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <i64 as sqlx::Type<Any>>::type_info()
    }

    fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
        <i64 as sqlx::Type<Any>>::compatible(ty) || <bool as sqlx::Type<Any>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Any> for Flag {
    fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(Flag(<i64 as sqlx::Decode<'r, Any>>::decode(value)? != 0))
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

/// A fresh store for a test: a SQLite file in a temporary directory, or,
/// when `OPMAS_TEST_POSTGRES` names a PostgreSQL server's URL (as
/// `scripts/test` sets it for its second pass), a new database there.
#[cfg(test)]
pub(crate) async fn test_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = match std::env::var("OPMAS_TEST_POSTGRES") {
        Ok(server) => Store::open_postgres(&test_database(&server).await).await.unwrap(),
        Err(_) => Store::open_sqlite(&dir.path().join("opmas.db")).await.unwrap(),
    };
    (store, dir)
}

/// Makes the database refuse every finding from `src_ip`, as a test's
/// stand-in for a row the database cannot take.
#[cfg(test)]
pub(crate) async fn refuse_findings_from(store: &Store, src_ip: &str) {
    let sql = match store.dialect() {
        Dialect::Sqlite => format!(
            "CREATE TRIGGER poison BEFORE INSERT ON findings WHEN NEW.src_ip = '{src_ip}'
             BEGIN SELECT RAISE(ABORT, 'poisoned row'); END"
        ),
        Dialect::Postgres => {
            format!("ALTER TABLE findings ADD CONSTRAINT poison CHECK (src_ip IS DISTINCT FROM '{src_ip}')")
        }
    };
    store.writer().execute(sql.as_str()).await.unwrap();
}

/// Creates a database of its own for one test on the PostgreSQL server at
/// `server` (a URL ending in `/DATABASE`) and returns its URL.
#[cfg(test)]
pub(crate) async fn test_database(server: &str) -> String {
    use sqlx::Connection;
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    sqlx::any::install_default_drivers();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let name = format!("opmas_test_{}_{n}_{nanos}", std::process::id());
    let mut admin = sqlx::AnyConnection::connect(server).await.unwrap();
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
    admin.close().await.unwrap();
    let (base, _) = server.rsplit_once('/').expect("a PostgreSQL URL ends in /DATABASE");
    format!("{base}/{name}")
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
        if store.dialect() != Dialect::Sqlite {
            return; // SQLite's planner; PostgreSQL's is measured in doc/scale-out.md.
        }
        let update = findings::update_sql(Dialect::Sqlite, 4);
        let cases = [
            (update.as_str(), "findings_by_identity (device_id=? AND epoch=? AND identity=?)"),
            (delivery::LOAD_SQL, "PRIMARY KEY"),
            (devices::SWEEP_SQL, "devices_by_presence"),
            (devices::STALE_SQL, "devices_by_presence"),
            ("UPDATE devices SET last_seen_ms = $1 WHERE id = $2", "sqlite_autoindex_devices_1 (id=?)"),
            ("INSERT INTO finding_updates (device_id, epoch, seq, finding_id, count, last_ms, received_ms)
              VALUES ('d', 1, 1, 1, 1, 1, 1) ON CONFLICT (device_id, epoch, seq) DO NOTHING", ""),
            ("INSERT INTO findings (device_id, epoch, seq, agent, kind, severity, count, first_ms, last_ms,
                                    summary, evidence, received_ms) VALUES ('d', 1, 1, 'a', 'k', 1, 1, 1, 1, 's', '[]', 1)
              ON CONFLICT (device_id, epoch, seq) DO NOTHING", ""),
            ("SELECT id FROM findings WHERE device_id = $1 ORDER BY id DESC LIMIT 10", "findings_by_device"),
            ("SELECT id FROM findings WHERE kind = $1 ORDER BY id DESC LIMIT 10", "findings_by_kind"),
            ("SELECT uptime_s FROM heartbeats WHERE device_id = $1 ORDER BY received_ms DESC LIMIT 1", "heartbeats_by_device"),
            ("DELETE FROM heartbeats WHERE received_ms < $1", "heartbeats_by_time"),
            ("DELETE FROM device_agents WHERE device_id = $1", "PRIMARY KEY"),
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
