#!/usr/bin/env bash
# Installs the Debian packages the integration tests drive as real
# components: prometheus (scrapes meshd) and chromium (renders /ui/graph).
# Idempotent and silent when everything is present; refreshes the package
# lists only when a package cannot be found, so a fresh Debian machine works.
# Must run as root (CI does); prints progress only while installing.
set -euo pipefail

# package -> a file it installs, to test for presence without dpkg's locks.
declare -A want=(
  [prometheus]=/usr/bin/prometheus
  [chromium]=/usr/bin/chromium
)

missing=()
for pkg in "${!want[@]}"; do
  [ -x "${want[$pkg]}" ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: need root to install: ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Refresh the lists only when one of the packages is unknown or has no
# candidate: that is the fresh-machine case; otherwise install from the lists
# already there.
for pkg in "${missing[@]}"; do
  # Capture first: grep -q closing the pipe early would fail it under pipefail.
  policy=$(apt-cache policy "$pkg" 2>/dev/null || true)
  if ! grep -q 'Candidate: [^(]' <<<"$policy"; then
    echo "install-test-deps: apt-get update" >&2
    apt-get update -qq >/dev/null
    break
  fi
done
echo "install-test-deps: installing ${missing[*]}" >&2
# Installing a package does not start its service here (no systemd in
# containers and CI); the tests start prometheus themselves on loopback.
install() { apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
if ! install; then
  # Lists old enough to name versions the mirror has dropped: refresh, retry.
  echo "install-test-deps: install failed; apt-get update and retry" >&2
  apt-get update -qq >/dev/null
  install
fi
for pkg in "${missing[@]}"; do
  if [ ! -x "${want[$pkg]}" ]; then
    echo "install-test-deps: $pkg installed but ${want[$pkg]} is missing" >&2
    exit 1
  fi
done
