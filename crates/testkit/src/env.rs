//! Where the tools installed by `cargo xtask test-env` live (placeholder).
