#!/usr/bin/env bash
# Builds the real binaries the integration tests run (kube-apiserver, etcd,
# Istio's pilot-agent and istioctl, and upstream istiod's pilot-discovery for
# the side-by-side benchmark) from the Go module proxy, once, into a cache folder
# shared by every clone on this machine. Each binary is keyed by the hash of
# its tools module's go.mod/go.sum, so a version bump rebuilds it.
#
# Usage: hack/build-tools.sh [tool...]   (default: all)
# Prints nothing but progress on stderr; the cache folder is
# ${MESHD_TOOLS_CACHE:-$HOME/.cache/meshd/tools}. Safe to run concurrently:
# a second run waits for the first one's build of the same binary.
set -euo pipefail

# Everything is in a function, so that bash has read the whole script before
# running any of it: an edit (or a git checkout) during a long build then
# cannot change what the running script does.
main() {
  export GOTOOLCHAIN=local GOFLAGS=-mod=mod
  local root cache
  root=$(cd "$(dirname "$0")/.." && pwd)
  cache=${MESHD_TOOLS_CACHE:-$HOME/.cache/meshd/tools}
  mkdir -p "$cache"

  # tool name -> "module dir:package"
  declare -A pkgs=(
    [kube-apiserver]="kube:k8s.io/kubernetes/cmd/kube-apiserver"
    [etcd]="etcd:go.etcd.io/etcd/server/v3"
    [staticcheck]="lint:honnef.co/go/tools/cmd/staticcheck"
    [helm]="helm:helm.sh/helm/v4/cmd/helm"
  )
  [ -d "$root/tools/istio" ] && pkgs[pilot-agent]="istio:istio.io/istio/pilot/cmd/pilot-agent"
  # Upstream istiod, for meshload's side-by-side runs: a tools module of its
  # own so its dependency set never moves pilot-agent's.
  [ -d "$root/tools/istiod" ] && pkgs[pilot-discovery]="istiod:istio.io/istio/pilot/cmd/pilot-discovery"
  # istioctl, to show that Istio's own CLI works against meshd.
  [ -d "$root/tools/istioctl" ] && pkgs[istioctl]="istioctl:istio.io/istio/istioctl/cmd/istioctl"

  local want=("$@")
  [ ${#want[@]} -eq 0 ] && want=("${!pkgs[@]}")
  local tool spec dir pkg key out
  for tool in "${want[@]}"; do
    spec=${pkgs[$tool]:?unknown tool $tool}
    dir=$root/tools/${spec%%:*}
    pkg=${spec#*:}
    key=$(cat "$dir/go.mod" "$dir/go.sum" 2>/dev/null | sha256sum | cut -c1-12)
    out=$cache/$tool-$key
    (
      # One build of a binary at a time; whoever waited finds it built.
      flock 9
      if [ ! -x "$out" ]; then
        echo "building $tool ($pkg) into $out" >&2
        (cd "$dir" && go build -trimpath -o "$out.tmp" "$pkg")
        mv "$out.tmp" "$out"
      fi
      # Replace the link atomically: tests may be reading it right now.
      ln -sfn "$out" "$cache/.$tool.link"
      mv -T "$cache/.$tool.link" "$cache/$tool"
    ) 9>"$out.lock"
  done
}

main "$@"
exit
