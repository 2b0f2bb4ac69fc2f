"""Conformance: the scenario corpus gives the same step results on the simulator and on the
running kernel.  The corpus run is skipped, with the reason, where the kernel backend is
unavailable; the report's bookkeeping and the doctor's explanations are checked everywhere.
"""
from __future__ import annotations

import errno
import re
from pathlib import Path

import pytest

from uffdsim import conform as C
from uffdsim.backends.kernel.caps import Capabilities, Facility, _why_no_userfaultfd, capabilities
from uffdsim.backends.kernel.cli import doctor_text
from uffdsim.backends.sim import SimBackend
from uffdsim.cli import main
from uffdsim.errors import UffdError
from uffdsim.runner import BackendRun

SUMMARY = re.compile(r"^conform: (\d+) scenarios, (\d+) divergences, (\d+) skipped \((\d+) full, (\d+) partial\)$")


@pytest.mark.kernel
def test_the_corpus_conforms(capsys: pytest.CaptureFixture[str]) -> None:
    why = capabilities().missing([])
    if why is not None:
        pytest.skip(f"kernel backend unavailable: {why}")
    status = main(["conform", "--quiet"])
    out = capsys.readouterr().out.splitlines()
    summary = next(line for line in out if line.startswith("conform:"))
    m = SUMMARY.match(summary)
    assert m, summary
    assert int(m[1]) > 0 and int(m[4]) + int(m[5]) > 0
    assert C.parse_summary(summary) == dict(zip(("scenarios", "divergences", "skipped", "full", "partial"),
                                                map(int, m.groups())))
    diverging = [line.strip() for line in out if line.startswith("  ") and ": step " in line]
    assert status == 0 and m[2] == "0", "simulator and kernel differ:\n" + "\n".join(diverging)


# -- bookkeeping, with stand-in backends (no kernel needed) ---------------------------------------

SCENARIO = """name: {name}
steps:
  - mmap: {{name: src, pages: 1}}
  - write: {{at: src, pages: 1, value: 1}}
  - observe: {{at: src, pages: 1}}
"""


class Skipping:
    name = "kernel"

    def run(self, scenario):
        return BackendRun(skipped="no userfaultfd here")


class Rewriting:
    """A stand-in kernel: runs the simulator, then rewrites each observed page with :meth:`page`."""

    name = "kernel"

    def page(self, p: dict) -> dict:  # pragma: no cover - overridden
        return p

    def run(self, scenario):
        run = SimBackend().run(scenario)
        for rec in run.steps:
            if rec["op"] == "observe":
                rec["pages"] = [self.page(p) for p in rec["pages"]]
        return run


class Differing(Rewriting):
    """Reports the observed page as swapped out."""

    def page(self, p: dict) -> dict:
        return dict(p, state="swap", value=None, frame=None)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    for name in ("one", "two"):
        (tmp_path / f"{name}.yaml").write_text(SCENARIO.format(name=name))
    (tmp_path / "broken.yaml").write_text("name: broken\nsteps: []\n")
    return tmp_path


def test_summary_counts_skipped_scenarios(corpus: Path) -> None:
    report = C.conform([corpus / "one.yaml", corpus / "two.yaml"], kernel=Skipping())
    assert report.summary() == "conform: 2 scenarios, 0 divergences, 2 skipped (0 full, 0 partial)"
    assert {e.reason for e in report.entries} == {"no userfaultfd here"}


def test_a_run_that_checked_nothing_is_not_a_pass(corpus: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    report = C.conform([corpus / "one.yaml", corpus / "two.yaml"], kernel=Skipping())
    assert not report.ok
    assert report.nothing_ran() == ("conform checked nothing: all 2 scenarios were skipped or could "
                                    "not be loaded; 2 because no userfaultfd here")
    monkeypatch.setattr(C, "conform", lambda paths, progress=None: report)
    assert main(["conform", "--quiet", str(corpus)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: " + report.nothing_ran()]


def test_the_summary_parser_reads_old_and_new_lines() -> None:
    assert C.parse_summary("x\nconform: 3 scenarios, 1 divergences, 2 skipped\n") == \
        {"scenarios": 3, "divergences": 1, "skipped": 2}
    assert C.parse_summary("conform: 184 scenarios, 0 divergences, 40 skipped (120 full, 24 partial)") == \
        {"scenarios": 184, "divergences": 0, "skipped": 40, "full": 120, "partial": 24}
    assert C.parse_summary("no summary") is None


class Hiding(Rewriting):
    """Hides every present page's frame, as the kernel does without root."""

    def page(self, p: dict) -> dict:
        return dict(p, frame=None, hidden=["frame"]) if p["state"] == "present" else p


def test_hidden_frames_are_partial_observation_not_divergence(corpus: Path) -> None:
    report = C.conform([corpus / "one.yaml"], kernel=Hiding())
    assert report.summary() == "conform: 1 scenarios, 0 divergences, 0 skipped (0 full, 1 partial)"
    assert report.ok and report.entries[0].not_observable == ["step 2 pages[0].frame"]


def test_divergences_count_scenarios_and_fail(corpus: Path) -> None:
    report = C.conform([corpus / "one.yaml", corpus / "two.yaml"], kernel=Differing())
    assert report.summary() == "conform: 2 scenarios, 2 divergences, 0 skipped (2 full, 0 partial)"
    assert not report.ok
    fields = {d["field"] for d in report.entries[0].divergences}
    assert {"pages[0].state", "pages[0].value", "pages[0].frame"} <= fields
    assert report.totals["divergent_steps"] == 2


def test_a_broken_file_is_an_error_not_a_crash(corpus: Path) -> None:
    report = C.conform([corpus], kernel=Skipping())
    broken = next(e for e in report.entries if e.status == "error")
    assert "steps" in (broken.reason or "")
    assert not report.ok


def test_the_record_round_trips(corpus: Path, tmp_path: Path) -> None:
    report = C.conform([corpus / "one.yaml"], kernel=Differing())
    C.record(report, tmp_path / "conformance.json")
    doc = C.load_record(tmp_path / "conformance.json")
    assert doc["totals"]["divergences"] == 1 and doc["kernel"] == report.kernel
    assert doc["scenarios"][0]["status"] == "diverges" and doc["scenarios"][0]["divergences"]


def test_update_reruns_only_what_changed_and_keeps_the_rest(corpus: Path, tmp_path: Path) -> None:
    """``conform --update``: a changed scenario is re-run, an unchanged one keeps its entry, a new
    one is added, a removed one leaves; the totals are those of the merged entries."""
    files = [corpus / "one.yaml", corpus / "two.yaml"]
    old = C.conform(files, kernel=Differing()).to_json()
    (corpus / "two.yaml").write_text(SCENARIO.format(name="two").replace("value: 1", "value: 2"))
    (corpus / "three.yaml").write_text(SCENARIO.format(name="three"))
    now = [corpus / "two.yaml", corpus / "three.yaml"]        # "one" was removed from the corpus
    stale = C.stale_files(now + [corpus / "one.yaml"], old)
    assert stale == [corpus / "two.yaml", corpus / "three.yaml"]
    fresh = C.conform(stale, kernel=Rewriting())               # agrees now
    merged = C.merge_update(old, fresh, now)
    assert [e.name for e in merged.entries] == ["two", "three"]
    assert merged.summary() == "conform: 2 scenarios, 0 divergences, 0 skipped (2 full, 0 partial)"
    assert merged.to_json()["update"] == {"of": old["date"], "rerun": 2, "kept": 0}
    kept = C.merge_update(old, C.conform([corpus / "three.yaml"], kernel=Rewriting()), files)
    assert [e.status for e in kept.entries] == ["diverges", "diverges"]   # one and two as recorded
    fresh.kernel = "another"
    with pytest.raises(ValueError, match="record it whole"):
        C.merge_update(old, fresh, now)


def test_the_table_ends_with_the_summary(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    C.print_table(C.conform([corpus / "one.yaml"], kernel=Skipping()))
    assert capsys.readouterr().out.splitlines()[-1] == "conform: 1 scenarios, 0 divergences, 1 skipped (0 full, 0 partial)"


# -- the doctor explains what is missing ------------------------------------------------------------

def _caps(uffd: Facility) -> Capabilities:
    no = Facility(False, "not probed")
    return Capabilities("6.1.0", "x86_64", 1000, 2, uffd, Facility(False, "userfaultfd unavailable"),
                        no, no, no, no, no, no, no, no)


def test_doctor_explains_eperm() -> None:
    facts = {"vm.unprivileged_userfaultfd": "0", "user_mode_only": "works", "seccomp": "none"}
    why = _why_no_userfaultfd(UffdError(errno.EPERM, "userfaultfd"), facts)
    text = doctor_text(_caps(Facility(False, why, facts)))
    for word in ("EPERM", "vm.unprivileged_userfaultfd", "UFFD_USER_MODE_ONLY", "/dev/userfaultfd",
                 "CAP_SYS_PTRACE", "kernel backend: unavailable"):
        assert word in text


def test_doctor_says_plainly_when_seccomp_blocks_even_user_mode_only() -> None:
    facts = {"vm.unprivileged_userfaultfd": "0", "user_mode_only": "fails (EPERM)", "seccomp": "filter"}
    why = _why_no_userfaultfd(UffdError(errno.EPERM, "userfaultfd"), facts)
    assert why.startswith("EPERM: userfaultfd(2) is refused even with UFFD_USER_MODE_ONLY under a seccomp filter")
    assert "Binder" in why and "Nothing can run on this kernel" in why


def test_doctor_explains_enosys_under_seccomp() -> None:
    facts = {"vm.unprivileged_userfaultfd": "1", "seccomp": "filter"}
    why = _why_no_userfaultfd(UffdError(errno.ENOSYS, "userfaultfd"), facts)
    assert "seccomp" in why and "Docker" in why and "Binder" in why
    assert _caps(Facility(False, why, facts)).missing(["fork"]) == why


def test_update_refuses_without_a_record_and_outside_the_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["conform", "--update"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: --update needs --record FILE (the record to bring up to date)"]
    rec = tmp_path / "rec.json"
    rec.write_text('{"kernel": "k", "scenarios": []}')
    stray = tmp_path / "stray.yaml"
    stray.write_text(SCENARIO.format(name="stray"))
    assert main(["conform", "--update", "--record", str(rec), str(stray)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: --update: {stray} is not in the corpus the record is of"]
    rec.write_text("[]")
    assert main(["conform", "--update", "--record", str(rec)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: --update: {rec} is not a conformance record"]
