"""Where a run came from, recorded at ``init`` as MLflow and W&B do: the git commit of the working
directory (and whether the tree had uncommitted changes), the command line, the Python and package
versions, and the host. Sent as ``provenance`` in ``RunCreate``; shown on the run page."""

from __future__ import annotations

import os
import platform
import re
import shlex
import socket
import subprocess
import sys
from importlib import metadata
from typing import Any

MAX_PACKAGES = 300
# Command-line values that look like credentials are not recorded.
_SECRET_FLAG = re.compile(r"^--?[\w-]*(token|password|passwd|secret|api[_-]?key|credential)[\w-]*$", re.I)


def git_state(cwd: str | None = None) -> dict[str, Any] | None:
    """``{"commit", "dirty", "branch"}`` of the git checkout holding ``cwd``, or None outside one
    (or without git). Dirty means tracked files differ from the commit (untracked files do not count)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    return {"commit": commit, "dirty": bool(status), "branch": branch if branch != "HEAD" else None}


def command_line(argv: list[str] | None = None) -> str:
    """The command that started this process, shell-quoted, with credential-like values hidden."""
    words = list(sys.argv if argv is None else argv)
    shown: list[str] = []
    hide_next = False
    for word in words:
        flag, eq, _value = word.partition("=")
        if hide_next:
            shown.append("***")
            hide_next = False
        elif _SECRET_FLAG.match(flag):
            shown.append(f"{flag}=***" if eq else word)
            hide_next = not eq
        else:
            shown.append(word)
    python = os.path.basename(sys.executable) or "python"
    return shlex.join([python, *shown]) if shown else python


def package_versions() -> dict[str, str]:
    """Versions of the installed distributions this process has imported (at most 300)."""
    imported = {name.split(".", 1)[0] for name in list(sys.modules)}
    found: dict[str, str] = {}
    try:
        owners = metadata.packages_distributions()
    except Exception:  # broken metadata somewhere in the environment
        owners = {}
    for module in sorted(imported):
        for dist in owners.get(module, []):
            if dist not in found and len(found) < MAX_PACKAGES:
                try:
                    found[dist] = metadata.version(dist)
                except metadata.PackageNotFoundError:
                    continue
    return found


def collect() -> dict[str, Any]:
    """The provenance of this process; git is asked about the running script's directory (else the
    working directory). Never raises: a part that cannot be read is None."""
    try:
        version = metadata.version("collapsewatch")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    script = sys.argv[0] if sys.argv else ""
    where = os.path.dirname(os.path.abspath(script)) if script and os.path.isfile(script) else None
    return {
        "git": git_state(where),
        "command": command_line(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "host": socket.gethostname(),
        "collapsewatch": version,
        "packages": package_versions(),
    }
