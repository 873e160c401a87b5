//! Typed states in SQLite: [`Text`] stores a state as its text form and reads it back
//! parsed, so a row holding an unknown state is an error, never a string passed on.

use drover_release::TextState;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// A state as a column.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Text<T>(pub T);

impl<T: TextState> ToSql for Text<T> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.0.as_str()))
    }
}

impl<T: TextState> FromSql for Text<T> {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        T::parse(text)
            .map(Text)
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}
