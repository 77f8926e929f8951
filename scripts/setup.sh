#!/usr/bin/env bash
# Set up walship from a fresh clone on Debian 12: the system packages the tests and tools use,
# then Node 24 (from the npm registry, as the `node` devDependency), the native addons and the build.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(postgresql-15 postgresql-contrib zstd lz4 age pgbackrest util-linux)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=(); [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# npm ci brings Node 24 (node_modules/node), builds zstd-napi (N-API, so it loads on Node 24 even
# when compiled against an older system Node's headers) and the embedded PostgreSQL binaries.
if [ ! -x node_modules/node/bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
node_modules/node/bin/node --version
npm run build --silent
echo "setup: walship $(bin/walship --version) ready at $(pwd)/bin/walship"
