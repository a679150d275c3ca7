#!/usr/bin/env bash
# Builds the two zstd addons from source: their install scripts download prebuilt binaries,
# which fails without internet access (package.json's allowScripts disables them).
# - @mongodb-js/zstd (asynchronous compression on the libuv pool) is linked against Debian's
#   libzstd: headers copied where binding.gyp looks, and a linker script standing in for the
#   static archive it expects.
# - zstd-napi (decompression with a reused context into buffers we size) compiles the zstd
#   sources it ships.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
mongo="$here/node_modules/@mongodb-js/zstd"
napi="$here/node_modules/zstd-napi"
for pkg in "$mongo" "$napi"; do
  [ -d "$pkg" ] || { echo "build-zstd: $pkg missing (run npm ci)" >&2; exit 1; }
done
loads() { node -e "require('$1')" 2>/dev/null; }
need_mongo=1; need_napi=1
[ -f "$mongo/build/Release/zstd.node" ] && loads "$mongo" && need_mongo=0
[ -f "$napi/build/Release/binding.node" ] && loads "$napi/binding" && need_napi=0
[ $need_mongo = 0 ] && [ $need_napi = 0 ] && exit 0

gyp=""
for cand in "$(dirname "$(command -v npm)")/../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js" \
            /usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js \
            /usr/local/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js; do
  [ -f "$cand" ] && { gyp="$cand"; break; }
done
nodedir_flag=()
[ -f /usr/include/node/node_api.h ] && nodedir_flag=(--nodedir=/usr)
rebuild() { # in the addon's directory
  local log=/tmp/relay-zstd-build.log
  if [ -n "$gyp" ]; then node "$gyp" rebuild -j 2 "${nodedir_flag[@]}" >$log 2>&1 || { cat $log >&2; exit 1; }
  else npx --yes node-gyp rebuild -j 2 "${nodedir_flag[@]}" >/dev/null; fi
}

if [ $need_mongo = 1 ]; then
  source "$here/scripts/lib/apt.sh"
  [ -f /usr/include/zstd.h ] || apt_install libzstd-dev
  mkdir -p "$mongo/deps/zstd/lib" "$mongo/deps/zstd/out/lib"
  cp /usr/include/zstd.h /usr/include/zstd_errors.h /usr/include/zdict.h "$mongo/deps/zstd/lib/"
  echo 'INPUT(-lzstd)' > "$mongo/deps/zstd/out/lib/libzstd.a"
  (cd "$mongo" && rebuild)
  loads "$mongo" && echo "build-zstd: @mongodb-js/zstd built against system libzstd"
fi
if [ $need_napi = 1 ]; then
  (cd "$napi" && rebuild)
  loads "$napi/binding" && echo "build-zstd: zstd-napi built"
fi
