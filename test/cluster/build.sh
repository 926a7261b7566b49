#!/usr/bin/env bash
# Builds the control-plane binaries the integration tests run (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl) from Go modules.
#
#   build.sh DIR   builds them into DIR. Cold: ~8-10 minutes and ~3 GB of RAM on
#                  2 cores; with Go's build cache warm: about a minute.
#   build.sh       makes sure the cache ($AUTOFIX_K8S_BIN, or
#                  ~/.cache/autofix/k8s-VERSION) holds them and prints its directory,
#                  through internal/kubetest/cmd/controlplane: it builds into a
#                  temporary directory under a lock and renames it into place, so
#                  concurrent callers (test packages run in parallel) build once and
#                  nobody sees a half-built cache. The integration tests run this.
set -euo pipefail
cd "$(dirname "$0")"
if [ $# -eq 0 ]; then
	cd ../..
	exec go run ./internal/kubetest/cmd/controlplane
fi
OUT=$1
K8S_VERSION=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${K8S_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor}"
mkdir -p "$OUT"
go build -ldflags "$ldflags" -o "$OUT/" \
	k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
	k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl >&2
go build -ldflags "-s -w" -o "$OUT/etcd" go.etcd.io/etcd/server/v3 >&2
