//! Files the hub writes whole for others to read (mosquitto's password and
//! ACL files, archive files and their manifest): never seen half-written.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result};

/// Replaces `path` with `bytes` atomically: a synced temporary file renamed
/// over it. An existing file keeps its mode and owner (so an operator's
/// `chgrp mosquitto` stays); a new one is 0600.
pub fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("opmas-tmp");
    let old = std::fs::metadata(path).ok();
    let mode = old.as_ref().map_or(0o600, |m| m.permissions().mode() & 0o777);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    if let Some(m) = old {
        // Only root may give a file away; anyone may keep its own group.
        let _ = std::os::unix::fs::chown(&tmp, Some(m.uid()), Some(m.gid()));
    }
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_replaced_keeping_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("opmas.passwd");
        replace(&p, b"one\n").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        replace(&p, b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two\n");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o640);
    }
}
