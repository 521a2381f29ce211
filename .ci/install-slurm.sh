#!/usr/bin/env bash
# Installs a single-node Slurm (Debian's slurm-wlm) and munge for tests/test_slurm.py.
# Idempotent and quiet: does nothing when the binaries and the munge key are already there.
# Needs root (or sudo) and apt-get; starts no daemon (the test starts and stops its own).
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-slurm: run as root or install sudo" >&2; exit 1; }
  SUDO="sudo"
fi

need=0
for bin in slurmctld slurmd sinfo squeue sbatch munged; do
  command -v "$bin" >/dev/null || [ -x "/usr/sbin/$bin" ] || need=1
done

if [ "$need" -eq 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  # policy-rc.d 101: the packages' postinst scripts must not start daemons (no systemd here).
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  log="$(mktemp)"
  $SUDO apt-get install -y -qq --no-install-recommends slurm-wlm munge >"$log" 2>&1 \
    || { cat "$log" >&2; exit 1; }
  rm -f "$log"
  if [ "$created_policy" -eq 1 ]; then
    $SUDO rm -f /usr/sbin/policy-rc.d
  fi
fi

# munged refuses to start without a key readable only by the munge user.
if [ ! -s /etc/munge/munge.key ]; then
  if command -v mungekey >/dev/null || [ -x /usr/sbin/mungekey ]; then
    $SUDO /usr/sbin/mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
      || $SUDO mungekey --create --keyfile=/etc/munge/munge.key
  else
    $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
fi
$SUDO chown munge:munge /etc/munge/munge.key
$SUDO chmod 0400 /etc/munge/munge.key
$SUDO mkdir -p /etc/slurm
echo "install-slurm: $(/usr/sbin/slurmctld -V 2>/dev/null || echo slurm), munge $(/usr/sbin/munged -V 2>/dev/null | head -1 || true)"
