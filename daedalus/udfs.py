"""Importing a feature's `udf: module:function` from the working directory."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable


def import_udf(function: str) -> Callable:
    """The function named `module:function`, the working directory's module first.

    The working directory goes to the front of sys.path even when it is already on it:
    Snakemake puts the workflow's own directory before it in job processes.
    """
    module_name, fn_name = function.split(":", 1)
    cwd = os.getcwd()
    if sys.path[:1] != [cwd]:
        if cwd in sys.path:
            sys.path.remove(cwd)
        sys.path.insert(0, cwd)
    module = importlib.import_module(module_name)
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise AttributeError(f"module {module_name!r} has no function {fn_name!r}")
    return fn
