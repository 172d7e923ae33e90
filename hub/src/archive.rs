//! Archival and retention of findings: the database keeps the hot window
//! (`[retention] findings_days`, 30 by default); every hour the days of
//! findings older than that are written to `archive_dir`, one file per day
//! (`findings-YYYY-MM-DD.jsonl.zst`: one JSON object per finding with its
//! updates, zstd-compressed), listed in `manifest.json`, and only then
//! deleted from the database. `opmas-hub archive export|import|list` work
//! on the same files by hand.
//!
//! A day is the UTC day of the hub's time a finding was stored
//! (`received_ms`), so no finding can arrive for a day once it is over.
//! The order is: file written and synced, manifest replaced, rows deleted
//! (the ids the file holds). A crash between any two steps repeats nothing
//! and loses nothing: a day already in the manifest is not written again,
//! only its rows still in the database are deleted.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::files::replace;
use crate::store::archive::{ArchivedFinding, Imported};
use crate::store::{now_ms, Store};

/// A day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;
/// The manifest's name in the archive directory.
pub const MANIFEST: &str = "manifest.json";

/// How long things stay in the database, and where findings go after.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days of findings kept in the database (the hot window); older days
    /// go to `archive_dir`. 0 keeps everything.
    pub findings_days: u32,
    /// Where archive files go; unset: `DATA_DIR/archive`.
    pub archive_dir: Option<PathBuf>,
    /// Days a resolved incident is kept after it resolved. 0 keeps them all.
    pub incidents_days: u32,
    /// Days of the audit trail (actions and commands, configuration and
    /// presence changes, delivered notifications). 0 keeps it all.
    pub audit_days: u32,
    /// Days of heartbeat history (the charts of a router's page). At least 1.
    pub heartbeats_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            findings_days: 30,
            archive_dir: None,
            incidents_days: 180,
            audit_days: 365,
            heartbeats_days: 1,
        }
    }
}

impl RetentionConfig {
    /// How long heartbeats are kept, in milliseconds.
    pub fn heartbeats_ms(&self) -> i64 {
        i64::from(self.heartbeats_days.max(1)) * DAY_MS
    }
}

/// What one retention pass did.
#[derive(Clone, Debug, Default)]
pub struct PassReport {
    /// Days of findings written to archive files.
    pub days_archived: usize,
    /// Findings deleted after their day was archived.
    pub findings_deleted: u64,
    pub history: crate::store::retention::Pruned,
}

/// One retention pass at `now`: findings past the hot window to the archive
/// and out of the database, then old incidents and audit rows.
pub async fn pass(store: &Store, dir: &Path, cfg: &RetentionConfig, now: i64) -> Result<PassReport> {
    let (days_archived, findings_deleted) = retire(store, dir, cfg.findings_days, now).await?;
    let before = |days: u32| (days > 0).then(|| now - i64::from(days) * DAY_MS);
    let history = store.prune_history(before(cfg.incidents_days), before(cfg.audit_days)).await?;
    Ok(PassReport { days_archived, findings_deleted, history })
}

/// One archived day, as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DayEntry {
    /// `YYYY-MM-DD` (UTC), of the time findings were stored.
    pub day: String,
    pub file: String,
    pub findings: u64,
    pub first_id: i64,
    pub last_id: i64,
    pub bytes: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    pub archived_ms: i64,
}

/// `manifest.json`: the archived days, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub days: Vec<DayEntry>,
}

/// `YYYY-MM-DD` of the UTC day starting at `day_ms`.
pub fn day_name(day_ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(day_ms / 1000).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// The start (unix ms) of the UTC day `YYYY-MM-DD`.
pub fn parse_day(s: &str) -> Result<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(s, format).with_context(|| format!("{s:?} is not a date YYYY-MM-DD"))?;
    Ok(d.midnight().assume_utc().unix_timestamp() * 1000)
}

/// The file name of a day's findings.
pub fn file_name(day_ms: i64) -> String {
    format!("findings-{}.jsonl.zst", day_name(day_ms))
}

impl Manifest {
    /// The directory's manifest (none yet: empty).
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Replaces the directory's manifest (a temporary file renamed over it).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_vec_pretty(self)?;
        replace(&dir.join(MANIFEST), &text)
    }

    /// The entry of `day`, if archived.
    pub fn day(&self, day: &str) -> Option<&DayEntry> {
        self.days.iter().find(|d| d.day == day)
    }

    fn put(&mut self, entry: DayEntry) {
        self.days.retain(|d| d.day != entry.day);
        self.days.push(entry);
        self.days.sort_by(|a, b| a.day.cmp(&b.day));
    }
}

/// Writes `rows` (one day's, by id) to `dir/file_name(day_ms)`, compressed,
/// synced; returns its manifest entry. Refuses to overwrite a file.
pub fn write_day(dir: &Path, day_ms: i64, rows: &[ArchivedFinding]) -> Result<DayEntry> {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else { bail!("no findings to archive") };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = file_name(day_ms);
    let path = dir.join(&name);
    if path.exists() {
        bail!("{} exists already; move it away to write it again", path.display());
    }
    let mut enc = zstd::Encoder::new(Vec::new(), 3)?;
    for r in rows {
        serde_json::to_writer(&mut enc, r)?;
        enc.write_all(b"\n")?;
    }
    let bytes = enc.finish()?;
    replace(&path, &bytes)?;
    Ok(DayEntry {
        day: day_name(day_ms),
        file: name,
        findings: rows.len() as u64,
        first_id: first.id,
        last_id: last.id,
        bytes: bytes.len() as u64,
        sha256: hex(&Sha256::digest(&bytes)),
        archived_ms: now_ms(),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads an archive file; an error names the file and the line.
pub fn read_file(path: &Path) -> Result<Vec<ArchivedFinding>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let dec = zstd::Decoder::new(f).with_context(|| format!("{}: not zstd", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(dec).lines().enumerate() {
        let line = line.with_context(|| format!("{}: reading line {}", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).with_context(|| format!("{} line {}", path.display(), i + 1))?);
    }
    Ok(out)
}

/// Writes the days `[from_ms, to_ms)` that have findings to `dir` and lists
/// them in its manifest, leaving the database as it is (`archive export`).
/// A day already in the manifest is skipped. Returns the entries written.
pub async fn export(store: &Store, dir: &Path, from_ms: i64, to_ms: i64) -> Result<Vec<DayEntry>> {
    let mut manifest = Manifest::load(dir)?;
    let mut written = Vec::new();
    let mut day = from_ms.div_euclid(DAY_MS) * DAY_MS;
    while day < to_ms {
        if manifest.day(&day_name(day)).is_none() {
            let rows = store.findings_stored_between(day, day + DAY_MS).await?;
            if !rows.is_empty() {
                let entry = write_day(dir, day, &rows)?;
                manifest.put(entry.clone());
                manifest.save(dir)?;
                written.push(entry);
            }
        }
        day += DAY_MS;
    }
    Ok(written)
}

/// One pass of retention at `now`: every day before the hot window that
/// still has findings is archived (unless it is already) and its archived
/// rows deleted. Returns (days archived, findings deleted).
pub async fn retire(store: &Store, dir: &Path, hot_days: u32, now: i64) -> Result<(usize, u64)> {
    if hot_days == 0 {
        return Ok((0, 0));
    }
    let cutoff = (now - i64::from(hot_days) * DAY_MS).div_euclid(DAY_MS) * DAY_MS;
    let Some(oldest) = store.oldest_finding_ms().await? else { return Ok((0, 0)) };
    let written = export(store, dir, oldest, cutoff).await?;
    let manifest = Manifest::load(dir)?;
    let mut deleted = 0;
    let mut day = oldest.div_euclid(DAY_MS) * DAY_MS;
    while day < cutoff {
        if let Some(e) = manifest.day(&day_name(day)) {
            deleted += store.delete_findings_archived(day, day + DAY_MS, e.first_id, e.last_id).await?;
        }
        day += DAY_MS;
    }
    Ok((written.len(), deleted))
}

/// Imports archive files back into the database.
pub async fn import(store: &Store, files: &[PathBuf]) -> Result<Imported> {
    let mut total = Imported::default();
    for f in files {
        let rows = read_file(f)?;
        for chunk in rows.chunks(2000) {
            let n = store.import_findings(chunk).await?;
            total.findings += n.findings;
            total.present += n.present;
            total.device_gone += n.device_gone;
        }
    }
    Ok(total)
}

/// Runs retention every hour (the first pass a minute after the start).
pub async fn run(store: Store, dir: PathBuf, cfg: RetentionConfig) {
    tokio::time::sleep(Duration::from_secs(60)).await;
    loop {
        match pass(&store, &dir, &cfg, now_ms()).await {
            Ok(r) => {
                if r.days_archived > 0 || r.findings_deleted > 0 {
                    info!(days = r.days_archived, deleted = r.findings_deleted, dir = %dir.display(), "findings archived and deleted");
                }
                if r.history.total() > 0 {
                    info!(pruned = ?r.history, "old incidents and audit rows deleted");
                }
            }
            Err(e) => warn!(error = format!("{e:#}"), "retention failed; trying again in an hour"),
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn finding(store: &Store, id: &str, seq: u64, received_ms: i64) {
        use opmas_proto::msg::{Finding, FindingBatch, Severity, Stage, Subject};
        let f = Finding {
            seq,
            agent: "security".into(),
            kind: "ssh.bruteforce".into(),
            severity: Severity::HIGH,
            subject: Subject { src_ip: Some("203.0.113.9".parse().unwrap()), ..Default::default() },
            count: 5,
            first_ms: 1000 + seq,
            last_ms: 2000,
            summary: format!("finding {seq}"),
            evidence: vec!["a line".into()],
            stage: Stage::New,
        };
        let batch = FindingBatch { epoch: 1, floor: seq, round: 0, findings: vec![f] };
        let device = opmas_proto::DeviceId::new(id).unwrap();
        let msgs = [(device, crate::store::uplink::Uplink::Findings(batch))];
        store
            .apply_uplink(&msgs, &Default::default(), crate::store::uplink::Apply::Together, Some(received_ms))
            .await
            .unwrap();
    }

    #[test]
    fn days_are_named_and_read_in_utc() {
        assert_eq!(day_name(0), "1970-01-01");
        let d = parse_day("2026-12-07").unwrap();
        assert_eq!(d % DAY_MS, 0);
        assert_eq!(day_name(d), "2026-12-07");
        assert_eq!(file_name(d + 5000), "findings-2026-12-07.jsonl.zst");
        assert!(parse_day("2026-13-01").unwrap_err().to_string().contains("not a date"));
    }

    #[tokio::test]
    async fn old_days_go_to_files_then_leave_the_database_and_come_back_by_import() {
        let (store, dir) = crate::store::test_store().await;
        store.insert_device("gw-1", "gw-1", &"ab".repeat(32), 1).await.unwrap();
        let day = parse_day("2026-11-01").unwrap();
        for seq in 1..=3 {
            finding(&store, "gw-1", seq, day + seq as i64 * 1000).await;
        }
        finding(&store, "gw-1", 4, day + DAY_MS + 10).await;
        finding(&store, "gw-1", 5, day + 40 * DAY_MS).await;
        let archive = dir.path().join("archive");
        // 30 days kept at day + 41: the first two days go.
        let (days, deleted) = retire(&store, &archive, 30, day + 41 * DAY_MS).await.unwrap();
        assert_eq!((days, deleted), (2, 4));
        let m = Manifest::load(&archive).unwrap();
        assert_eq!(
            m.days.iter().map(|d| (d.day.as_str(), d.findings)).collect::<Vec<_>>(),
            [("2026-11-01", 3), ("2026-11-02", 1)]
        );
        assert_eq!(store.oldest_finding_ms().await.unwrap(), Some(day + 40 * DAY_MS), "the hot day stays");
        let rows = read_file(&archive.join("findings-2026-11-01.jsonl.zst")).unwrap();
        assert_eq!(
            rows.iter().map(|r| r.summary.as_str()).collect::<Vec<_>>(),
            ["finding 1", "finding 2", "finding 3"]
        );
        // Again: nothing to do, nothing doubled.
        assert_eq!(retire(&store, &archive, 30, day + 41 * DAY_MS).await.unwrap(), (0, 0));

        let files = [archive.join("findings-2026-11-01.jsonl.zst")];
        let back = import(&store, &files).await.unwrap();
        assert_eq!((back.findings, back.present), (3, 0));
        assert_eq!(import(&store, &files).await.unwrap().present, 3, "twice adds nothing");
        let again = store.findings_stored_between(day, day + DAY_MS).await.unwrap();
        assert_eq!(again, rows, "every column as it was");
        let err = write_day(&archive, day, &rows).unwrap_err().to_string();
        assert!(err.contains("exists already"), "{err}");
    }
}
