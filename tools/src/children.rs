//! Child processes (mock-wechat, wxlogin, nginx) and the short commands the tools run (openssl,
//! start-stop-daemon, apt-get): each with its output in a log file, each bounded in time, and
//! every long-lived child stopped when its handle is dropped, also on panic.

use std::fs::{File, OpenOptions};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::bounded;

/// Environment variables a child must not inherit from the caller's shell: the tools set the
/// ones they mean, and a stray `DATABASE_URL` or `MOCK_WECHAT_LATENCY_MS` would change the run.
const CLEARED_PREFIXES: [&str; 6] = [
    "WXLOGIN_",
    "WECHAT_",
    "MOCK_WECHAT_",
    "JWT_",
    "DATABASE_URL",
    "RUST_LOG",
];

/// How long a stopped child may take to exit after SIGTERM (wxlogin drains for up to 10 s by
/// default) before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(12);

/// Opens `path` for appending, so that every start of a child keeps its earlier output.
fn log_file(path: &Path) -> Result<(File, File), String> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let copy = file
        .try_clone()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((file, copy))
}

/// Sends output to `log`, clears the inherited variables the children read, and puts the
/// child in its own process group, so that a Ctrl-C in the terminal reaches only the tool,
/// which then stops everything in order.
fn prepare(command: &mut Command, log: &Path) -> Result<(), String> {
    let (out, err) = log_file(log)?;
    for (key, _) in std::env::vars_os() {
        if CLEARED_PREFIXES
            .iter()
            .any(|prefix| key.to_string_lossy().starts_with(prefix))
        {
            command.env_remove(&key);
        }
    }
    command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    Ok(())
}

/// What a child's exit status says, e.g. `exit 1` or `signal 6 (SIGABRT)`.
pub fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(6)) => "signal 6 (SIGABRT)".into(),
        (None, Some(9)) => "signal 9 (SIGKILL)".into(),
        (None, Some(11)) => "signal 11 (SIGSEGV)".into(),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// The last lines of a log file, to show why something failed.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs a short command to completion within `limit` (killed after it), output appended to
/// `log`; fails unless it exits 0.
pub fn run(mut command: Command, limit: Duration, log: &Path) -> Result<(), String> {
    let shown = format!("{command:?}");
    prepare(&mut command, log)?;
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(format!(
                    "{shown} failed ({}); the end of {}:\n{}",
                    describe_exit(status),
                    log.display(),
                    tail(log, 15)
                ))
            }
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{shown} did not finish within {limit:?}: killed"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("{shown}: {e}")),
        }
    }
}

/// Where util-linux's `setpriv` is (Debian installs it with the essential util-linux).
const SETPRIV: &str = "/usr/bin/setpriv";

/// `command` run through `setpriv --pdeathsig TERM`, which sets `PR_SET_PDEATHSIG` and then
/// execs the program (same pid): the kernel sends the child SIGTERM when the thread that spawned
/// it exits, so even a tool killed with SIGKILL leaves no server behind. The children are spawned
/// from the main thread, whose exit is what the signal watches. Doing this ourselves would take
/// an `unsafe` `pre_exec`; without `setpriv`, the command runs as it is.
fn with_parent_death_signal(command: Command) -> Command {
    if !Path::new(SETPRIV).exists() {
        return command;
    }
    let mut wrapped = Command::new(SETPRIV);
    wrapped
        .args(["--pdeathsig", "TERM", "--"])
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

/// A long-lived child; stopped (SIGTERM, then SIGKILL after [`STOP_GRACE`]) when dropped.
pub struct ChildProc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl ChildProc {
    /// Starts `command` named `name` with its output appended to `log`. The kernel sends it
    /// SIGTERM if the tool dies without cleaning up (SIGKILL, abort).
    pub fn spawn(name: &str, command: Command, log: &Path) -> Result<ChildProc, String> {
        let mut command = with_parent_death_signal(command);
        prepare(&mut command, log)?;
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(ChildProc {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How it exited, or `None` while it runs.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The last lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// The first line of its log: what it said first, e.g. why it aborted.
    pub fn log_head(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().next().unwrap_or_default().to_owned()
    }

    /// Polls `ready` until it holds, failing early (with the log's tail) if the child exits,
    /// and after `limit`.
    pub fn wait_ready(
        &mut self,
        limit: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<Duration, String> {
        let name = self.name.clone();
        let log = self.log.clone();
        let mut exited = false;
        bounded::wait_until(&format!("{name} ready"), limit, || {
            if let Some(status) = self.exit_status() {
                exited = true;
                return Err(format!(
                    "{name} exited ({}) before it was ready; the end of {}:\n{}",
                    describe_exit(status),
                    log.display(),
                    tail(&log, 15)
                ));
            }
            Ok(ready())
        })
        .map_err(|e| {
            if exited {
                e
            } else {
                format!("{e}; the end of {}:\n{}", log.display(), tail(&log, 15))
            }
        })
    }

    /// SIGKILL at once, no drain: a crash, as the drill's cluster phase plays it. Waits until
    /// it is gone and returns how it ended.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let _ = self.child.kill();
        self.child.wait().ok()
    }

    /// SIGTERM, then SIGKILL if it has not exited after [`STOP_GRACE`]; waits until it is
    /// gone, so its port is free. Idempotent.
    pub fn stop(&mut self) {
        if self.exit_status().is_some() {
            return;
        }
        // kill(1) with the pid of our own child, which we have not reaped yet.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if self.exit_status().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} ignored SIGTERM for {STOP_GRACE:?}: killed", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        self.stop();
    }
}
