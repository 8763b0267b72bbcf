"""The agent's threads come from one pool (rock.agent.threads): finished work leaves its thread
waiting for the next, work that finds none idle gets a new one, an error in one piece of work
does not take the thread's next work with it, and a forked child starts with no idle threads
(its parent's are not in it)."""

import _thread
import os

from rock.agent import threads

WAIT = 10.0


def _run_once(pool, fn, *args):
    ended = threads.Event()

    def work():
        try:
            fn(*args)
        finally:
            ended.set()

    pool.submit(work)
    assert ended.wait(WAIT)


def _until(condition, what):
    """Wait until ``condition()`` holds (threads go back to a pool just after their work)."""
    for _ in range(int(WAIT / 0.005)):
        if condition():
            return
        threads.Event().wait(0.005)
    raise AssertionError(what)


def _idle(pool, n):
    def enough():
        with pool._lock:
            return len(pool._idle) == n
    _until(enough, f"the pool does not have {n} idle threads")


def test_finished_work_leaves_its_thread_for_the_next():
    pool = threads.Pool()
    seen = []
    for _ in range(5):
        _run_once(pool, lambda: seen.append(_thread.get_ident()))
        _idle(pool, 1)
    assert len(seen) == 5 and len(set(seen)) == 1, seen  # one thread did all five, one after another


def test_work_that_finds_no_idle_thread_gets_a_new_one():
    pool = threads.Pool()
    first_in, second_done = threads.Event(), threads.Event()
    idents = []

    def first():
        idents.append(_thread.get_ident())
        first_in.set()
        assert second_done.wait(WAIT)  # held until the second ran: on the same thread it never would

    def second():
        idents.append(_thread.get_ident())
        second_done.set()

    pool.submit(first)
    assert first_in.wait(WAIT)
    pool.submit(second)
    assert second_done.wait(WAIT), "the second piece of work waited for the first one's thread"
    assert len(set(idents)) == 2


def test_an_error_is_reported_and_the_thread_takes_the_next_work(capfd):
    pool = threads.Pool()
    idents = []

    def failing():
        idents.append(_thread.get_ident())
        raise ValueError("boom in a pooled thread")

    _run_once(pool, failing)
    _idle(pool, 1)
    _run_once(pool, lambda: idents.append(_thread.get_ident()))
    assert idents[0] == idents[1]
    assert "ValueError: boom in a pooled thread" in capfd.readouterr().err


def test_idle_threads_beyond_the_cap_end():
    pool = threads.Pool(idle_max=1)
    release, lock, started = threads.Event(), threads.Lock(), []
    ended = [threads.Event() for _ in range(3)]

    def work(done):
        with lock:
            started.append(_thread.get_ident())
        assert release.wait(WAIT)
        done.set()

    for done in ended:  # three at once: three threads
        pool.submit(work, (done,))
    _until(lambda: len(started) == 3, "the three pieces of work did not all start")
    assert len(set(started)) == 3
    release.set()
    assert all(done.wait(WAIT) for done in ended)
    _idle(pool, 1)  # the two past the cap end once their work is done
    threads.Event().wait(0.05)  # and none comes back after that
    assert len(pool._idle) == 1


def test_a_forked_child_has_no_idle_threads_of_its_parents_and_spawns_its_own():
    threads.POOL.prestart(2)
    assert threads.POOL._idle  # the control: the parent has idle threads to hand work to
    pid = os.fork()
    if pid == 0:  # the child: handing work to one of the parent's idle threads would never run it
        code = 1
        try:
            if not threads.POOL._idle:
                done = threads.spawn_joinable(lambda: None)
                code = 0 if done.wait(WAIT) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
