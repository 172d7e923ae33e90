//! Log sources: each runs as a task and sends raw lines into one bounded
//! channel that the main loop drains.
//!
//! A full channel makes a source wait: for files and stdin that is
//! backpressure, not loss, because the text stays in the file or pipe.

pub mod file;

use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::config::SourceConfig;

/// Lines that may wait between the sources and the main loop.
pub const LINE_QUEUE: usize = 1024;

/// Starts one task per source on the current runtime.
pub fn spawn_all(sources: &[SourceConfig], tx: mpsc::Sender<String>) {
    for source in sources {
        let tx = tx.clone();
        match source.clone() {
            SourceConfig::File { path, from_start } => {
                info!(path = %path.display(), "following file");
                let opts = file::FollowOptions { from_start, ..file::FollowOptions::default() };
                tokio::spawn(async move {
                    if let Err(e) = file::run(path.clone(), opts, tx).await {
                        warn!(path = %path.display(), error = %e, "file source stopped");
                    }
                });
            }
            SourceConfig::Stdin => {
                tokio::spawn(async move {
                    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
                    loop {
                        match lines.next_line().await {
                            Ok(Some(line)) => {
                                if tx.send(line).await.is_err() {
                                    return;
                                }
                            }
                            Ok(None) => {
                                info!("standard input ended");
                                return;
                            }
                            Err(e) => {
                                warn!(error = %e, "reading standard input failed");
                                return;
                            }
                        }
                    }
                });
            }
        }
    }
}
