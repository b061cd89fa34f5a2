//! `DATABASE_URL`: which backend to open and where, parsed once and never printed in clear.
//!
//! It lives with the store, not the configuration, because the schemes it accepts are exactly
//! the backends the store has: the configuration reads the variable and hands the text here, and
//! the store opens what this says without importing the configuration.

use crate::secret::Secret;
use std::fmt;
use std::path::PathBuf;

/// The store to open, chosen by the scheme of `DATABASE_URL`.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `mysql://user:pass@host:port/db?…`, kept whole (the mysql crate parses it) but secret.
    Mysql(Secret),
    /// `sqlite://PATH`; the path may be relative (`sqlite://wxlogin.db`) or absolute
    /// (`sqlite:///var/lib/wxlogin/wxlogin.db`).
    Sqlite(PathBuf),
}

impl DatabaseUrl {
    /// Parses a URL and rejects schemes we have no backend for, so that a typo such as
    /// `postgres://` fails at start-up rather than on the first login.
    pub fn parse(url: &str) -> Result<DatabaseUrl, String> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("DATABASE_URL: sqlite:// needs a file path, e.g. sqlite://wxlogin.db or sqlite:///var/lib/wxlogin/wxlogin.db".into());
            }
            Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
        } else if url.starts_with("mysql://") {
            if url.len() == "mysql://".len() {
                return Err("DATABASE_URL: mysql:// needs a host, e.g. mysql://user:pass@127.0.0.1:3306/wxlogin".into());
            }
            Ok(DatabaseUrl::Mysql(Secret::new(url)))
        } else {
            let scheme = url.split("://").next().unwrap_or(url);
            let shown = if url.contains("://") {
                format!("{scheme}://")
            } else {
                "(no scheme)".to_string()
            };
            Err(format!(
                "DATABASE_URL: unsupported scheme {shown}; use mysql://user:pass@host:port/db (MySQL, MariaDB, TiDB) or sqlite://PATH"
            ))
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    /// Shows the backend and location but masks the password of a MySQL URL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            DatabaseUrl::Mysql(url) => f.write_str(&mask_url_password(url.expose())),
        }
    }
}

/// `mysql://user:secret@host/db?password=secret` → `mysql://user:***@host/db?password=***`.
/// The credentials run from `://` to the last `@` before any `?`, so a password holding `/`, `:`
/// or `#` is still hidden; anything that does not parse is shown as `mysql://***`. The mysql
/// crate also takes the password as a query parameter, so those values are hidden too.
fn mask_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "***".into();
    };
    let before_query = rest.split('?').next().unwrap_or(rest);
    let (userinfo, after) = match before_query.rfind('@') {
        Some(at) => {
            let (userinfo, after) = rest.split_at(at);
            match userinfo.split_once(':') {
                Some((user, _password)) => (format!("{user}:***"), after),
                None => (userinfo.to_string(), after),
            }
        }
        None if rest.contains('@') => return format!("{scheme}://***"),
        None => (String::new(), rest),
    };
    match after.split_once('?') {
        Some((location, query)) => {
            format!("{scheme}://{userinfo}{location}?{}", mask_query(query))
        }
        None => format!("{scheme}://{userinfo}{after}"),
    }
}

/// Hides the value of every query parameter whose (percent-decoded) name mentions a password:
/// `password` for the account, `pkcs12_pass` for a client certificate.
fn mask_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| {
            let name = form_urlencoded::parse(pair.as_bytes())
                .next()
                .map(|(name, _)| name.to_ascii_lowercase())
                .unwrap_or_default();
            match pair.split_once('=') {
                Some((raw_name, _value)) if name.contains("pass") => format!("{raw_name}=***"),
                _ => pair.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_may_be_relative_or_absolute() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/wx.db").unwrap(),
            DatabaseUrl::Sqlite(PathBuf::from("data/wx.db"))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/lib/wxlogin/wxlogin.db").unwrap(),
            DatabaseUrl::Sqlite(PathBuf::from("/var/lib/wxlogin/wxlogin.db"))
        );
    }

    #[test]
    fn database_passwords_in_the_query_are_masked() {
        let cases = [
            (
                "mysql://app@db.internal:3306/wx?password=hunter2-db&pool_max=4",
                "mysql://app@db.internal:3306/wx?password=***&pool_max=4",
            ),
            (
                "mysql://app:hunter2-db@db.internal/wx?pool_max=4&password=hunter2-db",
                "mysql://app:***@db.internal/wx?pool_max=4&password=***",
            ),
            (
                "mysql://db.internal/wx?user=app&pass%77ord=hunter2-db",
                "mysql://db.internal/wx?user=app&pass%77ord=***",
            ),
            (
                "mysql://db.internal/wx?PASSWORD=hunter2-db",
                "mysql://db.internal/wx?PASSWORD=***",
            ),
            ("mysql://app:pa?ss@hunter2-db@db/wx", "mysql://***"),
        ];
        for (url, shown) in cases {
            let parsed = DatabaseUrl::parse(url).unwrap();
            let debug = format!("{parsed:?}");
            assert_eq!(debug, shown, "Debug of {url}");
            assert!(
                !debug.contains("hunter2"),
                "password leaked from {url}: {debug}"
            );
        }
    }
}
