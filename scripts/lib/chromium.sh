# shellcheck shell=bash
# Headless Chromium for the web page tests (source this file; it defines functions only).
#
#   ensure_chromium  RELAY_CHROMIUM set → that binary, nothing else. Otherwise Debian's
#                    `chromium` (installed with apt when missing). Exports RELAY_CHROMIUM.
#                    playwright-core drives it; it downloads no browser of its own.

_relay_chromium_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/lib/apt.sh
source "$_relay_chromium_root/scripts/lib/apt.sh"

ensure_chromium() {
  if [ -n "${RELAY_CHROMIUM:-}" ]; then
    [ -x "$RELAY_CHROMIUM" ] || { echo "chromium: RELAY_CHROMIUM=$RELAY_CHROMIUM is not executable" >&2; return 1; }
    return 0
  fi
  if ! command -v chromium >/dev/null 2>&1; then
    echo "chromium: installing Debian's chromium (web page tests)" >&2
    apt_install chromium
  fi
  RELAY_CHROMIUM=$(command -v chromium)
  export RELAY_CHROMIUM
}
