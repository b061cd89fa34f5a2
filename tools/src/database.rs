//! The database of one run, behind a guard: a fresh MariaDB database `<prefix>_<random>` that is
//! dropped when the guard is, or an SQLite file in a temporary folder removed with it, so a run
//! leaves nothing behind; and bounded connections to the server for the tools' own queries.

use std::time::Duration;

use mysql::prelude::Queryable;

/// The database of one run: a fresh MariaDB database, or an SQLite file in a temporary folder.
pub enum Database {
    Mysql {
        /// The server without a database, e.g. `mysql://root@127.0.0.1:3306`.
        admin_url: String,
        name: String,
        version: String,
    },
    Sqlite {
        dir: tempfile::TempDir,
    },
}

impl Database {
    /// Creates `<prefix>_<random>` on the server at `admin_url` (a URL without a database).
    pub fn create_mysql(admin_url: &str, prefix: &str) -> Result<Database, String> {
        let admin_url = admin_url.trim_end_matches('/').to_owned();
        let mut conn = connect(&admin_url)?;
        let mut random = [0u8; 6];
        getrandom::fill(&mut random).map_err(|e| format!("no randomness: {e}"))?;
        let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("{prefix}_{suffix}");
        conn.query_drop(format!(
            "CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        ))
        .map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
        // On MariaDB the handshake's version is a fixed 5.5.5 prefix; ask the server instead.
        let version: Option<String> = conn
            .query_first("SELECT VERSION()")
            .map_err(|e| format!("SELECT VERSION(): {e}"))?;
        Ok(Database::Mysql {
            admin_url,
            name,
            version: version.unwrap_or_else(|| "unknown".into()),
        })
    }

    /// An SQLite file in a temporary folder removed at the end.
    pub fn create_sqlite(prefix: &str) -> Result<Database, String> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir()
            .map_err(|e| format!("cannot create a temporary folder: {e}"))?;
        Ok(Database::Sqlite { dir })
    }

    /// The `DATABASE_URL` wxlogin is started with.
    pub fn url(&self) -> String {
        match self {
            Database::Mysql {
                admin_url, name, ..
            } => match admin_url.split_once('?') {
                Some((server, query)) => format!("{server}/{name}?{query}"),
                None => format!("{admin_url}/{name}"),
            },
            Database::Sqlite { dir } => {
                format!("sqlite://{}", dir.path().join("wxlogin.db").display())
            }
        }
    }

    /// What the table's header says about the database.
    pub fn describe(&self) -> String {
        match self {
            Database::Mysql { version, .. } => format!("MariaDB/MySQL {version}"),
            Database::Sqlite { .. } => "SQLite (bundled with rusqlite, WAL mode)".into(),
        }
    }

    pub fn is_mysql(&self) -> bool {
        matches!(self, Database::Mysql { .. })
    }

    /// The server without a database, for MariaDB; `None` for SQLite.
    pub fn admin_url(&self) -> Option<&str> {
        match self {
            Database::Mysql { admin_url, .. } => Some(admin_url),
            Database::Sqlite { .. } => None,
        }
    }

    /// The MariaDB database's name (`None` for SQLite).
    pub fn name(&self) -> Option<&str> {
        match self {
            Database::Mysql { name, .. } => Some(name),
            Database::Sqlite { .. } => None,
        }
    }
}

/// A connection to `url` with every wait bounded: the drill also talks to MariaDB while it
/// restarts, and a hung server must fail a query, not the run.
pub fn connect(url: &str) -> Result<mysql::Conn, String> {
    let opts =
        mysql::Opts::from_url(url).map_err(|e| format!("{url} is not a mysql:// URL: {e}"))?;
    let opts = mysql::OptsBuilder::from_opts(opts)
        .tcp_connect_timeout(Some(Duration::from_secs(2)))
        .read_timeout(Some(Duration::from_secs(30)))
        .write_timeout(Some(Duration::from_secs(30)));
    mysql::Conn::new(opts).map_err(|e| format!("cannot connect to {url}: {e}"))
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Database::Mysql {
            admin_url, name, ..
        } = self
        {
            let dropped = connect(admin_url).and_then(|mut conn| {
                conn.query_drop(format!("DROP DATABASE IF EXISTS {name}"))
                    .map_err(|e| e.to_string())
            });
            if let Err(e) = dropped {
                eprintln!("could not drop the database {name}: {e}");
            }
        }
    }
}
