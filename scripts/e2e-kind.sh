#!/usr/bin/env bash
# The cluster e2e backend on kind: creates a cluster (unless one named $KIND_CLUSTER exists), builds the images,
# loads them into the cluster and runs the e2e scenarios against it. Needs kind, kubectl and a container engine.
set -euo pipefail
cd "$(dirname "$0")/.."

cluster="${KIND_CLUSTER:-weft-e2e}"
registry="${WEFT_E2E_IMAGE_REGISTRY:-ghcr.io/weft-mesh}"
tag="${WEFT_E2E_IMAGE_TAG:-$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}/\1/p' charts/weft/Chart.yaml)}"

for tool in kind kubectl "${CONTAINER_ENGINE:-docker}"; do
  command -v "$tool" >/dev/null || { echo "e2e-kind: $tool not found" >&2; exit 1; }
done

kind get clusters | grep -qx "$cluster" || kind create cluster --name "$cluster" --wait 120s
kubectl config use-context "kind-$cluster"

make images IMAGE_REGISTRY="$registry" IMAGE_TAG="$tag"
for image in operator webhook proxy e2e; do
  kind load docker-image --name "$cluster" "$registry/weft-$image:$tag"
done

WEFT_E2E_IMAGE_REGISTRY="$registry" WEFT_E2E_IMAGE_TAG="$tag" make e2e-cluster
echo "done; delete the cluster with: kind delete cluster --name $cluster"
