//! nginx in front of wxlogin, run from the shipped `deploy/nginx/wxlogin.conf`: installed if
//! missing, given a self-signed certificate, and with only what must change to run here
//! rewritten (certificate paths, loopback ports, the upstream's port, no IPv6), so that the
//! drill tests the limits production gets.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use wxlogin_tools::children::{self, ChildProc};

/// Where Debian's package puts it.
const NGINX: &str = "/usr/sbin/nginx";

/// The ports the rewritten configuration uses.
pub struct Ports {
    /// Replaces `listen 80` (the shipped redirect to HTTPS).
    pub http: u16,
    /// Replaces `listen 443 ssl http2`.
    pub https: u16,
    /// Replaces the upstream's `server 127.0.0.1:8888`: where wxlogin listens.
    pub upstream: u16,
}

/// Installs Debian's `nginx-light` unless nginx is there (the machine reaches Debian's mirror;
/// the package index is refreshed only if the first attempt fails).
pub fn ensure_installed(log: &Path) -> Result<(), String> {
    if Path::new(NGINX).exists() {
        return Ok(());
    }
    println!(
        "  nginx is missing: apt-get install -y nginx-light (output in {})",
        log.display()
    );
    let install = || {
        let mut command = Command::new("apt-get");
        command
            .args(["install", "-y", "nginx-light"])
            .env("DEBIAN_FRONTEND", "noninteractive");
        children::run(command, Duration::from_secs(600), log)
    };
    if install().is_err() {
        let mut update = Command::new("apt-get");
        update.arg("update");
        children::run(update, Duration::from_secs(300), log)?;
        install()?;
    }
    if Path::new(NGINX).exists() {
        Ok(())
    } else {
        Err(format!("apt-get install nginx-light left no {NGINX}"))
    }
}

/// A self-signed certificate for `login.example.com` and 127.0.0.1 (the address the drill
/// connects to), written into `dir`. Not a CA (`CA:FALSE`), because rustls refuses a CA
/// certificate as a server's own; the clients trust exactly this certificate.
pub fn make_certificate(dir: &Path, log: &Path) -> Result<(PathBuf, PathBuf), String> {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let mut command = Command::new("openssl");
    command
        .args(["req", "-x509", "-nodes", "-days", "2"])
        .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-subj", "/CN=login.example.com"])
        .args([
            "-addext",
            "subjectAltName=DNS:login.example.com,IP:127.0.0.1",
        ])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert);
    children::run(command, Duration::from_secs(30), log)?;
    Ok((cert, key))
}

/// The shipped configuration with only what must change to run here replaced, each exactly as
/// many times as the shipped file has it: if the file changes shape, the drill says so
/// instead of testing something else.
pub fn rewrite(shipped: &str, ports: &Ports, cert: &Path, key: &Path) -> Result<String, String> {
    let (mut listens, mut certs, mut keys, mut upstreams) = (0, 0, 0, 0);
    let mut out = String::with_capacity(shipped.len());
    for line in shipped.lines() {
        let body = line.trim_start();
        let indent = &line[..line.len() - body.len()];
        let mut words = body.trim_end().trim_end_matches(';').split_whitespace();
        let rewritten = match (words.next(), words.next()) {
            // Loopback IPv4 only: the drill must not listen anywhere else.
            (Some("listen"), Some(address)) if address.starts_with('[') => continue,
            (Some("listen"), Some(address)) => {
                let port = match address {
                    "80" => ports.http,
                    "443" => ports.https,
                    other => return Err(format!("unexpected listen address {other:?}")),
                };
                listens += 1;
                let params: Vec<&str> = words.collect();
                let params = if params.is_empty() {
                    String::new()
                } else {
                    format!(" {}", params.join(" "))
                };
                format!("{indent}listen 127.0.0.1:{port}{params};")
            }
            (Some("ssl_certificate"), Some(_)) => {
                certs += 1;
                format!("{indent}ssl_certificate {};", cert.display())
            }
            (Some("ssl_certificate_key"), Some(_)) => {
                keys += 1;
                format!("{indent}ssl_certificate_key {};", key.display())
            }
            (Some("server"), Some("127.0.0.1:8888")) => {
                upstreams += 1;
                let params: Vec<&str> = words.collect();
                format!(
                    "{indent}server 127.0.0.1:{} {};",
                    ports.upstream,
                    params.join(" ")
                )
            }
            _ => line.to_owned(),
        };
        out.push_str(&rewritten);
        out.push('\n');
    }
    if (listens, certs, keys, upstreams) != (2, 1, 1, 1) {
        return Err(format!(
            "deploy/nginx/wxlogin.conf changed shape: expected 2 IPv4 listens, 1 ssl_certificate, \
             1 ssl_certificate_key, 1 upstream server 127.0.0.1:8888; found {listens}, {certs}, \
             {keys}, {upstreams}: update tools/src/bin/drill/nginx.rs"
        ));
    }
    Ok(out)
}

/// Writes the rewritten configuration and a minimal top-level `nginx.conf` into `dir`, checks
/// them with `nginx -t`, and starts nginx in the foreground as a child (ready once it proxies;
/// the caller polls). Its error log goes to `error_log`.
pub fn start(
    dir: &Path,
    shipped: &str,
    ports: &Ports,
    (cert, key): (&Path, &Path),
    error_log: &Path,
) -> Result<ChildProc, String> {
    launch(dir, &rewrite(shipped, ports, cert, key)?, error_log)
}

/// The cluster phase's load balancer: plain HTTP on `127.0.0.1:port`, spreading requests over
/// `nodes` round-robin. Not the shipped file, which has one upstream and per-address limits
/// that the drill's loopback load (every client 127.0.0.1) would trip. A node that fails once
/// is left out for 1 s (`fail_timeout`, nginx's default is 10 s), so that nginx tries the dead
/// node again during the phase; a request goes on to the next node only if it could not be
/// sent, e.g. the connection was refused (`proxy_next_upstream error timeout`, the default:
/// without `non_idempotent`, a POST that reached a node is never sent again, so no login runs
/// twice). Each request's node is logged to `access_log`, to count how the load was spread.
pub fn start_balancer(
    dir: &Path,
    port: u16,
    nodes: &[u16],
    access_log: &Path,
    error_log: &Path,
) -> Result<ChildProc, String> {
    let servers: String = nodes
        .iter()
        .map(|node| format!("    server 127.0.0.1:{node} max_fails=1 fail_timeout=1s;\n"))
        .collect();
    let site = format!(
        "log_format upstream '$request_method $uri $status $upstream_addr';\n\
         upstream wxlogin_cluster {{\n{servers}    keepalive 32;\n}}\n\
         server {{\n    listen 127.0.0.1:{port};\n\
         \x20   access_log {log} upstream;\n\
         \x20   proxy_http_version 1.1;\n\
         \x20   proxy_set_header Connection \"\";\n\
         \x20   proxy_set_header X-Real-IP $remote_addr;\n\
         \x20   proxy_connect_timeout 2s;\n\
         \x20   proxy_read_timeout 15s;\n\
         \x20   proxy_next_upstream error timeout;\n\
         \x20   location / {{\n        proxy_pass http://wxlogin_cluster;\n    }}\n}}\n",
        log = access_log.display(),
    );
    launch(dir, &site, error_log)
}

/// Writes `site` and a minimal top-level `nginx.conf` into `dir`, checks them with `nginx -t`,
/// and starts nginx in the foreground as a child. No access log unless `site` asks for one.
fn launch(dir: &Path, site: &str, error_log: &Path) -> Result<ChildProc, String> {
    let site_path = dir.join("wxlogin.conf");
    let top = dir.join("nginx.conf");
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write(&site_path, site)?;
    write(
        &top,
        &format!(
            "daemon off;\npid {pid};\nerror_log {log};\nevents {{}}\nhttp {{\n    access_log off;\n    include {site};\n}}\n",
            pid = dir.join("nginx.pid").display(),
            log = error_log.display(),
            site = site_path.display(),
        ),
    )?;
    let command = |test: bool| {
        let mut command = Command::new(NGINX);
        if test {
            command.arg("-t");
        }
        command
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&top)
            .arg("-e")
            .arg(error_log);
        command
    };
    children::run(command(true), Duration::from_secs(30), error_log)?;
    ChildProc::spawn("nginx", command(false), error_log)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORTS: Ports = Ports {
        http: 10080,
        https: 10443,
        upstream: 18888,
    };

    fn rewrite_shipped() -> String {
        let shipped = include_str!("../../../../deploy/nginx/wxlogin.conf");
        rewrite(
            shipped,
            &PORTS,
            Path::new("/t/c.pem"),
            Path::new("/t/k.pem"),
        )
        .unwrap()
    }

    #[test]
    fn the_shipped_configuration_is_rewritten_for_loopback() {
        let conf = rewrite_shipped();
        assert!(conf.contains("listen 127.0.0.1:10080;"));
        assert!(conf.contains("listen 127.0.0.1:10443 ssl http2;"));
        assert!(conf.contains("ssl_certificate /t/c.pem;"));
        assert!(conf.contains("ssl_certificate_key /t/k.pem;"));
        assert!(conf.contains("server 127.0.0.1:18888 max_fails=0;"));
        assert!(!conf.contains("[::]"));
        assert!(!conf.contains("8888;"));
    }

    #[test]
    fn everything_else_is_kept_verbatim() {
        let shipped = include_str!("../../../../deploy/nginx/wxlogin.conf");
        let conf = rewrite_shipped();
        for line in shipped.lines() {
            let word = line.split_whitespace().next().unwrap_or("");
            let rewritten = ["listen", "ssl_certificate", "ssl_certificate_key", "server"];
            if !rewritten.contains(&word) {
                assert!(conf.contains(line), "lost: {line}");
            }
        }
    }

    #[test]
    fn a_configuration_of_another_shape_is_refused() {
        let err = rewrite("listen 8080;\n", &PORTS, Path::new("c"), Path::new("k")).unwrap_err();
        assert!(err.contains("8080"), "{err}");
        let err = rewrite("listen 80;\n", &PORTS, Path::new("c"), Path::new("k")).unwrap_err();
        assert!(err.contains("changed shape"), "{err}");
    }
}
