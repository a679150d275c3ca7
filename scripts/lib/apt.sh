# apt_install PKG...: installs Debian packages once, running apt-get update first.
apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if [ ! -f /tmp/.relay-apt-updated ]; then
    $sudo apt-get update -qq >/dev/null && touch /tmp/.relay-apt-updated
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}
