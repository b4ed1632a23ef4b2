#!/usr/bin/env bash
# Browser end-to-end test: installs what is missing (Debian's chromium, espeak-ng, sox, the npm
# dependency), then runs `node --test e2e.mjs`. Idempotent; quick the second time.
# KIKI_BIN picks the server binary (default: $CARGO_TARGET_DIR/release/kiki, else target/release/kiki); it is not built here.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

sudo=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then sudo="sudo"; fi

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  # An unknown package means the package lists are missing or stale.
  for p in "$@"; do
    if ! apt-cache show "$p" >/dev/null 2>&1; then $sudo apt-get update -q; break; fi
  done
  $sudo apt-get install -y -q --no-install-recommends "$@"
}

missing=()
[ -x "${CHROMIUM_BIN:-/usr/bin/chromium}" ] || missing+=(chromium)
command -v espeak-ng >/dev/null || missing+=(espeak-ng)
command -v sox >/dev/null || missing+=(sox)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "run.sh: installing ${missing[*]}"
  apt_install "${missing[@]}"
fi

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "run.sh: node $(node --version) is too old; playwright-core needs node >= 20" >&2
  exit 1
fi

# npm ci only when the installed tree does not match the lock file.
want="$(node -p 'require("./package-lock.json").packages["node_modules/playwright-core"].version')"
have="$(node -p 'try { require("./node_modules/playwright-core/package.json").version } catch { "" }')"
if [ "$want" != "$have" ]; then
  echo "run.sh: installing playwright-core $want"
  npm ci --no-audit --no-fund --loglevel=error
fi

mkdir -p ../artifacts
exec node --test e2e.mjs
