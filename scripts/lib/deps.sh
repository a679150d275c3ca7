# shellcheck shell=bash
# Node dependencies and the build (source this file; it defines functions only).
#
#   ensure_build_tools  python3, make, g++ and libzstd-dev (node-gyp builds the zstd addons with
#                       them); installed with apt only when missing.
#   ensure_node_deps    node_modules missing or older than package-lock.json → `npm ci` (its
#                       postinstall builds the zstd addons and runs tsc); otherwise make sure the
#                       addons are built and run `npm run build`, so dist/ matches the sources.

_relay_deps_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/lib/apt.sh
source "$_relay_deps_root/scripts/lib/apt.sh"

ensure_build_tools() {
  local missing=()
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  command -v make >/dev/null 2>&1 || missing+=(make)
  command -v g++ >/dev/null 2>&1 || missing+=(g++)
  [ -f /usr/include/zstd.h ] || missing+=(libzstd-dev)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}" >&2
    apt_install "${missing[@]}"
  fi
}

# Deletes compiled files under dist/ whose TypeScript source is gone (tsc never removes them,
# and a stale dist/test/**/*.test.js would still be run by the test runner).
_prune_stale_dist() {
  local dist="$_relay_deps_root/dist" f rel
  [ -d "$dist" ] || return 0
  while IFS= read -r -d '' f; do
    rel="${f#"$dist"/}"
    rel="${rel%.js}"
    if [ ! -f "$_relay_deps_root/$rel.ts" ] && [ ! -f "$_relay_deps_root/$rel.tsx" ]; then
      rm -f "$f" "$f.map" "$dist/$rel.d.ts"
    fi
  done < <(find "$dist" -name '*.js' -type f -print0)
}

ensure_node_deps() {
  (
    cd "$_relay_deps_root" || exit 1
    # npm writes node_modules/.package-lock.json at the end of every install: older than
    # package-lock.json (or missing) means the lockfile changed since the last install.
    if [ ! -d node_modules ] || [ ! -f node_modules/.package-lock.json ] ||
       [ package-lock.json -nt node_modules/.package-lock.json ]; then
      ensure_build_tools
      _prune_stale_dist
      echo "deps: npm ci (node_modules missing or older than package-lock.json)" >&2
      npm ci
    else
      if ! bash scripts/build-zstd.sh; then
        ensure_build_tools
        bash scripts/build-zstd.sh
      fi
      _prune_stale_dist
      npm run --silent build || { echo "deps: npm run build (tsc) failed" >&2; exit 1; }
    fi
  )
}
