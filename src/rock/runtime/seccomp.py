"""The seccomp filter of bwrap sandboxes, as classic BPF (``struct sock_filter[]``) that bwrap
loads from a file descriptor.

bwrap has no filter of its own. What matters most from Docker's default profile for a root
sandbox: no new user namespaces (full capabilities inside one: mounts, more kernel surface),
no kernel keyring (uid 0 shares root's with the host), no bpf/userfaultfd/perf/io_uring.
"""

from __future__ import annotations

import errno
import functools
import logging
import platform
import struct

log = logging.getLogger("rock.runtime.bwrap")

CLONE_NEWUSER = 0x10000000
_ARCHES = {  # machine: (AUDIT_ARCH, unshare, clone, clone3, denied: bpf keyctl add_key request_key
    #                      userfaultfd perf_event_open io_uring_setup/enter/register)
    "x86_64": (0xC000003E, 272, 56, 435, (321, 250, 248, 249, 323, 298, 425, 426, 427)),
    "aarch64": (0xC00000B7, 97, 220, 435, (280, 219, 217, 218, 282, 241, 425, 426, 427)),
}
_ALLOW, _EPERM, _ENOSYS = 0x7FFF0000, 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS


@functools.cache
def seccomp_program() -> bytes | None:
    """The filter as classic BPF (``struct sock_filter[]``), or None on an unknown machine."""
    arch = _ARCHES.get(platform.machine())
    if arch is None:
        log.warning("no seccomp filter for %s: bwrap sandboxes run without one", platform.machine())
        return None
    audit_arch, unshare, clone, clone3, denied = arch
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06  # BPF_LD|W|ABS, BPF_JMP|J*|K, BPF_RET|K
    program = [
        (ld, 0, 0, 4),  # seccomp_data.arch: another ABI (i386 on x86_64) has other numbers
        (jeq, 0, "nosys", audit_arch),
        (ld, 0, 0, 0),  # seccomp_data.nr
        (jge, "nosys", 0, 0x40000000),  # the x32 ABI
        (jeq, "flags", 0, unshare),
        (jeq, "flags", 0, clone),
        (jeq, "nosys", 0, clone3),  # its flags are behind a pointer: make libc fall back to clone
        *[(jeq, "perm", 0, nr) for nr in denied],
        (ret, 0, 0, _ALLOW),
        "flags", (ld, 0, 0, 16),  # low half of args[0]
        (jset, "perm", 0, CLONE_NEWUSER),
        (ret, 0, 0, _ALLOW),
        "perm", (ret, 0, 0, _EPERM),
        "nosys", (ret, 0, 0, _ENOSYS),
    ]
    labels: dict[str, int] = {}
    insns = []
    for item in program:
        if isinstance(item, str):
            labels[item] = len(insns)
        else:
            insns.append(item)

    def offset(target, i):
        return labels[target] - i - 1 if isinstance(target, str) else target

    return b"".join(struct.pack("=HBBI", c, offset(jt, i), offset(jf, i), k) for i, (c, jt, jf, k) in enumerate(insns))


# The same policy for gVisor, in the OCI spec's form: runsc (with --oci-seccomp) has the sentry
# apply it to the sandbox's processes. gVisor keeps a user namespace inside its own kernel, but
# one still gives its creator every capability there and more of the sentry to reach.
DENIED_NAMES = ("bpf", "keyctl", "add_key", "request_key", "userfaultfd", "perf_event_open",
                "io_uring_setup", "io_uring_enter", "io_uring_register")


def oci_profile() -> dict:
    """``linux.seccomp`` of an OCI spec: no new user namespaces, none of ``DENIED_NAMES`` (EPERM)."""
    newuser = {"index": 0, "value": CLONE_NEWUSER, "valueTwo": CLONE_NEWUSER, "op": "SCMP_CMP_MASKED_EQ"}
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["unshare", "clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM, "args": [newuser]},
            {"names": list(DENIED_NAMES), "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM},
        ],
    }
