"""The scenario format: validation messages, address expressions, the runner's JSON and the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from uffdsim.runner import run_scenario
from uffdsim.scenario import Addr, ScenarioError, load_scenario, loads_scenario, parse_addr

ROOT = Path(__file__).resolve().parent.parent
CORPUS = sorted((ROOT / "scenarios").glob("*.yaml"))

HEAD = "name: t\nabout: x\nsteps:\n"
MAP = "  - mmap: {name: src, pages: 2}\n"


@pytest.mark.parametrize("text,expected", [
    ("a", Addr("a")), ("src+3", Addr("src", 3)), ("src+3+1b", Addr("src", 3, 1)),
    ("src+1b", Addr("src", 0, 1)), (0, Addr(None, absolute=0)),
    ("0x7f0000001000", Addr(None, absolute=0x7F0000001000)),
])
def test_address_expressions(text: object, expected: Addr) -> None:
    assert parse_addr(text) == expected
    assert parse_addr(text).resolve({"a": 0x1000, "src": 0x10000}) == (
        expected.absolute if expected.region is None else
        {"a": 0x1000, "src": 0x10000}[expected.region] + expected.page * 4096 + expected.byte)


@pytest.mark.parametrize("steps,message", [
    ("  - mmap: {name: src}\n", "step 0 (mmap): field 'pages': missing"),
    (MAP + "  - write: {at: src, pages: 1, value: 300}\n", "step 1 (write): field 'value': expected an integer <= 255"),
    (MAP + "  - write: {at: nowhere, pages: 1, value: 1}\n", "step 1 (write): field 'at': no region named 'nowhere'"),
    (MAP + "  - move: {dst: src, src: src, pages: 1, bytes: 4}\n", "field 'pages': give exactly one of pages: N or bytes: N"),
    (MAP + "  - move: {dst: src, src: src, pages: 1, mode: [fast]}\n", "step 1 (move): field 'mode'"),
    (MAP + "  - frobnicate: {}\n", "step 1: unknown op 'frobnicate'"),
    (MAP + "  - read: {at: src, pages: 1, colour: red}\n", "step 1 (read): field 'colour': not a field of read"),
    (MAP + "  - read: {at: src, pages: 1}\n    expect: {errno: EWHATEVER}\n", "field 'expect.errno': unknown errno name"),
    (MAP + "  - exit: {proc: ghost}\n", "no process named 'ghost'"),
    (MAP + "  - observe: {at: src, pages: 1}\n    expect: {pages: [{state: gone}]}\n", "field 'expect.pages'"),
])
def test_malformed_steps_give_one_line_naming_file_step_and_field(steps: str, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        loads_scenario(HEAD + steps, "bad.yaml")
    text = str(info.value)
    assert "\n" not in text and text.startswith("bad.yaml: ")
    assert message in text


def test_bad_top_level_fields() -> None:
    for text, message in [("name: Not Kebab\nsteps: []", "field 'name'"), ("name: t\n", "field 'steps'"),
                          ("- 1\n", "expected a mapping"), ("name: t\nsteps: [\n", "not valid YAML")]:
        with pytest.raises(ScenarioError, match=message):
            loads_scenario(text, "bad.yaml")


def test_the_runner_reports_every_step_with_the_contract_fields() -> None:
    sc = loads_scenario(HEAD + MAP + """\
  - mmap: {name: dst, pages: 2}
  - write: {at: src, pages: 1, value: 0x41}
  - uffd: {}
  - register: {at: dst, pages: 2}
  - move: {dst: dst, src: src, pages: 2}
    expect: {errno: EAGAIN, move: 4096}
  - move: {dst: dst, src: src, pages: 1, bytes: 0}
""".replace(", bytes: 0", "") + """\
    expect: {errno: EEXIST, move: -EEXIST}
  - observe: {at: dst, pages: 2}
    expect: {pages: [{state: present, value: 0x41, frame: f0}, {state: none}]}
  - move: {dst: dst+1, src: 1, pages: 1}
    expect: {errno: EINVAL, move: unwritten}
""")
    result = run_scenario(sc, "sim")
    assert result.status == "passed", result.unmet()
    doc = result.to_json()
    assert [s["i"] for s in doc["steps"]] == list(range(len(sc.steps)))
    assert all({"i", "op", "ret", "errno"} <= set(s) for s in doc["steps"])
    assert doc["steps"][0]["addr"] > 0 and doc["steps"][-1]["move"] is None
    assert doc["steps"][-2]["pages"][0]["frame"] == "f0"


def test_an_unmet_expectation_fails_the_scenario() -> None:
    sc = loads_scenario(HEAD + MAP + "  - read: {at: src, pages: 1}\n    expect: {errno: EBUSY}\n")
    result = run_scenario(sc, "sim")
    assert result.status == "failed"
    assert result.steps[1]["expect"].startswith("unmet: errno: expected EBUSY, got success")


def test_a_hung_step_is_reported_and_the_rest_not_run() -> None:
    sc = loads_scenario(HEAD + MAP + """\
  - uffd: {}
  - register: {at: src, pages: 2}
  - read: {at: src, pages: 1}
  - read: {at: src, pages: 1}
""")
    result = run_scenario(sc, "sim")
    assert result.status == "failed"
    assert result.steps[3]["hung"] and result.steps[4]["not_run"]


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_corpus_scenario_passes_on_the_simulator(path: Path) -> None:
    sc = load_scenario(path)
    assert sc.name == path.stem
    assert any(s.expect for s in sc.steps), "every corpus scenario checks something"
    result = run_scenario(sc, "sim")
    assert result.status in ("passed", "skipped"), result.unmet()


def test_corpus_size() -> None:
    assert len(CORPUS) >= 60


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "uffdsim", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def test_cli_json_and_exit_status(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(HEAD + MAP + "  - read: {at: src, pages: 1}\n    expect: {ok: true}\n")
    out = run_cli("run", str(good), "--json")
    assert out.returncode == 0
    doc = json.loads(out.stdout)
    assert (doc["name"], doc["backend"], doc["status"]) == ("t", "sim", "passed")
    bad = tmp_path / "bad.yaml"
    bad.write_text(HEAD + "  - mmap: {name: src, pages: -1}\n")
    out = run_cli("run", str(bad))
    assert out.returncode == 2                       # bad input (issue 19: 1 means an expectation failed)
    assert out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
    assert "bad.yaml: step 0 (mmap): field 'pages'" in out.stderr
