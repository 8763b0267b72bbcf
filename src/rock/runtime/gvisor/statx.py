"""A preloaded shim that lets coreutils 9 (``ls``, ``stat``, ``du``) stat files under Debian's runsc.

Debian bookworm's runsc (0.0~20221219) answers EINVAL to ``statx`` and ``newfstatat`` whenever
the flags hold ``AT_NO_AUTOMOUNT``; gVisor accepted that flag only in 2023. coreutils 9 always
sets it, so in a sandbox of a current image ``ls /root`` (any ``ls`` of a named path) said
"Invalid argument" while Python's ``os.listdir`` and every read and write worked. That was seen
first in full-fork children, but a fresh sandbox fails alike: the fork has nothing to do with it.

gVisor has no automount points, so the flag means nothing there: the shim drops it and makes
the same system call. It is built once per host from the C below, with no libc of its own (raw
system calls, only ``__errno_location`` from the program's libc), so it loads into any glibc of
any age; musl ignores ``/etc/ld.so.preload`` and needs no shim (its ``stat`` never sets the flag).
It is bound read-only over the sandbox's ``/etc/ld.so.preload``, nothing written in its files.
A host without a C compiler goes without it, with a warning (scripts/setup-host.sh installs gcc).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger("rock.runtime.gvisor")

SHIM_DIR = "/.rock/statx"  # where the shim is bound in the sandbox
PRELOAD = "/etc/ld.so.preload"
_NUMBERS = {  # machine: (statx, newfstatat / fstatat), the raw-syscall instruction
    "x86_64": (332, 262, "syscall", '"rax"', ('"rdi"', '"rsi"', '"rdx"', '"r10"', '"r8"'), '"rcx", "r11", "memory"'),
    "aarch64": (291, 79, "svc 0", '"x8"', ('"x0"', '"x1"', '"x2"', '"x3"', '"x4"'), '"memory"'),
}

_SOURCE = r"""
#define AT_NO_AUTOMOUNT 0x800
extern int *__errno_location(void);

static long sys5(long n, long a, long b, long c, long d, long e) {
    register long r_n __asm__(%(nr)s) = n;
    register long r_a __asm__(%(a0)s) = a;
    register long r_b __asm__(%(a1)s) = b;
    register long r_c __asm__(%(a2)s) = c;
    register long r_d __asm__(%(a3)s) = d;
    register long r_e __asm__(%(a4)s) = e;
    register long r_ret __asm__(%(ret)s);
    __asm__ volatile ("%(insn)s" : "=r"(r_ret) : "r"(r_n), "r"(r_a), "r"(r_b), "r"(r_c), "r"(r_d), "r"(r_e)
                      : %(clobber)s);
    if (r_ret < 0 && r_ret > -4096) { *__errno_location() = (int)-r_ret; return -1; }
    return r_ret;
}

int statx(int dirfd, const char *path, int flags, unsigned int mask, void *buf) {
    return (int)sys5(%(statx)d, dirfd, (long)path, flags & ~AT_NO_AUTOMOUNT, mask, (long)buf);
}
int fstatat(int dirfd, const char *path, void *buf, int flags) {
    return (int)sys5(%(fstatat)d, dirfd, (long)path, (long)buf, flags & ~AT_NO_AUTOMOUNT, 0);
}
int fstatat64(int dirfd, const char *path, void *buf, int flags) {
    return fstatat(dirfd, path, buf, flags);
}
"""


def source() -> str | None:
    """The shim's C for this machine, or None where we have no system call numbers for it."""
    numbers = _NUMBERS.get(platform.machine())
    if numbers is None:
        return None
    statx, fstatat, insn, nr, args, clobber = numbers
    # The x86_64 return register is rax, the number's too; aarch64 returns in x0.
    ret = nr if platform.machine() == "x86_64" else args[0]
    return _SOURCE % {"statx": statx, "fstatat": fstatat, "insn": insn, "nr": nr, "ret": ret, "clobber": clobber,
                      **{f"a{i}": reg for i, reg in enumerate(args)}}


@functools.cache
def shim_dir(state_dir: str) -> Path | None:
    """A host folder holding ``statx.so`` and the ``ld.so.preload`` that names it, built once
    under ``state_dir``; None (and a warning) where it cannot be built."""
    code = source()
    cc = shutil.which("cc") or shutil.which("gcc")
    if code is None or cc is None:
        log.warning("no statx shim for gVisor sandboxes (%s): coreutils' ls and stat of a named path "
                    "fail there with EINVAL under this runsc", "no C compiler" if code else platform.machine())
        return None
    folder = Path(state_dir) / f"statx-{hashlib.sha256(code.encode()).hexdigest()[:12]}"
    if (folder / "ld.so.preload").is_file():
        return folder
    building = Path(f"{folder}.{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    (building / "statx.c").write_text(code)
    done = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-nostdlib", "-fno-stack-protector",
                           "-o", str(building / "statx.so"), str(building / "statx.c")],
                          capture_output=True, text=True)
    if done.returncode:
        log.warning("the statx shim for gVisor did not build: %s", done.stderr[-400:])
        shutil.rmtree(building, ignore_errors=True)
        return None
    (building / "ld.so.preload").write_text(f"{SHIM_DIR}/statx.so\n")
    for item in building.iterdir():
        item.chmod(0o644 if item.name != "statx.so" else 0o755)
    building.chmod(0o755)
    try:
        building.rename(folder)  # another runtime in this state dir may have built it first
    except OSError:
        shutil.rmtree(building, ignore_errors=True)
    return folder


def mount_point(lower: str) -> None:
    """An empty ``/etc/ld.so.preload`` in the image rootfs for the bind to land on: else runsc
    makes it in the sandbox's upper layer, and every snapshot carries it. Empty, the file means
    nothing to the other backends that share the rootfs; an image's own file is left alone
    (the bind hides it)."""
    etc = os.path.join(lower, "etc")
    if lower == "/" or os.path.islink(etc) or not os.path.isdir(etc):
        return
    try:
        os.close(os.open(os.path.join(etc, "ld.so.preload"), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644))
    except OSError:  # there already (or a link, which the bind hides as well)
        pass


def binds(state_dir: str) -> list[tuple[str, str, str]]:
    """The OCI binds (source, destination, mode) that preload the shim in a sandbox; none
    where it could not be built."""
    folder = shim_dir(state_dir)
    if folder is None:
        return []
    return [(str(folder), SHIM_DIR, "ro"), (str(folder / "ld.so.preload"), PRELOAD, "ro")]
