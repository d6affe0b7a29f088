"""A tool the suite needs (support.require_tool, support.needs_tool): where it is missing,
a skip on a developer's machine that names the Debian package, a failure under CI=true."""

from types import SimpleNamespace

import pytest
import support
from conftest import pytest_runtest_setup
from support import needs_tool, require_tool


@pytest.mark.parametrize("ci", ["true", "TRUE", "1"])
def test_a_missing_tool_fails_under_ci_and_names_its_package(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match=r"^nginx is not installed: apt-get install nginx "):
        require_tool(False, "nginx is not installed", "nginx")


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_a_missing_tool_is_a_skip_that_names_its_package_elsewhere(monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match=r"^Chromium is not installed: apt-get install chromium$"):
        require_tool(False, "Chromium is not installed", "chromium")


@pytest.mark.parametrize("ci", ["true", ""])
def test_a_tool_that_is_there_is_neither(monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    require_tool(True, "nginx is not installed", "nginx")


def test_the_mark_is_checked_before_the_test_starts(monkeypatch):
    mark = needs_tool(False, "no container engine", "podman runc").mark
    item = SimpleNamespace(iter_markers=lambda name: [mark] if name == "needs_tool" else [])
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install podman runc"):
        pytest_runtest_setup(item)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="apt-get install podman runc"):
        pytest_runtest_setup(item)


@needs_tool(support.ROOT.is_dir(), "the checkout", "git")
def test_a_test_whose_tool_is_there_runs():
    pass
