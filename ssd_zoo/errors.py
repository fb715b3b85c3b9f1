"""How the command-line programs report the errors their users cause: one line on stderr, exit code 2.

A user's mistake (a missing, unreadable or corrupt file, a bad config, an unknown name or key, an invalid
number) surfaces in the library as a ``ValueError``, ``OSError`` (``FileNotFoundError``, ...), ``KeyError``,
``ImportError`` (a missing optional extra) or :class:`InputError`, with a message that says what was expected,
what was found and where. :func:`run_main` runs a program's ``main`` and prints such an error as

    ssd-zoo detect: weights: expected a checkpoint file at 'x.pth', found nothing there

with exit code 2 (as argparse does for bad arguments); ``--debug`` on the command line, or ``SSD_ZOO_DEBUG=1``
in the environment, lets the traceback through instead. Any other exception is a programming error and raises
as usual. Every program (``ssd-zoo``, ``python -m ssd_zoo.data.shapes``, ``recipes/train_voc.py``,
``recipes/eval_voc.py``) uses this module, so they behave alike.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from types import ModuleType

DEBUG_ENV = "SSD_ZOO_DEBUG"
DEBUG_FLAG = "--debug"
USAGE_EXIT = 2  # what argparse exits with on a bad argument


class InputError(RuntimeError):
    """A failure caused by the input rather than the code: a corrupt or truncated file, a download that cannot
    be made, a device that is not there. A RuntimeError (as torch's own errors for such cases are), and one
    that :func:`run_main` reports in one line."""


class CheckpointError(InputError, ValueError):
    """A file that is not a readable checkpoint (truncated, corrupt, not a torch file, or refused by
    ``weights_only=True``); the message names the file."""


class CommandLineExit(SystemExit):
    """Raised by :func:`run_main` after it printed the one-line report: exits with code 2 (``code``), and
    ``str()`` of it is the report, for callers that run a ``main`` in-process (``pytest.raises(SystemExit,
    match=...)``)."""

    def __init__(self, message: str) -> None:
        super().__init__(USAGE_EXIT)
        self.message = message

    def __str__(self) -> str:
        return self.message


def require(module: str, extra: str) -> ModuleType:
    """Import the optional dependency ``module`` (e.g. ``"onnxruntime"``, ``"pycocotools.coco"``), or raise
    ImportError naming it and the extra that installs it: ``pip install 'ssd_zoo[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{module} is not installed ({error}); install it with pip install 'ssd_zoo[{extra}]'") from None


USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, KeyError, ImportError, InputError)


def one_line(error: BaseException) -> str:
    """The error's message on one line (``KeyError`` without its quotes, whitespace runs made one space)."""
    text = error.args[0] if isinstance(error, KeyError) and len(error.args) == 1 else str(error)
    text = " ".join(str(text).split())
    return text or type(error).__name__


def debug_requested(argv: Sequence[str]) -> bool:
    """``--debug`` among the arguments, or ``SSD_ZOO_DEBUG`` set to anything but ``""``/``0``."""
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """Let ``parser`` accept (and document) ``--debug``; :func:`run_main` reads it from the arguments itself."""
    parser.add_argument(DEBUG_FLAG, action="store_true",
                        help=f"show the full traceback of an error (also: {DEBUG_ENV}=1)")


def report(prog: str, message: str) -> CommandLineExit:
    """Print ``prog: message`` as one line on stderr; returns the exception that exits with code 2."""
    message = " ".join(message.split())
    if not message.startswith(f"{prog}:") and not message.startswith(f"{prog.split()[0]} "):
        message = f"{prog}: {message}"
    print(message, file=sys.stderr, flush=True)
    return CommandLineExit(message)


def run_main(main: Callable[[list[str]], object], prog: str, argv: Sequence[str] | None = None,
             expected: tuple[type[BaseException], ...] = ()) -> int:
    """Run ``main(argv)`` (``sys.argv[1:]`` when None) under the policy above; returns ``main``'s exit code.

    ``main`` returns an exit code (an int; anything else counts as 0). A user's error is printed in one line
    and raised again as :class:`CommandLineExit` (a ``SystemExit`` with code 2, whose text is the line).
    ``expected``: more exception types that are the user's or the data's, not the code's (e.g. the recipe's
    non-finite loss). A ``SystemExit`` with a text (``raise SystemExit("prog: what went wrong")``) is reported
    the same way.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    try:
        result = main(argv)
    except SystemExit as stop:
        if not isinstance(stop.code, str) or isinstance(stop, CommandLineExit):
            raise
        if debug:
            traceback.print_exc()
        raise report(prog, stop.code) from None
    except USER_ERRORS + expected as error:
        if debug:
            raise
        raise report(prog, one_line(error)) from None
    return result if isinstance(result, int) else 0
