//! `wxlogin-drill`, run by `make drill`: a fault drill of wxlogin on this machine, on loopback
//! only. It starts mock-wechat, wxlogin (on a fresh MariaDB database) and nginx with the
//! shipped configuration, drives logins while it stops and restarts MariaDB, makes WeChat slow
//! and then unreachable, and attacks nginx with slow clients and a terabyte `Content-Length`;
//! then it checks that every login answered 200 has its row and that wxlogin is still up, kills
//! one of three nodes behind nginx under load (`cluster.rs`), attacks wxlogin's open port,
//! prints a summary (also written to `target/drill/last-run.md`) and exits 0 only if every
//! check passed. It takes about two minutes, stops by itself, and cleans up after
//! itself (children stopped, database dropped, temporary files removed, MariaDB running), also
//! on Ctrl-C and on panic.

mod attacks;
mod cluster;
mod drill;
mod load;
mod mariadb;
mod nginx;
mod open_port;
mod phase;
mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use wxlogin_tools::signals;

use drill::{Only, Paths};
use open_port::Attack;

/// Exit statuses besides 0: a check failed; the drill could not run; it panicked.
const CHECK_FAILED: u8 = 1;
const COULD_NOT_RUN: u8 = 2;
const PANICKED: u8 = 3;

/// The binaries are this one's neighbours (`target/release`); the output goes to
/// `target/drill`; the shipped files are in the repository this was built from.
fn locate() -> Result<Paths, String> {
    let exe = std::env::current_exe().map_err(|e| format!("where am I? {e}"))?;
    let bin = exe.parent().ok_or("the binary has no folder")?.to_owned();
    let out = bin.parent().unwrap_or(&bin).join("drill");
    let logs = out.join("logs");
    // The logs of the previous run go; this run's stay after it, for a post-mortem.
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    // This crate is `tools/` in the repository.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_owned);
    Ok(Paths {
        bin,
        repo,
        out,
        logs,
    })
}

const USAGE: &str = "\
usage: wxlogin-drill [--only LIST]     (normally run by `make drill`)

  without options   the whole drill (MariaDB stopped and restarted, nginx, the open port)
  --only LIST       only these phases, no MariaDB stop: `cluster` (three wxlogin nodes
                    on MariaDB behind nginx, one killed -9 under load), and the open-port
                    phases, `open-port` (all three) or `reset-storm,slow-body,header-flood`
                    (SQLite, no nginx); e.g. `cluster,open-port`
";

/// The phases `--only` names; `None`: the whole drill.
fn parse(args: &[String]) -> Result<Option<Only>, String> {
    match args {
        [] => Ok(None),
        [flag, list] if flag == "--only" => {
            let mut only = Only {
                cluster: false,
                attacks: Vec::new(),
            };
            for name in list.split(',').map(str::trim) {
                match Attack::ALL.iter().find(|a| a.name() == name) {
                    Some(attack) => only.attacks.push(*attack),
                    None if name == "open-port" => only.attacks.extend(Attack::ALL),
                    None if name == "cluster" => only.cluster = true,
                    None => return Err(format!("--only: unknown phase {name:?}")),
                }
            }
            Ok(Some(only))
        }
        _ => Err(String::new()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let only = match parse(&args) {
        Ok(only) => only,
        Err(why) => {
            eprint!("{why}{}{USAGE}", if why.is_empty() { "" } else { "\n\n" });
            return ExitCode::from(COULD_NOT_RUN);
        }
    };
    let paths = match signals::install().and_then(|()| locate()) {
        Ok(paths) => paths,
        Err(e) => {
            eprintln!("drill: {e}");
            return ExitCode::from(COULD_NOT_RUN);
        }
    };
    // The guards inside clean up while unwinding; this only stops the panic here.
    let outcome = std::panic::catch_unwind(|| match &only {
        Some(only) => drill::run_only(&paths, only),
        None => drill::run(&paths),
    });
    // Whatever happened, MariaDB is left running: other work on this machine depends on it.
    if only.is_none() {
        if let Err(e) = mariadb::ensure_running(&paths.logs.join("commands.log")) {
            eprintln!("drill: MARIADB IS NOT RUNNING: {e}");
        }
    }
    match outcome {
        Ok(Ok(report)) => {
            let summary = report.render(SystemTime::now());
            println!("\n{summary}");
            let file = paths.out.join("last-run.md");
            match std::fs::write(&file, &summary) {
                Ok(()) => println!("(written to {})", file.display()),
                Err(e) => eprintln!("drill: {}: {e}", file.display()),
            }
            match report.failed() {
                0 => ExitCode::SUCCESS,
                n => {
                    eprintln!("drill: {n} check(s) FAILED");
                    ExitCode::from(CHECK_FAILED)
                }
            }
        }
        Ok(Err(e)) => {
            eprintln!("drill: could not finish: {e}");
            ExitCode::from(COULD_NOT_RUN)
        }
        Err(_) => {
            eprintln!("drill: panicked (message above); cleaned up");
            ExitCode::from(PANICKED)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> Result<Option<Only>, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn only_names_the_cluster_and_open_port_phases() {
        assert_eq!(parse_args(&[]), Ok(None));
        assert_eq!(
            parse_args(&["--only", "open-port"]),
            Ok(Some(Only {
                cluster: false,
                attacks: Attack::ALL.to_vec()
            }))
        );
        assert_eq!(
            parse_args(&["--only", "slow-body,cluster"]),
            Ok(Some(Only {
                cluster: true,
                attacks: vec![Attack::SlowBody]
            }))
        );
        assert!(parse_args(&["--only", "db-down"]).is_err());
        assert!(parse_args(&["--bogus"]).is_err());
    }
}
