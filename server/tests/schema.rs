//! `schema.graphql` at the repository root is what `loyalty-server schema` prints, so client
//! code generated from the file matches the server. No database: the SDL is the code's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

#[test]
fn schema_graphql_matches_the_running_schema() {
    let output = Command::new(env!("CARGO_BIN_EXE_loyalty-server"))
        .arg("schema")
        // `schema` reads no configuration: a broken one must not matter.
        .env("DATABASE_URL", "not a url")
        .env("JWT_SECRET", "short")
        .output()
        .expect("loyalty-server runs");
    assert!(
        output.status.success(),
        "`loyalty-server schema` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        printed,
        loyalty_graphql::sdl(),
        "the subcommand prints the schema the server serves"
    );
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema.graphql");
    let committed = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        committed == printed,
        "schema.graphql differs from the running schema: regenerate it with\n\n    \
         cargo run -p loyalty-server -- schema > schema.graphql\n\n(and commit it; client code \
         generated from the old file no longer matches)"
    );
}
