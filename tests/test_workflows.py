"""The GitHub workflows that publish the book and test pull requests are valid and least-privilege.

* ``check-jsonschema --builtin-schema vendor.github-workflows``: each file against the workflow
  schema (bundled with the package: works offline);
* ``zizmor --offline``: the security lints (unpinned actions, excessive permissions, credentials
  persisted by checkout, template injection, ...);
* our own rules: every action pinned by a full commit SHA with the release in a comment, and the
  repository's address written in one place only (``_config.yml``'s ``repository.url``).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
USES = re.compile(r"^\s*(?:-\s*)?uses:\s*(?P<ref>\S+)(?P<rest>.*)$", re.M)


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed (pip install -r requirements-dev.txt -c constraints.txt)")
    return found


def test_there_is_a_pages_and_a_test_workflow() -> None:
    assert {p.name for p in WORKFLOWS} >= {"pages.yml", "test.yml"}
    pages = yaml.safe_load((ROOT / ".github/workflows/pages.yml").read_text())
    steps = [s.get("run", s.get("uses", "")) for job in pages["jobs"].values() for s in job["steps"]]
    assert "make book" in steps
    assert any(s.startswith("actions/upload-pages-artifact@") for s in steps)
    assert any(s.startswith("actions/deploy-pages@") for s in steps)
    test = yaml.safe_load((ROOT / ".github/workflows/test.yml").read_text())
    assert "pull_request" in test[True]                   # YAML 1.1 reads the key `on` as True
    assert any(s.get("run") == "make test" for job in test["jobs"].values() for s in job["steps"])


def test_workflows_match_the_github_schema() -> None:
    done = subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                           *map(str, WORKFLOWS)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_zizmor_finds_nothing() -> None:
    done = subprocess.run([_tool("zizmor"), "--offline", "--no-progress", str(ROOT / ".github" / "workflows")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings" in done.stdout


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_by_commit_with_the_release_named(path: Path) -> None:
    uses = USES.findall(path.read_text())
    assert uses, f"{path.name} uses no action"
    for ref, rest in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", ref), f"{path.name}: {ref} is not pinned by a commit SHA"
        assert re.search(r"#\s*v\d+(\.\d+)*\s*$", rest), f"{path.name}: {ref} has no `# vX.Y.Z` comment"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_permissions_are_least_privilege(path: Path) -> None:
    wf = yaml.safe_load(path.read_text())
    assert "permissions" in wf, f"{path.name}: no top-level permissions (the default token can write)"
    assert wf["permissions"] in ({}, {"contents": "read"}), f"{path.name}: top level grants {wf['permissions']}"
    for name, job in wf["jobs"].items():
        perms = job.get("permissions", wf["permissions"])
        assert isinstance(perms, dict), f"{path.name}: job {name} uses a blanket {perms!r}"
        writes = {k for k, v in perms.items() if v == "write"}
        allowed = {"pages", "id-token"} if any("deploy-pages" in s.get("uses", "") for s in job["steps"]) else set()
        assert writes <= allowed, f"{path.name}: job {name} can write {sorted(writes - allowed)}"


def test_the_repository_address_is_written_once() -> None:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = config["repository"]["url"]
    tracked = subprocess.run(["git", "-C", str(ROOT), "grep", "-l", "-F", url], capture_output=True,
                             text=True, timeout=60)
    if tracked.returncode not in (0, 1):
        pytest.skip(f"not a git checkout: {tracked.stderr.strip()}")
    assert tracked.stdout.split() == ["_config.yml"], f"{url} is also written in: {tracked.stdout.split()}"
