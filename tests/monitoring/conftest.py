"""promtool, the Prometheus project's own checker (Debian's ``prometheus`` package).

README command 2 installs it (scripts/system-packages).  Missing: in CI (``CI=true``) the
test fails; elsewhere it is skipped with the reason shown, as the PostgreSQL tests are.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.conftest import IN_CI


@pytest.fixture(scope="session")
def promtool() -> str:
    found = os.environ.get("DE_PROMTOOL") or shutil.which("promtool")
    if found:
        return found
    reason = "promtool is not installed (scripts/system-packages installs Debian's prometheus package)"
    if IN_CI:
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)
