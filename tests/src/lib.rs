//! Test-only crate: the end-to-end suite lives in tests/e2e.
