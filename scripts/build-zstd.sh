#!/usr/bin/env bash
# Builds the @mongodb-js/zstd addon against Debian's libzstd.
# Why: its own install script downloads a prebuilt binary, which fails without
# internet access (package.json's allowScripts disables it). We link against
# the system library instead: headers copied where binding.gyp looks, and a
# linker script standing in for the static archive it expects.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
pkg="$here/node_modules/@mongodb-js/zstd"
[ -d "$pkg" ] || { echo "build-zstd: $pkg missing (run npm ci)" >&2; exit 1; }
if [ -f "$pkg/build/Release/zstd.node" ] && node -e "require('$pkg')" 2>/dev/null; then
  exit 0
fi
source "$here/scripts/lib/apt.sh"
[ -f /usr/include/zstd.h ] || apt_install libzstd-dev
mkdir -p "$pkg/deps/zstd/lib" "$pkg/deps/zstd/out/lib"
cp /usr/include/zstd.h /usr/include/zstd_errors.h /usr/include/zdict.h "$pkg/deps/zstd/lib/"
echo 'INPUT(-lzstd)' > "$pkg/deps/zstd/out/lib/libzstd.a"
gyp=""
for cand in "$(dirname "$(command -v npm)")/../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js" \
            /usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js \
            /usr/local/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js; do
  [ -f "$cand" ] && { gyp="$cand"; break; }
done
nodedir_flag=()
[ -f /usr/include/node/node_api.h ] && nodedir_flag=(--nodedir=/usr)
cd "$pkg"
if [ -n "$gyp" ]; then node "$gyp" rebuild "${nodedir_flag[@]}" >/tmp/relay-zstd-build.log 2>&1 || { cat /tmp/relay-zstd-build.log >&2; exit 1; }
else npx --yes node-gyp rebuild "${nodedir_flag[@]}" >/dev/null; fi
node -e "require('$pkg')" && echo "build-zstd: addon built against system libzstd"
