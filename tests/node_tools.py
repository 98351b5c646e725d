"""The Node.js tools of the browser audits (axe-core, Lighthouse), installed on first use.

They are pinned in tests/tools/package.json and package-lock.json; `npm ci` installs exactly the
locked versions into tests/tools/node_modules (git-ignored) whenever that is missing or was
installed from another lock file, so the README's one test command stays the only set-up step.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from harness import ROOT

TOOLS = ROOT / "tests" / "tools"
MODULES = TOOLS / "node_modules"
STAMP = MODULES / ".installed-from.sha256"  # the lock file's hash at the last `npm ci`
NPM_TIMEOUT = 900  # seconds; Lighthouse and its dependencies are some 200 packages


class NodeToolsMissing(RuntimeError):
    """npm is missing or could not install the tools."""


def ensure_node_tools() -> Path:
    """Install the locked tools unless node_modules already holds them; return node_modules."""
    want = hashlib.sha256((TOOLS / "package-lock.json").read_bytes()).hexdigest()
    if STAMP.is_file() and STAMP.read_text().strip() == want:
        return MODULES
    npm = shutil.which("npm")
    if npm is None:
        raise NodeToolsMissing(
            "npm is not installed, and the accessibility and Lighthouse checks need it: install "
            "Node.js 18.16 or newer with npm (Debian: apt-get install nodejs npm; or "
            "https://nodejs.org), then run the tests again; they install their npm packages "
            "themselves (tests/tools/package.json)"
        )
    command = [npm, "ci", "--no-audit", "--no-fund", "--prefix", str(TOOLS)]
    try:
        done = subprocess.run(
            command, cwd=TOOLS, capture_output=True, text=True, timeout=NPM_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise NodeToolsMissing(f"{' '.join(command)} took over {NPM_TIMEOUT} s") from exc
    if done.returncode != 0:
        raise NodeToolsMissing(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    STAMP.write_text(want + "\n")
    return MODULES


def axe_script() -> Path:
    """Return axe-core's browser script."""
    return ensure_node_tools() / "axe-core" / "axe.min.js"


def lighthouse_cli() -> Path:
    """Return Lighthouse's command-line entry point (run it with node)."""
    return ensure_node_tools() / "lighthouse" / "cli" / "index.js"


def node() -> str:
    """Return the node executable."""
    found = shutil.which("node")
    if found is None:
        raise NodeToolsMissing("node is not installed: install Node.js 18.16 or newer with npm")
    return found
