"""Print requirements/lock.txt: the exact installed versions of everything `daedalus[test]` needs.

    .venv/bin/python requirements/lock.py > requirements/lock.txt     # what `make lock` runs

It walks the requirements of the installed `daedalus` distribution (with the `test` extra)
and of each distribution they bring in, as this environment's markers select them, and pins
each to the version installed here: the versions `make test` ran with in this environment,
nothing else that happens to be installed (pip itself, tools installed by hand). No network.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = "daedalus"
EXTRAS = ("test",)


def closure(root: str = ROOT, extras: tuple[str, ...] = EXTRAS) -> dict[str, str]:
    """Canonical name -> installed version of every distribution `root[extras]` needs."""
    pins: dict[str, str] = {}
    done: dict[str, set[str]] = {}  # the extras already expanded per distribution
    todo: list[tuple[str, set[str], str]] = [(root, set(extras), root)]
    while todo:
        name, wanted, via = todo.pop()
        key = canonicalize_name(name)
        if key in done and wanted <= done[key]:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            sys.exit(f"lock: {name} (needed by {via}) is not installed here: run `make install` first")
        done.setdefault(key, set()).update(wanted)
        if key != canonicalize_name(root):
            pins[key] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in ("", *done[key])):
                continue
            todo.append((req.name, set(req.extras), key))
    return pins


def main() -> None:
    pins = closure()
    print(
        "# The exact versions the test suite passed with: daedalus[test] and everything it needs.\n"
        f"# Written by `make lock` (requirements/lock.py) on {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}; do not edit.\n"
        "# Used as constraints: pip install -c requirements/lock.txt -e '.[test]' (make install)."
    )
    for name in sorted(pins):
        print(f"{name}=={pins[name]}")


if __name__ == "__main__":
    main()
