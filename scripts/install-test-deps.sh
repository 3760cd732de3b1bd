#!/usr/bin/env bash
# Installs what `make test` needs beyond the Rust toolchain, only when missing, so a fresh machine works.
set -euo pipefail

need_apt=()
command -v ip >/dev/null || need_apt+=(iproute2)
command -v iptables >/dev/null || need_apt+=(iptables)
command -v curl >/dev/null || need_apt+=(curl)

if ((${#need_apt[@]})); then
  echo "installing: ${need_apt[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

# helm, for the chart checks (e2e/tests/chart.rs).
"$(dirname "$0")/install-helm.sh"

# Every crate of Cargo.lock, for every platform: weftctl's descriptor test reads `cargo metadata --offline`,
# which needs them all, while a build downloads only this platform's.
cargo fetch --locked --quiet
