"""The guest's initramfs: static busybox, the kernel's 9p/virtio/zram modules and :data:`INIT`.

/init loads the modules, mounts the host's root read-only over 9p (tag ``hostroot``), puts fresh
proc, sys, dev and tmpfs mounts over it, mounts the writable results share (tag ``out``) at
``/tmp/lab-out``, mounts the extra read-only shares listed in its ``mounts`` file (a checkout or a
venv under ``/tmp``, ``/run``, ``/var/tmp`` or ``/dev/shm``, which the tmpfs mounts hide), chroots in and runs ``/tmp/lab-out/job.sh`` (written by :mod:`.vm`), then
powers off.  The cpio archive (``newc``) is written here in Python, so no ``cpio`` is needed.
"""
from __future__ import annotations

import gzip
import io
import os
import shutil
from pathlib import Path

BUSYBOX = "/bin/busybox"

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m || echo "lab: insmod $m failed"; done
O=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o $O,ro,cache=loose hostroot /host || mount -t 9p -o $O,ro hostroot /host || { echo "lab: no host root"; poweroff -f; }
mount -t proc proc /host/proc
mount -t sysfs sys /host/sys
mount -t devtmpfs dev /host/dev
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts devpts /host/dev/pts
mount -t tmpfs shm /host/dev/shm
mount -t tmpfs tmp /host/tmp
mount -t tmpfs run /host/run
mount -t tmpfs vartmp /host/var/tmp
mkdir -p /host/tmp/lab-out
mount -t 9p -o $O out /host/tmp/lab-out || { echo "lab: no results share"; poweroff -f; }
# a checkout or venv that lives under a folder hidden by the tmpfs mounts above comes as its own share
if [ -f /host/tmp/lab-out/mounts ]; then
  while read tag path; do
    mkdir -p "/host$path" && mount -t 9p -o $O,ro "$tag" "/host$path" || echo "lab: cannot mount $tag at $path"
  done < /host/tmp/lab-out/mounts
fi
echo "lab: $(uname -r) up"
chroot /host /bin/sh /tmp/lab-out/job.sh >/host/tmp/lab-out/guest.log 2>&1
echo $? > /host/tmp/lab-out/rc
sync
echo "lab: done rc $(cat /host/tmp/lab-out/rc)"
poweroff -f
"""


def _cpio_entry(out: io.BufferedIOBase, name: str, mode: int, data: bytes = b"", ino: int = 1) -> None:
    """One ``newc`` cpio record."""
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
    header = b"070701" + b"".join(b"%08X" % f for f in fields)
    out.write(header + name.encode() + b"\0")
    out.write(b"\0" * ((4 - (110 + len(name) + 1) % 4) % 4))
    out.write(data)
    out.write(b"\0" * ((4 - len(data) % 4) % 4))


def build_initramfs(kdir: Path, out: Path | None = None) -> Path:
    """Write ``initramfs.cpio.gz`` (in ``out``, default ``kdir``) from busybox, ``kdir/modules`` and :data:`INIT`."""
    if not Path(BUSYBOX).exists() or shutil.which("busybox") is None:
        raise FileNotFoundError("busybox (Debian busybox-static) is not installed")
    buf = io.BytesIO()
    ino = 1
    for d in ("bin", "dev", "proc", "sys", "host", "lib", "lib/modules", "tmp"):
        _cpio_entry(buf, d, 0o040755, ino=ino)
        ino += 1
    _cpio_entry(buf, "bin/busybox", 0o100755, Path(BUSYBOX).read_bytes(), ino)
    ino += 1
    _cpio_entry(buf, "init", 0o100755, INIT.encode(), ino)
    ino += 1
    for f in sorted((kdir / "modules").iterdir()):
        _cpio_entry(buf, f"lib/modules/{f.name}", 0o100644, f.read_bytes(), ino)
        ino += 1
    _cpio_entry(buf, "TRAILER!!!", 0, ino=0)
    path = (out or kdir) / "initramfs.cpio.gz"
    path.write_bytes(gzip.compress(buf.getvalue(), mtime=0))
    os.chmod(path, 0o644)
    return path
