"""``async`` vector envs in the env host: the lanes split into contiguous slices stepped in parallel.

Each slice is gymnasium's own ``SyncVectorEnv`` over its lanes, so every lane behaves exactly
as in one ``SyncVectorEnv`` of all of them (seeds ``seed + i``, NEXT_STEP autoreset); the host
steps slice 0 itself while forked worker processes step the others, then the slices' results
are joined along the batch axis as gymnasium would have batched them. Loaded by the env host by
path (see ``envhost._sibling``); imports numpy and gymnasium, never loaded by the agent.
"""

import multiprocessing
import os
import signal
import traceback

import numpy as np


def _slices(n, k):
    base, extra = divmod(n, k)
    out, start = [], 0
    for i in range(k):
        size = base + (1 if i < extra else 0)
        out.append((start, start + size))
        start += size
    return out


def _take(space, value, lo, hi):
    """Lanes [lo, hi) of a batched value of ``space`` (a single env's space)."""
    from gymnasium import spaces as S

    if isinstance(space, S.Dict):
        return {k: _take(s, value[k], lo, hi) for k, s in space.spaces.items()}
    if isinstance(space, S.Tuple):
        return tuple(_take(s, v, lo, hi) for s, v in zip(space.spaces, value))
    return value[lo:hi]


def _join(space, parts):
    """Slices of a batched value of ``space`` joined into one batch."""
    from gymnasium import spaces as S

    if isinstance(space, S.Dict):
        return {k: _join(s, [p[k] for p in parts]) for k, s in space.spaces.items()}
    if isinstance(space, S.Tuple):
        return tuple(_join(s, [p[i] for p in parts]) for i, s in enumerate(space.spaces))
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    return tuple(item for p in parts for item in p)  # spaces gymnasium batches as tuples (Text, ...)


def _join_infos(parts, sizes):
    """Vector infos of the slices as one: gymnasium's layout, a lane array and a ``_key`` mask per key."""
    n = sum(sizes)
    keys = []
    for info in parts:
        keys += [k for k in info if k not in keys]
    out = {}
    for key in keys:
        present = [info.get(key) for info in parts]
        if any(isinstance(p, dict) for p in present):
            out[key] = _join_infos([p if isinstance(p, dict) else {} for p in present], sizes)
            continue
        sample = next(p for p in present if p is not None)
        if isinstance(sample, np.ndarray):
            dtype = sample.dtype
            if key.startswith("_"):
                full = np.zeros(n, dtype=bool)
            elif dtype == object:  # noqa: E721 - a numpy dtype equals the type object, never is it
                full = np.full(n, None, dtype=object)
            else:
                full = np.zeros((n,) + sample.shape[1:], dtype=dtype)
            pos = 0
            for p, size in zip(present, sizes):
                if p is not None:
                    full[pos:pos + size] = p
                pos += size
            out[key] = full
        else:
            out[key] = sample
    return out


def _worker(conn, make_one, lo, hi, parent):
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the host
        if os.getppid() != parent:
            os._exit(1)
    except Exception:
        pass
    signal.signal(signal.SIGALRM, signal.SIG_IGN)  # the host's call timeouts are the host's
    signal.setitimer(signal.ITIMER_REAL, 0)
    from gymnasium.vector import AutoresetMode, SyncVectorEnv

    env = None
    try:
        env = SyncVectorEnv([make_one] * (hi - lo), autoreset_mode=AutoresetMode.NEXT_STEP)
        conn.send(("ok", None))
        while True:
            cmd, arg = conn.recv()
            if cmd == "step":
                result = env.step(arg)
            elif cmd == "reset":
                result = env.reset(seed=arg[0], options=arg[1])
            elif cmd == "render":
                result = env.envs[arg].render()
            elif cmd == "close":
                env.close()
                conn.send(("ok", None))
                return
            conn.send(("ok", result))
    except EOFError:
        return
    except BaseException as exc:  # the host turns it into the call's error
        try:
            conn.send(("error", "%s: %s\n%s" % (type(exc).__name__, exc, traceback.format_exc()[-1500:])))
        except OSError:
            pass


class SlicedVectorEnv:
    """A vector env of ``num_envs`` lanes stepped as ``workers`` parallel slices."""

    def __init__(self, make_one, num_envs, workers):
        from gymnasium.vector import AutoresetMode, SyncVectorEnv

        self.num_envs = num_envs
        self.bounds = _slices(num_envs, workers)
        self.sizes = [hi - lo for lo, hi in self.bounds]
        ctx = multiprocessing.get_context("fork")
        self.conns, self.procs = [], []
        for lo, hi in self.bounds[1:]:
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(theirs, make_one, lo, hi, os.getpid()), daemon=True)
            proc.start()
            theirs.close()
            self.conns.append(mine)
            self.procs.append(proc)
        lo, hi = self.bounds[0]
        self.local = SyncVectorEnv([make_one] * (hi - lo), autoreset_mode=AutoresetMode.NEXT_STEP)
        for conn in self.conns:
            self._answer(conn)
        self.single_observation_space = self.local.single_observation_space
        self.single_action_space = self.local.single_action_space
        self.metadata = self.local.metadata
        self.render_mode = self.local.render_mode
        self.spec = getattr(self.local, "spec", None)

    def _answer(self, conn):
        try:
            status, value = conn.recv()
        except EOFError:
            raise RuntimeError("a vector worker process died")
        if status != "ok":
            raise RuntimeError("a vector worker failed: " + value)
        return value

    def _all(self, cmd, args, local):
        """``cmd`` on every slice at once; every worker's answer is read even when one fails,
        so the pipes stay in step for the next call."""
        for conn, arg in zip(self.conns, args[1:]):
            conn.send((cmd, arg))
        error = None
        try:
            results = [local(args[0])]
        except Exception as exc:  # noqa: BLE001 - raised after the workers answered
            results, error = [None], exc
        for conn in self.conns:
            try:
                results.append(self._answer(conn))
            except RuntimeError as exc:
                error = error or exc
        if error is not None:
            raise error
        return results

    def reset(self, seed=None, options=None):
        """Reset every slice (an int seed gives env i ``seed + i``): the joined observations and infos."""
        if isinstance(seed, int):
            seeds = [list(range(seed + lo, seed + hi)) for lo, hi in self.bounds]
        elif isinstance(seed, list):
            seeds = [seed[lo:hi] for lo, hi in self.bounds]
        else:
            seeds = [None] * len(self.bounds)
        parts = self._all("reset", [(s, options) for s in seeds],
                          lambda a: self.local.reset(seed=a[0], options=a[1]))
        obs = _join(self.single_observation_space, [p[0] for p in parts])
        return obs, _join_infos([p[1] for p in parts], self.sizes)

    def step(self, actions):
        """Step every slice with its part of ``actions``: the joined five-tuple."""
        space = self.single_action_space
        parts = self._all("step", [_take(space, actions, lo, hi) for lo, hi in self.bounds], self.local.step)
        obs = _join(self.single_observation_space, [p[0] for p in parts])
        reward, terminated, truncated = (np.concatenate([p[i] for p in parts]) for i in (1, 2, 3))
        return obs, reward, terminated, truncated, _join_infos([p[4] for p in parts], self.sizes)

    def render_one(self, index):
        """A frame of env ``index``, from the slice that holds it."""
        for k, (lo, hi) in enumerate(self.bounds):
            if lo <= index < hi:
                if k == 0:
                    return self.local.envs[index].render()
                self.conns[k - 1].send(("render", index - lo))
                return self._answer(self.conns[k - 1])
        raise IndexError(index)

    def close(self):
        """Close the local slice and ask each worker process to close its own."""
        for conn in self.conns:
            try:
                conn.send(("close", None))
            except OSError:
                pass
        self.local.close()
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self.conns:
            conn.close()
