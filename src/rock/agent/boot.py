"""Entry point inside the sandbox; kept parseable by old Pythons so it can hand over.

Started as ``python3 -I -S boot.py --socket PATH --ready FIFO``. If the image's Python is
older than 3.8, re-exec with the host interpreter mounted at ROCK_HOST_PYTHON.
"""
import sys

if sys.version_info < (3, 8):
    import os

    host = os.environ.get("ROCK_HOST_PYTHON", "")
    if host and os.path.exists(host) and os.path.realpath(host) != os.path.realpath(sys.executable):
        os.execv(host, [host, "-I", "-S"] + sys.argv)
    sys.stderr.write("rock agent: needs Python 3.8+, found %s\n" % sys.version.split()[0])
    sys.exit(3)

sys.dont_write_bytecode = True
# Not os.path: importing os costs ~1.5 ms of every sandbox start (see fastos.py). The worker
# starts this file by its absolute path.
here = __file__.rsplit("/", 1)[0]
sys.path.insert(0, here.rsplit("/", 1)[0])
__import__(here.rsplit("/", 1)[1] + ".server").server.main(sys.argv[1:])
