//! Runs [`Job`]s: one at a time, in the order they came (a block and the
//! unblock after it must not pass each other), each step a program with its
//! arguments (never a shell), a time limit, and its own words on failure.
//!
//! A missing tool is a failed job that says so ("nft not found at
//! /usr/sbin/nft"), never a stop: the edge keeps detecting and reporting.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::mpsc;

use super::{Job, JobDone, Step};

/// Longest a step may run (`wifi reload` is the slow one).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// Jobs waiting for the executor; beyond, a command is answered "busy".
pub const QUEUE: usize = 64;
/// Most bytes of a tool's output kept for the result message.
const MAX_OUTPUT: usize = 400;

/// Runs jobs from `jobs` until the channel closes, reporting each on `done`.
pub async fn run(mut jobs: mpsc::Receiver<Job>, done: mpsc::Sender<JobDone>, ubus: std::path::PathBuf) {
    while let Some(job) = jobs.recv().await {
        let started = Instant::now();
        let mut result = Ok(());
        for step in &job.steps {
            result = match step {
                Step::Run { argv, stdin } => run_step(argv, stdin.as_deref()).await.map(drop),
                Step::HostapdDelClient { json } => del_client_everywhere(&ubus, json).await,
            };
            if result.is_err() {
                break;
            }
        }
        let duration_ms = started.elapsed().as_millis().min(u128::from(u32::MAX)) as u32;
        if done.send(JobDone { job, result, duration_ms }).await.is_err() {
            return;
        }
    }
}

/// `ubus call hostapd.<iface> del_client JSON` on every interface `ubus
/// list` names `hostapd.*`.
async fn del_client_everywhere(ubus: &Path, json: &str) -> Result<(), String> {
    let tool = ubus.display().to_string();
    let list = run_step(&[tool.clone(), "list".into(), "hostapd.*".into()], None).await?;
    let ifaces = opmas_proto::remedy::hostapd_objects(&list);
    if ifaces.is_empty() {
        return Err(opmas_proto::remedy::NO_ACCESS_POINT.into());
    }
    let mut failed = Vec::new();
    for obj in &ifaces {
        let argv = [tool.clone(), "call".into(), (*obj).to_owned(), "del_client".into(), json.to_owned()];
        if let Err(e) = run_step(&argv, None).await {
            failed.push(format!("{obj}: {e}"));
        }
    }
    if failed.len() == ifaces.len() {
        Err(failed.join("; "))
    } else {
        Ok(())
    }
}

/// Runs one program; its standard output if it exits with 0, else what it
/// said on standard error (or its exit status).
pub async fn run_step(argv: &[String], stdin: Option<&str>) -> Result<String, String> {
    let Some((program, args)) = argv.split_first() else { return Err("empty command".into()) };
    let name = Path::new(program).file_name().map_or(program.clone(), |n| n.to_string_lossy().into_owned());
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("{name} not found at {program}: is it installed?"),
            _ => format!("{name} ({program}) could not start: {e}"),
        })?;
    let input = stdin.map(str::to_owned);
    let mut child_in = child.stdin.take();
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let work = async {
        if let (Some(w), Some(text)) = (child_in.as_mut(), input) {
            // A tool that exits without reading says why on stderr.
            let _ = w.write_all(text.as_bytes()).await;
        }
        drop(child_in.take());
        // Both pipes at once: a tool that fills one while we wait on the
        // other would otherwise wait for us forever.
        let read_out = async {
            let mut o = Vec::new();
            if let Some(r) = out.as_mut() {
                let _ = r.take(64 * 1024).read_to_end(&mut o).await;
            }
            o
        };
        let read_err = async {
            let mut e = Vec::new();
            if let Some(r) = err.as_mut() {
                let _ = r.take(64 * 1024).read_to_end(&mut e).await;
            }
            e
        };
        let (o, e) = tokio::join!(read_out, read_err);
        let status = child.wait().await;
        (status, o, e)
    };
    let (status, o, e) = tokio::time::timeout(STEP_TIMEOUT, work)
        .await
        .map_err(|_| format!("{name} did not finish within {} s", STEP_TIMEOUT.as_secs()))?;
    let status = status.map_err(|e| format!("{name}: {e}"))?;
    if status.success() {
        return Ok(String::from_utf8_lossy(&o).into_owned());
    }
    let said = clip(String::from_utf8_lossy(&e).trim());
    let said = if said.is_empty() { clip(String::from_utf8_lossy(&o).trim()) } else { said };
    Err(match status.code() {
        Some(code) if said.is_empty() => format!("{name} exited with status {code}"),
        Some(code) => format!("{name} exited with status {code}: {said}"),
        None => format!("{name} was killed by a signal"),
    })
}

/// At most [`MAX_OUTPUT`] bytes of a tool's words, on one line.
fn clip(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.len() <= MAX_OUTPUT {
        return one;
    }
    let mut end = MAX_OUTPUT;
    while !one.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &one[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn a_step_reports_its_output_its_error_or_its_absence() {
        rt().block_on(async {
            let ok = run_step(&["cat".into()], Some("fed on stdin")).await;
            assert_eq!(ok.as_deref(), Ok("fed on stdin"));
            let err = run_step(&["sh".into(), "-c".into(), "echo 'Error: no such set' >&2; exit 1".into()], None).await;
            assert_eq!(err, Err("sh exited with status 1: Error: no such set".into()));
            let missing = run_step(&["/nonexistent/nft".into(), "-f".into(), "-".into()], Some("x")).await;
            assert_eq!(missing, Err("nft not found at /nonexistent/nft: is it installed?".into()));
            // Arguments are arguments: nothing is interpreted by a shell.
            let literal = run_step(&["echo".into(), "$(reboot); `id`".into()], None).await;
            assert_eq!(literal.as_deref(), Ok("$(reboot); `id`\n"));
        });
    }
}
