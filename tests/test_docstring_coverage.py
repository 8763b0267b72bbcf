"""Public docstrings across ``src/rock`` stay at or above 85% (``scripts/docstrings.py`` counts
them: modules, and classes, functions and methods whose names do not start with ``_``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "docstrings.py"
FLOOR = 85.0


def _measure():
    spec = importlib.util.spec_from_file_location("docstrings_measure", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_public_docstrings_cover_at_least_85_percent():
    measure = _measure()
    names = [ok for path in sorted(measure.ROCK.rglob("*.py")) for _, ok in measure.public_names(path)]
    percent = 100 * sum(names) / len(names)
    assert percent >= FLOOR, (f"public docstrings {percent:.1f}% < {FLOOR}%: `python3 scripts/docstrings.py "
                              "--missing <package>` lists what lacks one")


def test_the_measure_counts_what_it_should(tmp_path):
    # the control: public names count, private ones and nested functions do not
    measure = _measure()
    source = ('"""m"""\nclass A:\n    """a"""\n    def f(self):\n        def inner():\n            pass\n'
              '    def _g(self):\n        pass\ndef h():\n    """h"""\n')
    path = tmp_path / "zz_measure_probe.py"
    path.write_text(source)
    found = dict(measure.public_names(path, root=tmp_path))
    assert found == {"rock.zz_measure_probe": True, "rock.zz_measure_probe.A": True,
                     "rock.zz_measure_probe.A.f": False, "rock.zz_measure_probe.h": True}
