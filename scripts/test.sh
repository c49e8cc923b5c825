#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this script).
#   scripts/test.sh
# Checks formatting and lints, runs every test (unit, integration, property, corpus, end to end
# against the real PostgreSQL, MariaDB and Redis, the console in a headless Chromium), runs the example policy's expectations
# through the CLI (cli/tests/policy_cli.rs), and validates deploy/ (kustomize render + Kubernetes schemas, compose).
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

# A build from nothing needs about 4 GB under target/ (6 GB with incremental compilation, which
# .ci/run turns off); a full disk shows up as a linker "Bus error", so say it first.
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target_dir"
free_mb=$(df -Pm "$target_dir" | awk 'NR == 2 { print $4 }')
if [ -n "$free_mb" ] && [ "$free_mb" -lt 6144 ]; then
    echo "WARNING: only ${free_mb} MB free for $target_dir; a build from nothing needs about 4-6 GB." >&2
    echo "         Free some space (cargo clean in other checkouts) if the build fails with 'No space left on device'." >&2
fi

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
