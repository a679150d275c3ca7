# shellcheck shell=bash
# OpenSSH for the benchmark's `ssh -R` baseline (source this file; it defines functions only).
#
#   ensure_bench_tools  sshd, ssh, ssh-keygen and curl, installed with apt when missing. The
#                       benchmark runs its own sshd on a loopback port with a config, host key and
#                       authorized_keys of its own in a temp dir; nothing of the system's is used.
#                       (Debian's package may start the system service where policy allows it; the
#                       benchmark does not need or touch that one.)

_relay_ssh_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=scripts/lib/apt.sh
source "$_relay_ssh_root/scripts/lib/apt.sh"

ensure_bench_tools() {
  local missing=()
  [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
  { command -v ssh >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1; } || missing+=(openssh-client)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "bench: installing ${missing[*]}" >&2
    apt_install "${missing[@]}"
  fi
}
