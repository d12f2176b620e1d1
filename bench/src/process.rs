//! One child process of the benchmark (the control plane or the data plane):
//! started with its stderr in a log file, stopped by its PID with SIGTERM and
//! a grace period, and killed when its handle is dropped on a failure path.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How long a stopped process gets to drain before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// How to start a process.
#[derive(Debug)]
pub struct Spawn<'a> {
    /// What the process is called in errors and in the report.
    pub name: &'static str,
    /// Programs and arguments to put in front of `binary` (e.g. valgrind).
    pub launcher: &'a [OsString],
    pub binary: &'a Path,
    pub args: Vec<OsString>,
    pub env: Vec<(&'static str, String)>,
    /// The file its stderr goes to.
    pub log: PathBuf,
}

/// A running child process.
#[derive(Debug)]
pub struct Process {
    name: &'static str,
    child: Child,
    pid: u32,
    log: PathBuf,
}

/// How a process ended.
#[derive(Debug)]
pub struct Stopped {
    pub status: ExitStatus,
    /// From SIGTERM to exit.
    pub took: Duration,
    /// Whether it had to be killed after [`STOP_GRACE`].
    pub killed: bool,
}

impl Process {
    pub fn spawn(spec: Spawn<'_>) -> anyhow::Result<Process> {
        let log_file = std::fs::File::create(&spec.log)
            .with_context(|| format!("creating {}", spec.log.display()))?;
        let mut command = match spec.launcher.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(spec.binary);
                command
            }
            None => Command::new(spec.binary),
        };
        command
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", spec.binary.display()))?;
        let pid = child
            .id()
            .with_context(|| format!("the {} exited at once", spec.name))?;
        Ok(Process {
            name: spec.name,
            child,
            pid,
            log: spec.log,
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its stderr (its JSON log).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Its exit status if it has exited.
    pub fn exited(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        self.child
            .try_wait()
            .with_context(|| format!("checking the {}", self.name))
    }

    /// SIGTERM by PID, then SIGKILL if it has not exited within the grace period.
    pub async fn stop(mut self) -> anyhow::Result<Stopped> {
        let start = Instant::now();
        // Once reaped, its PID may belong to another process: never signal it.
        if let Some(status) = self.exited()? {
            return Ok(Stopped {
                status,
                took: start.elapsed(),
                killed: false,
            });
        }
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if sent.is_ok_and(|s| s.success())
            && let Ok(status) = tokio::time::timeout(STOP_GRACE, self.child.wait()).await
        {
            return Ok(Stopped {
                status: status.with_context(|| format!("waiting for the {}", self.name))?,
                took: start.elapsed(),
                killed: false,
            });
        }
        self.child
            .kill()
            .await
            .with_context(|| format!("killing the {}", self.name))?;
        let status = self
            .child
            .wait()
            .await
            .with_context(|| format!("waiting for the {}", self.name))?;
        Ok(Stopped {
            status,
            took: start.elapsed(),
            killed: true,
        })
    }

    /// The last lines of its log, for errors.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}
