"""Per-env global RNG state for the env host (``host.py``): every env of a host gets its own
``random`` / ``numpy.random`` state, so the observations of one env do not depend on what the
other envs of the host do.

Standard library only (numpy is used only if the host already imported it). Loaded by the env
host by path, like its other siblings.
"""

import sys


class RngIsolation:
    """Swaps the global ``random`` and ``numpy.random`` states so each env has its own.

    gem's games draw from the module-level generators (``random.choice`` in Game2048.step, ...),
    which in-process would make one env's outcomes depend on every other env's calls. Saving
    and restoring through ``getstate()``/``set_state()`` costs ~130 us per switch (as much as
    the step of a simple game), so the MT19937 states (2,500 bytes each) are copied directly
    from memory through memoryviews of ctypes arrays laid over them, into buffers each env
    keeps (~0.1 us a copy); the layout is verified
    against ``getstate()`` at start-up and the slow API is used if it does not match. Not
    covered: numpy's cached second Gaussian of ``np.random.normal`` (rarely used by text games).

    An env is any object with an ``rng`` attribute (None until its first switch-out).
    """

    SIZE = 2500  # int index + uint32[624] (CPython), uint32[624] + int pos (numpy)

    def __init__(self):
        import random

        self.random = random
        self.owner = None
        self.mode = "slow"
        self.np = sys.modules.get("numpy")
        try:
            self._init_fast()
            self.mode = "fast"
        except Exception:
            self._fast = None

    def _init_fast(self):
        import ctypes
        import struct

        inst = self.random._inst
        py_addr = id(inst) + 2 * ctypes.sizeof(ctypes.c_void_p)  # after PyObject_HEAD
        values = struct.unpack("=i624I", ctypes.string_at(py_addr, self.SIZE))
        state = self.random.getstate()[1]
        if values[1:] != state[:624] or values[0] != state[624]:
            raise RuntimeError("unexpected random.Random layout")
        np_addr = None
        if self.np is not None:
            bitgen = self.np.random.mtrand._rand._bit_generator
            np_addr = bitgen.ctypes.state_address
            values = struct.unpack("=624Ii", ctypes.string_at(np_addr, self.SIZE))
            nstate = bitgen.state["state"]
            if list(values[:624]) != [int(k) for k in nstate["key"]] or values[624] != nstate["pos"]:
                raise RuntimeError("unexpected MT19937 layout")
        view = ctypes.c_char * self.SIZE
        self._fast = (inst, memoryview(view.from_address(py_addr)).cast("B"),
                      memoryview(view.from_address(np_addr)).cast("B") if np_addr else None)
        probe = self.save()
        first = [self.random.random() for _ in range(700)]
        self.load(probe)
        if first != [self.random.random() for _ in range(700)]:
            raise RuntimeError("random state copy does not round-trip")

    def save(self):
        """The global random state (Python's and NumPy's) as the current env left it."""
        if self._fast is None:
            return (self.random.getstate(), self.np.random.get_state() if self.np is not None else None)
        inst, py_mem, np_mem = self._fast
        # memoryviews of private buffers: the next save of this env copies into them in place
        return [memoryview(bytearray(py_mem)), memoryview(bytearray(np_mem)) if np_mem is not None else None,
                inst.gauss_next]

    def load(self, state):
        """Put back a state ``save`` returned, before its env runs again."""
        if self._fast is None:
            self.random.setstate(state[0])
            if state[1] is not None:
                self.np.random.set_state(state[1])
            return
        inst, py_mem, np_mem = self._fast
        py_mem[:] = state[0]
        inst.gauss_next = state[2]
        if np_mem is not None:
            np_mem[:] = state[1]

    def enter(self, env):
        """Make ``env``'s states the global ones (a new env starts from fresh entropy, like a new
        process would)."""
        owner = self.owner
        if owner is env:
            return
        fast = self._fast
        state = env.rng
        if fast is None or owner is None or owner.rng is None or state is None:
            if owner is not None:
                owner.rng = self.save()
            if state is None:
                self.random.seed()
                if self.np is not None:
                    self.np.random.seed()
            else:
                self.load(state)
        else:  # save() into the owner's buffers and load(), written out: this runs for every env of every vector step
            inst, py_mem, np_mem = fast
            saved = owner.rng
            saved[0][:] = py_mem
            saved[2] = inst.gauss_next
            py_mem[:] = state[0]
            inst.gauss_next = state[2]
            if np_mem is not None:
                saved[1][:] = np_mem
                np_mem[:] = state[1]
        self.owner = env

    def forget(self, env):
        """Forget ``env`` (closed): its state is no longer kept."""
        if self.owner is env:
            self.owner = None
