"""Python runs this at start-up when tests/_netguard is on PYTHONPATH (tests/conftest.py puts it there for the
test session): every subprocess of the tests gets the loopback-only sockets of ``loopback_only.py``."""
import importlib.machinery
import importlib.util
import os
import sys

import loopback_only

loopback_only.install()

# This file shadows any other sitecustomize (a distribution's, say); that one still runs, after the guard.
_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.machinery.PathFinder.find_spec(
    "sitecustomize", [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
)
if _spec is not None and _spec.loader is not None:
    _spec.loader.exec_module(importlib.util.module_from_spec(_spec))
