#!/usr/bin/env bash
# Copies the Envoy protobuf descriptor set that the envoy-types crate ships (src/generated/types.bin) into
# weftctl/descriptors/, for `weftctl proxy-config -o json|yaml` (Envoy's JSON of the xDS resources). Run after
# upgrading envoy-types; a weftctl test fails while the copy is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
manifest=$(cargo metadata --format-version 1 --locked | python3 -c '
import json, sys
packages = json.load(sys.stdin)["packages"]
print(next(p["manifest_path"] for p in packages if p["name"] == "envoy-types"))')
cp "$(dirname "$manifest")/src/generated/types.bin" weftctl/descriptors/envoy-types.bin
echo "weftctl/descriptors/envoy-types.bin updated from $(dirname "$manifest")"
