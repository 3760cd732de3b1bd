#!/usr/bin/env bash
# Installs what `make bench` compares weft-proxy with (nginx, haproxy) and pins with (taskset), only when missing.
# Best effort: the bench reports what it could not run.
set -uo pipefail

need_apt=()
[ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
[ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)
command -v taskset >/dev/null || need_apt+=(util-linux)

if ((${#need_apt[@]})); then
  echo "installing for the bench: ${need_apt[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null \
    || echo "could not install ${need_apt[*]}; the bench skips what is missing"
fi
exit 0
