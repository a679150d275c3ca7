# apt_install PKG...: installs Debian packages once, running apt-get update first. Waits up to
# 10 minutes for another apt/dpkg run to finish instead of failing on its lock.
apt_install() {
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  if [ ! -f /tmp/.relay-apt-updated ]; then
    $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null && touch /tmp/.relay-apt-updated
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@" >/dev/null
}
