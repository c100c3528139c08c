#!/usr/bin/env bash
# Installs the Debian packages chamad needs to build, run and test, if any
# is missing.  Runs apt-get update first; uses sudo when not root.
# (clang and libclang-rt-14-dev build the libFuzzer targets of make test;
# kannel and kannel-extras are the real SMS gateway the SMS tests run.)
set -euo pipefail

PKGS=(
  build-essential pkg-config
  libevent-dev libpq-dev libhiredis-dev libcurl4-openssl-dev libjansson-dev libsodium-dev
  postgresql postgresql-client redis-server redis-tools
  python3 curl ca-certificates
  clang libclang-rt-14-dev
  kannel kannel-extras
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "deps: installing ${missing[*]}"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
