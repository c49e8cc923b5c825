#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this script).
#   scripts/test.sh
# Checks formatting and lints, runs every test (unit, integration, property, corpus, end to end
# against the real PostgreSQL, MariaDB and Redis, the console in a headless Chromium), runs the example policy's expectations
# through the CLI, and validates deploy/ (kustomize render + Kubernetes schemas, compose).
# Needs the Rust toolchain and python3; scripts/services.sh starts the database servers (or
# installs them, and Chromium with ChromeDriver, with apt-get on a fresh Debian/Ubuntu machine). The corpus tests read
# ../shared/corpus and say loudly when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: install Rust with https://rustup.rs (rustup default stable), then re-run $0" >&2
    exit 1
fi
for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
        echo "installing the $component component" >&2
        rustup component add "$component"
    fi
done

step() { printf '\n==> %s\n' "$*"; }

step "scripts/services.sh (PostgreSQL, MariaDB, Redis, Chromium)"
scripts/services.sh

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "scripts/validate-deploy.sh (container images, Kubernetes manifests, compose)"
scripts/validate-deploy.sh

step "cargo test --workspace"
cargo test --workspace

step "countersign policy test deploy/policy.example.tests.toml"
cargo run --quiet -p countersign-cli -- policy test deploy/policy.example.tests.toml
