//! A benchmark's own database: created fresh on the Postgres server it is
//! given (any database there serves as the admin connection), used for the
//! run (by every control-plane replica of the failover benchmark, by the
//! store itself in the trace-store benchmark), and dropped at the end.

use anyhow::Context as _;
use sqlx::Connection as _;

/// A fresh database on the given Postgres server, dropped at the end.
#[derive(Debug)]
pub struct Database {
    admin: String,
    name: String,
    pub url: String,
}

impl Database {
    /// `CREATE DATABASE sy_bench_<32 random hex digits>` through `admin`,
    /// a URL of any database on the server.
    pub async fn create(admin: &str) -> anyhow::Result<Self> {
        let name = format!("sy_bench_{:032x}", rand::random::<u128>());
        let url = sibling_url(admin, &name)?;
        let database = Self {
            admin: admin.to_owned(),
            name,
            url,
        };
        // A database name cannot be a bind parameter; this one is ours
        // (a fixed prefix and hex digits).
        database
            .admin_sql(&format!("CREATE DATABASE {}", database.name))
            .await
            .context("creating the benchmark's database")?;
        Ok(database)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database, closing any connection still open to it.
    pub async fn remove(self) -> anyhow::Result<()> {
        self.admin_sql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .await
        .with_context(|| format!("dropping the database {}", self.name))
    }

    async fn admin_sql(&self, sql: &str) -> anyhow::Result<()> {
        let mut conn = sqlx::PgConnection::connect(&self.admin)
            .await
            .context("connecting to Postgres (SWITCHYARD_TEST_DATABASE_URL)")?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await?;
        conn.close().await.context("closing the admin connection")
    }
}

/// `admin` with its database name replaced by `name`, query kept.
fn sibling_url(admin: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = match admin.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (admin, String::new()),
    };
    let (server, _) = base
        .rsplit_once('/')
        .filter(|(server, _)| server.contains("://"))
        .context("the admin database URL names no database (postgres://…/NAME)")?;
    Ok(format!("{server}/{name}{query}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_database_sits_beside_the_admin_one() {
        assert_eq!(
            sibling_url(
                "postgres://postgres@127.0.0.1:5433/switchyard_test",
                "sy_bench_1"
            )
            .unwrap(),
            "postgres://postgres@127.0.0.1:5433/sy_bench_1"
        );
        assert_eq!(
            sibling_url("postgres://u:p@h/db?sslmode=disable", "x").unwrap(),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert!(sibling_url("postgres:db", "x").is_err());
    }
}
