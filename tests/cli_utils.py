"""`lipsync ARGS` run through the console entry point inside the test process, reported as a finished process is
(exit code, stdout, stderr): no interpreter start and no torch import per check. What a fresh process would add to
stderr is kept: main()'s own logging handler (pytest's are set aside meanwhile), a fresh interpreter's warning
filters with warnings printed to stderr, and fd-level capture (capfd) for what ffmpeg or C code writes. main()'s
SIGTERM handler is replaced by the test process's own afterwards. Checks that need a process of its own (exit code
as the shell sees it, signals, resource limits, another environment) keep starting one."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import warnings

import pytest

# a fresh interpreter's default filters (no -W, no PYTHONWARNINGS), in precedence order
FRESH_FILTERS = [("default", DeprecationWarning, "__main__"), ("ignore", DeprecationWarning, ""),
                 ("ignore", PendingDeprecationWarning, ""), ("ignore", ImportWarning, ""),
                 ("ignore", ResourceWarning, "")]


_HELD: dict = {}  # the running test's capfd, for a module's helpers that run the CLI in process


@pytest.fixture(autouse=True)
def hold_capfd(capfd):
    """Imported into a test module, hands each of its tests' fd-level capture to held_capfd()."""
    _HELD["capfd"] = capfd
    yield
    _HELD.clear()


def held_capfd():
    return _HELD["capfd"]


def _print_warning(message, category, filename, lineno, file=None, line=None):
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def lipsync_in_process(capfd, *args) -> subprocess.CompletedProcess:
    from lipsync_cli.cli import main

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    sigterm = signal.getsignal(signal.SIGTERM)
    capfd.readouterr()
    root.handlers.clear()  # so main()'s logging.basicConfig installs its stderr handler, as in a fresh process
    try:
        with warnings.catch_warnings():
            warnings.resetwarnings()
            for action, category, module in reversed(FRESH_FILTERS):
                warnings.filterwarnings(action, category=category, module=module)
            warnings.showwarning = _print_warning
            try:
                main(list(map(str, args)))
                code = 0
            except SystemExit as exit_info:
                code = exit_info.code
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        signal.signal(signal.SIGTERM, sigterm)
    out, err = capfd.readouterr()
    return subprocess.CompletedProcess(list(args), 0 if code is None else code, out, err)
