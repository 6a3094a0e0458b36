#!/usr/bin/env bash
# Checks that cargo is there and at least the Rust version Cargo.toml asks
# for (rust-version); otherwise says how to get it (rustup) and fails.
#
# Usage: scripts/toolchain.sh [CARGO]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo=${1:-cargo}
need=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml)
how="install Rust $need or newer with rustup (https://rustup.rs):
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y
    . \"\$HOME/.cargo/env\"
(Debian 12's own rustc, 1.63, is too old for this crate)"
if ! have=$("$cargo" --version 2>/dev/null); then
    echo "toolchain: no cargo ($cargo); $how" >&2
    exit 1
fi
version=$(echo "$have" | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$need" "${version%%-*}" | sort -V | head -1)" != "$need" ]; then
    echo "toolchain: $have is older than $need; $how" >&2
    exit 1
fi
