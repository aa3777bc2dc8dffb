//! Column and constraint helpers shared by the migrations.

use sea_orm_migration::{prelude::*, schema::*};

/// A `BIGINT` auto-increment primary key (SQLite: `INTEGER PRIMARY KEY AUTOINCREMENT`).
pub fn pk(col: impl IntoIden + 'static) -> ColumnDef {
    big_integer(col).auto_increment().primary_key().take()
}

/// A named foreign key that refuses to delete a referenced row.
pub fn fk(
    name: &str,
    from: (impl IntoIden + 'static, impl IntoIden + 'static),
    to: (impl IntoIden + 'static, impl IntoIden + 'static),
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(ForeignKeyAction::Restrict)
        .take()
}

/// A named (unique) index over columns given by name.
pub fn index(
    name: &str,
    table: impl IntoIden + 'static,
    cols: &[&'static str],
    unique: bool,
) -> IndexCreateStatement {
    let mut stmt = Index::create();
    stmt.name(name).table(table).if_not_exists();
    for col in cols {
        stmt.col(Alias::new(*col));
    }
    if unique {
        stmt.unique();
    }
    stmt.take()
}
