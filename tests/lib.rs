//! End-to-end tests for Switchyard. They live in `tests/`: each starts the real
//! control-plane and data-plane binaries against the Postgres that
//! `scripts/test.sh` provides, and mock providers over real HTTP.
