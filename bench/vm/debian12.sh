#!/usr/bin/env bash
# A throw-away Debian 12 VM with a real systemd, to run `install.sh --service` as a new box would.
# Not part of the pytest suite (minutes, root, KVM); bench/results/systemd_vm.md records a run.
#
#   bench/vm/debian12.sh build        debootstrap bookworm + kernel + systemd + openssh into
#                                     $VM_DIR/disk.img (ext4, no partition table, no bootloader)
#   bench/vm/debian12.sh wheels       a wheelhouse of the project's wheels built on this host
#                                     (llama-cpp-python is not compiled again inside the VM)
#   bench/vm/debian12.sh start        boot it (qemu -accel kvm, direct kernel boot, 2 vCPUs, 4 GB);
#                                     ssh on 127.0.0.1:$VM_SSH_PORT, serial log in $VM_DIR/console.log
#   bench/vm/debian12.sh ssh [CMD]    run a command in the VM as root
#   bench/vm/debian12.sh put SRC DST  copy a file or directory into the VM
#   bench/vm/debian12.sh wait         wait until ssh answers (after start or a reboot)
#   bench/vm/debian12.sh stop         power it off (then kill qemu if it is still there)
#   bench/vm/debian12.sh nspawn-start | nspawn CMD... | nspawn-stop
#                                     the same rootfs under systemd-nspawn -b (systemd as PID 1)
#
# Needs root and: apt-get install qemu-system-x86 qemu-utils debootstrap e2fsprogs
# Without a usable /dev/kvm, VM_ACCEL=tcg works but is ~10x slower; `systemd-nspawn -b -D
# $VM_DIR/rootfs` also boots a real systemd as PID 1 (no reboot test, no kernel of its own).
set -euo pipefail

VM_DIR=${VM_DIR:-/var/tmp/appliance-vm}
VM_SSH_PORT=${VM_SSH_PORT:-2222}
VM_MEM=${VM_MEM:-4096}
VM_CPUS=${VM_CPUS:-2}
VM_ACCEL=${VM_ACCEL:-kvm}
VM_DISK_SIZE=${VM_DISK_SIZE:-16G}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KEY="$VM_DIR/id_ed25519"
SSH=(ssh -q -i "$KEY" -p "$VM_SSH_PORT" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
     -o ConnectTimeout=5 -o ServerAliveInterval=15 root@127.0.0.1)

say() { printf '==> %s\n' "$*" >&2; }

build() {
  mkdir -p "$VM_DIR"
  local fs="$VM_DIR/rootfs"
  if [ ! -x "$fs/usr/bin/systemctl" ]; then
    say "debootstrap bookworm into $fs"
    debootstrap --variant=minbase \
      --include=linux-image-amd64,systemd,systemd-sysv,dbus,udev,openssh-server,git,ca-certificates,python3,python3-venv,sqlite3,curl,iproute2,procps,less,kmod,initramfs-tools \
      bookworm "$fs" "$MIRROR"
  fi
  [ -f "$KEY" ] || ssh-keygen -q -t ed25519 -N "" -f "$KEY"
  install -d -m 0700 "$fs/root/.ssh"
  install -m 0600 "$KEY.pub" "$fs/root/.ssh/authorized_keys"
  echo appliance-vm > "$fs/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 appliance-vm\n' > "$fs/etc/hosts"
  echo '/dev/vda / ext4 defaults,errors=remount-ro 0 1' > "$fs/etc/fstab"
  printf 'nameserver 10.0.2.3\n' > "$fs/etc/resolv.conf"
  printf '[Match]\nName=en* eth*\n[Network]\nDHCP=yes\n' > "$fs/etc/systemd/network/10-vm.network"
  chroot "$fs" systemctl enable systemd-networkd ssh >/dev/null 2>&1
  chroot "$fs" passwd -d root >/dev/null          # serial console login without a password
  say "disk image $VM_DIR/disk.img ($VM_DISK_SIZE, sparse)"
  rm -f "$VM_DIR/disk.img"
  truncate -s "$VM_DISK_SIZE" "$VM_DIR/disk.img"
  mkfs.ext4 -q -L vmroot -d "$fs" "$VM_DIR/disk.img"
  cp "$(ls "$fs"/boot/vmlinuz-* | tail -1)" "$VM_DIR/vmlinuz"
  cp "$(ls "$fs"/boot/initrd.img-* | tail -1)" "$VM_DIR/initrd.img"
}

wheels() {
  # Every dependency of the project as a wheel (pip's cache already holds llama-cpp-python built
  # for this CPU and Python 3.11), so the VM's pip installs without compiling.
  local py=${PYTHON:-/work/main/.venv/bin/python} out="$VM_DIR/wheels"
  mkdir -p "$out"
  "$py" -m pip wheel --quiet --wheel-dir "$out" "$ROOT" pip setuptools wheel
  rm -f "$out"/appliance-*.whl
  ls "$out" | wc -l
}

start() {
  [ -f "$VM_DIR/disk.img" ] || { echo "no $VM_DIR/disk.img: run build first" >&2; exit 1; }
  if [ -f "$VM_DIR/qemu.pid" ] && kill -0 "$(cat "$VM_DIR/qemu.pid")" 2>/dev/null; then
    say "already running (pid $(cat "$VM_DIR/qemu.pid"))"; return
  fi
  local cpu=host; [ "$VM_ACCEL" = kvm ] || cpu=max
  qemu-system-x86_64 -accel "$VM_ACCEL" -cpu "$cpu" -smp "$VM_CPUS" -m "$VM_MEM" \
    -kernel "$VM_DIR/vmlinuz" -initrd "$VM_DIR/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet" \
    -drive "file=$VM_DIR/disk.img,format=raw,if=virtio,cache=unsafe" \
    -nic "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:$VM_SSH_PORT-:22" \
    -display none -serial "file:$VM_DIR/console.log" -monitor none \
    -daemonize -pidfile "$VM_DIR/qemu.pid"
  say "qemu pid $(cat "$VM_DIR/qemu.pid")"
  wait_ssh
}

wait_ssh() {
  local t0=$SECONDS
  until "${SSH[@]}" true 2>/dev/null; do
    [ $((SECONDS - t0)) -lt 300 ] || { echo "no ssh after 300 s; see $VM_DIR/console.log" >&2; exit 1; }
    sleep 2
  done
  say "ssh up after $((SECONDS - t0)) s"
}

stop() {
  "${SSH[@]}" poweroff 2>/dev/null || true
  local pid; pid=$(cat "$VM_DIR/qemu.pid" 2>/dev/null || true)
  [ -n "$pid" ] || return 0
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || { say "stopped"; return; }; sleep 1; done
  kill "$pid" 2>/dev/null || true
}

# --- systemd-nspawn: the same rootfs booted with systemd as PID 1 (when KVM cannot boot it) ------
# --private-network: the container has only its own loopback (port 1337 stays inside it).
# A "reboot" is `systemctl reboot` inside (nspawn then exits) followed by nspawn-start again.
nspawn_start() {
  local fs="$VM_DIR/rootfs"
  if nspawn_leader >/dev/null 2>&1; then say "already running"; return; fi
  setsid systemd-nspawn -b -D "$fs" --machine=appliance-vm --register=no --keep-unit \
    --private-network --console=passive >"$VM_DIR/nspawn-console.log" 2>&1 < /dev/null &
  echo $! > "$VM_DIR/nspawn.pid"
  local t0=$SECONDS
  until nspawn_in systemctl is-system-running --wait >/dev/null 2>&1 \
        || [ "$(nspawn_in systemctl is-system-running 2>/dev/null)" = degraded ]; do
    [ $((SECONDS - t0)) -lt 180 ] || { echo "not booted after 180 s" >&2; exit 1; }
    sleep 1
  done
  say "booted (systemd PID 1) after $((SECONDS - t0)) s: $(nspawn_in systemctl is-system-running)"
}

nspawn_leader() {   # the container's PID 1 (systemd), as a host pid
  local pid; pid=$(cat "$VM_DIR/nspawn.pid" 2>/dev/null) || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  local child; child=$(ps -o pid= --ppid "$pid" | head -1 | tr -d ' ')
  [ -n "$child" ] && echo "$child"
}

nspawn_in() {   # run a command inside the container's namespaces
  local leader; leader=$(nspawn_leader) || { echo "container not running" >&2; return 1; }
  nsenter -t "$leader" -m -u -i -n -p -C -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root TERM=dumb LANG=C.UTF-8 "$@"
}

nspawn_stop() {
  local pid; pid=$(cat "$VM_DIR/nspawn.pid" 2>/dev/null) || return 0
  nspawn_in systemctl poweroff 2>/dev/null || true
  for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || { say "container stopped"; return; }; sleep 1; done
  kill "$pid" 2>/dev/null || true
}

case "${1:-}" in
  nspawn-start) nspawn_start ;;
  nspawn) shift; nspawn_in "$@" ;;
  nspawn-stop) nspawn_stop ;;
  build) build ;;
  wheels) wheels ;;
  start) start ;;
  wait) wait_ssh ;;
  ssh) shift; "${SSH[@]}" "$@" ;;
  put) tar -C "$(dirname "$2")" -cf - "$(basename "$2")" | "${SSH[@]}" "mkdir -p '$3' && tar -C '$3' -xf -" ;;
  stop) stop ;;
  *) sed -n '2,18p' "$0"; exit 2 ;;
esac
