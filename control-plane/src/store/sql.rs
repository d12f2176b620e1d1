//! A tiny SQL builder for dynamic filters. sqlx's `QueryBuilder` writes `?`
//! placeholders for the Any driver, which Postgres rejects; this writes `$N`,
//! which both Postgres and SQLite accept. Only static fragments and placeholder
//! numbers enter the SQL text; every value is bound.

use sqlx::any::AnyArguments;
use sqlx::{Arguments, Encode, Type};

pub struct SqlBuilder {
    sql: String,
    args: AnyArguments,
    count: usize,
}

impl SqlBuilder {
    pub fn new(sql: &'static str) -> Self {
        Self {
            sql: sql.to_owned(),
            args: AnyArguments::default(),
            count: 0,
        }
    }

    pub fn push(&mut self, fragment: &'static str) -> &mut Self {
        self.sql.push_str(fragment);
        self
    }

    pub fn bind<T>(&mut self, value: T) -> Result<&mut Self, sqlx::Error>
    where
        T: for<'q> Encode<'q, sqlx::Any> + Type<sqlx::Any> + Send + 'static,
    {
        self.args.add(value).map_err(sqlx::Error::Encode)?;
        self.count += 1;
        self.sql.push('$');
        self.sql.push_str(&self.count.to_string());
        Ok(self)
    }

    pub fn build(self) -> sqlx::query::Query<'static, sqlx::Any, AnyArguments> {
        sqlx::query_with(sqlx::AssertSqlSafe(self.sql), self.args)
    }

    #[cfg(test)]
    pub fn sql(&self) -> &str {
        &self.sql
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        let mut b = SqlBuilder::new("SELECT * FROM t WHERE 1 = 1");
        b.push(" AND a = ").bind(1_i64).unwrap();
        b.push(" AND b = ").bind("x".to_owned()).unwrap();
        assert_eq!(b.sql(), "SELECT * FROM t WHERE 1 = 1 AND a = $1 AND b = $2");
    }
}
