//! Numbered schema migrations, applied in order at start-up and recorded in `schema_migrations`.
//!
//! Each backend has the same numbered files (`sql/{mysql,sqlite}/migrations/0001_wxuser.sql`, …),
//! embedded in the binary. Start-up takes a lock (a MySQL named lock, a SQLite exclusive
//! transaction), so several nodes starting together apply each migration exactly once, then:
//!
//! 1. creates `schema_migrations` if it is missing;
//! 2. adopts a database created before migrations existed (no version recorded, but `wxuser`
//!    exists): adds the columns of `add_columns.sql` as the old start-up did, replays the
//!    idempotent baseline migrations, and records them as applied;
//! 3. refuses a database migrated by a newer binary, or one whose applied migration differs from
//!    the embedded file (a released file was edited), naming the file;
//! 4. applies the missing migrations in order, recording each right after its statements.
//!
//! MySQL commits DDL implicitly, so a migration there is not atomic: a crash between a DDL and its
//! record leaves the DDL applied but unrecorded. Write MySQL migrations so that running one again
//! is harmless (`IF NOT EXISTS`), or fix such a database by hand. SQLite runs everything in one
//! transaction, so a failed start-up changes nothing.

use super::{statements, StoreError};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The embedded migrations of one backend, in order. Versions must increase from 1 and each name
/// must start with its zero-padded version (checked by the unit tests). A gap is allowed: branches
/// developed side by side reserve their numbers, and the runner applies whatever is missing in
/// order, so a gap filled by a later merge is applied then.
macro_rules! embed_migrations {
    ($backend:literal: $($version:literal => $name:literal),* $(,)?) => {
        &[$(Migration {
            version: $version,
            name: concat!($name, ".sql"),
            sql: include_str!(concat!("../../sql/", $backend, "/migrations/", $name, ".sql")),
        }),*]
    };
}

/// Every migration a MySQL-compatible database gets. Append only; never edit a released file.
pub(super) const MYSQL: Plan = Plan {
    dir: "sql/mysql/migrations",
    migrations: embed_migrations!("mysql":
        1 => "0001_wxuser",
        2 => "0002_avatar",
        3 => "0003_user_uid",
        4 => "0004_sessions",
        5 => "0005_code_replay",
        6 => "0006_account",
        7 => "0007_login_history",
        8 => "0008_outbox",
        9 => "0009_moderation",
    ),
    baseline: 2,
    table: include_str!("../../sql/mysql/schema_migrations.sql"),
    legacy_columns: include_str!("../../sql/mysql/add_columns.sql"),
};

/// Every migration a SQLite database gets: the same names as [`MYSQL`].
pub(super) const SQLITE: Plan = Plan {
    dir: "sql/sqlite/migrations",
    migrations: embed_migrations!("sqlite":
        1 => "0001_wxuser",
        2 => "0002_avatar",
        3 => "0003_user_uid",
        4 => "0004_sessions",
        5 => "0005_code_replay",
        6 => "0006_account",
        7 => "0007_login_history",
        8 => "0008_outbox",
        9 => "0009_moderation",
    ),
    baseline: 2,
    table: include_str!("../../sql/sqlite/schema_migrations.sql"),
    legacy_columns: include_str!("../../sql/sqlite/add_columns.sql"),
};

/// How long a MySQL node waits for another node's migrations, and how long one migration
/// statement may run (an `ALTER TABLE` on a large table takes a while).
pub(super) const MYSQL_MIGRATION_TIMEOUT: Duration = Duration::from_secs(600);

/// How long an SQLite store waits for the database's write lock to migrate: other processes
/// opening the same file at the same moment migrate (or find it done) one after the other, each
/// with fsyncs, which on a loaded machine took longer than a request's busy timeout.
pub(super) const SQLITE_MIGRATION_TIMEOUT: Duration = Duration::from_secs(60);

/// One numbered SQL file, embedded in the binary.
#[derive(Debug, Clone, Copy)]
pub(super) struct Migration {
    pub version: u32,
    /// The file name, e.g. `0001_wxuser.sql`.
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    /// SHA-256 of the file, line endings normalised so a checkout with CRLF sums the same.
    pub fn checksum(&self) -> String {
        crate::secret::hex(&Sha256::digest(self.sql.replace("\r\n", "\n").as_bytes()))
    }
}

/// Everything the runner needs for one backend.
pub(super) struct Plan {
    /// Where the files live, for messages.
    pub dir: &'static str,
    pub migrations: &'static [Migration],
    /// The last migration that reproduces the schema of the release before migrations: a
    /// database of that release is adopted by recording versions up to this one.
    pub baseline: u32,
    /// `CREATE TABLE IF NOT EXISTS schema_migrations …`
    pub table: &'static str,
    /// `ALTER TABLE … ADD COLUMN` statements the old start-up applied, for adoption.
    pub legacy_columns: &'static str,
}

/// A migration recorded in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Applied {
    pub version: u32,
    pub name: String,
    pub checksum: String,
}

/// What the runner needs from a connection that holds the migration lock.
pub(super) trait Session {
    /// Runs one statement.
    fn execute(&mut self, statement: &str) -> Result<(), StoreError>;
    /// Runs one `ALTER TABLE … ADD COLUMN`, succeeding when the column already exists.
    fn add_column(&mut self, statement: &str) -> Result<(), StoreError>;
    fn table_exists(&mut self, table: &str) -> Result<bool, StoreError>;
    /// The rows of `schema_migrations`, by version.
    fn applied(&mut self) -> Result<Vec<Applied>, StoreError>;
    fn record(&mut self, migration: &Migration, checksum: &str) -> Result<(), StoreError>;
}

/// Brings the database up to date; the caller holds the lock. Returns the versions it applied or
/// adopted.
pub(super) fn migrate(session: &mut dyn Session, plan: &Plan) -> Result<Vec<u32>, StoreError> {
    session.execute(plan.table)?;
    let mut applied = session.applied()?;
    let mut done = Vec::new();
    if applied.is_empty() && session.table_exists("wxuser")? {
        log::info!(
            "adopting a database created before numbered migrations: recording migrations up to \
             version {} as applied",
            plan.baseline
        );
        for statement in statements(plan.legacy_columns) {
            session.add_column(&statement)?;
        }
        for migration in plan
            .migrations
            .iter()
            .filter(|m| m.version <= plan.baseline)
        {
            run(session, plan, migration)?;
            done.push(migration.version);
        }
        applied = session.applied()?;
    }
    check(plan, &applied)?;
    for migration in plan.migrations {
        if !applied.iter().any(|a| a.version == migration.version) {
            run(session, plan, migration)?;
            log::info!("applied migration {}/{}", plan.dir, migration.name);
            done.push(migration.version);
        }
    }
    Ok(done)
}

/// Runs a migration's statements, then records it.
fn run(session: &mut dyn Session, plan: &Plan, migration: &Migration) -> Result<(), StoreError> {
    let context = |e: StoreError| {
        let why = format!("migration {}/{} failed: {e}", plan.dir, migration.name);
        match e {
            StoreError::Unavailable(_) => StoreError::Unavailable(why),
            StoreError::Query(_) => StoreError::Query(why),
        }
    };
    for statement in statements(migration.sql) {
        session.execute(&statement).map_err(context)?;
    }
    session
        .record(migration, &migration.checksum())
        .map_err(context)
}

/// Refuses a database this binary must not touch: migrated by a newer release, or with an applied
/// migration that is not the embedded file.
fn check(plan: &Plan, applied: &[Applied]) -> Result<(), StoreError> {
    let known = plan.migrations.last().map_or(0, |m| m.version);
    if let Some(newest) = applied
        .iter()
        .map(|a| a.version)
        .filter(|&v| v > known)
        .max()
    {
        return Err(StoreError::Query(format!(
            "this database was migrated by a newer wxlogin (version {newest}); this binary knows \
             migrations up to version {known}: run the newer release"
        )));
    }
    for row in applied {
        let Some(migration) = plan.migrations.iter().find(|m| m.version == row.version) else {
            return Err(StoreError::Query(format!(
                "this database records migration {} ({}), which {} does not have",
                row.version, row.name, plan.dir
            )));
        };
        if migration.checksum() != row.checksum {
            return Err(StoreError::Query(format!(
                "migration {}/{} was edited after it was applied to this database (checksum \
                 {} recorded, {} embedded): restore the released file and put the change in a \
                 new migration",
                plan.dir,
                migration.name,
                row.checksum,
                migration.checksum()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_backends_have_the_same_numbered_files_in_order() {
        let names = |plan: &Plan| plan.migrations.iter().map(|m| m.name).collect::<Vec<_>>();
        assert_eq!(names(&MYSQL), names(&SQLITE));
        for plan in [&MYSQL, &SQLITE] {
            assert_eq!(plan.migrations.first().map(|m| m.version), Some(1));
            for pair in plan.migrations.windows(2) {
                assert!(pair[0].version < pair[1].version, "{}", pair[1].name);
            }
            for migration in plan.migrations {
                assert!(
                    migration
                        .name
                        .starts_with(&format!("{:04}_", migration.version)),
                    "{}/{} must start with its version",
                    plan.dir,
                    migration.name
                );
            }
            assert!(
                plan.baseline as usize <= plan.migrations.len(),
                "{}",
                plan.dir
            );
        }
    }

    #[test]
    fn every_file_in_the_migration_directories_is_embedded() {
        for plan in [&MYSQL, &SQLITE] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(plan.dir);
            let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            on_disk.sort();
            let embedded: Vec<&str> = plan.migrations.iter().map(|m| m.name).collect();
            assert_eq!(
                on_disk, embedded,
                "{}: list new files in migrate.rs",
                plan.dir
            );
        }
    }
}
