"""The kernel backend leaves the machine as it found it (issue 9): signals wait until an undo is
complete, journals are removed only once their state is gone, a journal never overwrites a value
someone else set after it, ``doctor`` reports leftovers and ``doctor --repair`` removes them.

The signal and journal-logic tests run anywhere; those that touch zram or KSM need root and the
facility, and skip with the reason otherwise.
"""
from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from uffdsim.backends.kernel import guard, signals
from uffdsim.backends.kernel.caps import active_swaps

ROOT = os.geteuid() == 0


@pytest.fixture
def term_recorder():
    """SIGTERM/SIGHUP handlers that record instead of killing pytest (restored afterwards)."""
    got: list[int] = []
    old = {s: signal.signal(s, lambda n, f: got.append(n)) for s in (signal.SIGTERM, signal.SIGHUP)}
    yield got
    for s, h in old.items():
        signal.signal(s, h)


# -- signals ----------------------------------------------------------------------------------------

def test_a_signal_in_a_protected_block_waits_for_its_end(term_recorder) -> None:
    steps = []
    with signals.protected():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        steps.append("undo finished")
        assert term_recorder == []              # not delivered yet
    assert steps == ["undo finished"] and term_recorder == [signal.SIGTERM]


def test_a_signal_in_the_window_unwinds_through_the_undo(term_recorder) -> None:
    undone = []
    with pytest.raises(KeyboardInterrupt):      # the recorder did not end the run: still stopped
        with signals.protected():
            try:
                with signals.interruptible():
                    os.kill(os.getpid(), signal.SIGHUP)
                    time.sleep(1)
                    pytest.fail("the signal did not interrupt the window")
            finally:
                os.kill(os.getpid(), signal.SIGTERM)        # lands during the undo: waits
                undone.append(term_recorder[:])
    assert undone == [[]]
    assert sorted(term_recorder) == sorted([signal.SIGHUP, signal.SIGTERM])


def test_waiting_for_a_lock_ends_on_a_signal(term_recorder) -> None:
    with pytest.raises(KeyboardInterrupt):
        with signals.protected():
            os.kill(os.getpid(), signal.SIGHUP)
            with pytest.raises(signals.Interrupted):
                signals.check()
            raise signals.Interrupted(signal.SIGHUP)
    assert term_recorder == [signal.SIGHUP]


def test_an_ignored_signal_stays_ignored() -> None:
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with signals.protected():
            with signals.interruptible():
                os.kill(os.getpid(), signal.SIGHUP)
                time.sleep(0.02)
            signals.check()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, old)


# -- journals of knobs (plain files stand in for sysfs) ---------------------------------------------

def test_a_journal_restores_only_values_that_are_still_ours(tmp_path: Path, capsys) -> None:
    ours, theirs, untouched = tmp_path / "ours", tmp_path / "theirs", tmp_path / "untouched"
    ours.write_text("0\n")          # still the value uffdsim wrote
    theirs.write_text("50\n")       # an administrator set this after uffdsim wrote 0
    untouched.write_text("7\n")
    record = {"knobs": {str(ours): {"old": "511", "ours": ["0"]},
                        str(theirs): {"old": "20", "ours": ["0"]},
                        str(untouched): {"old": "7", "ours": ["0"]}}}
    assert guard.restore_knobs(record) is True
    assert ours.read_text() == "511" and theirs.read_text() == "50\n" and untouched.read_text() == "7\n"
    assert f"left {theirs} = 50: changed by someone else" in capsys.readouterr().err


def test_the_journal_is_written_first_and_kept_while_a_value_is_not_restored(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(guard, "lock_dir", lambda: str(tmp_path))
    knob = tmp_path / "max_ptes_none"
    knob.write_text("511")
    journal = guard.journal_path("t")
    real_write = guard.write_knob
    with guard.journaled_knobs("t", {str(knob): ["0"]}, {str(knob): "0"}) as old:
        assert old == {str(knob): "511"} and knob.read_text() == "0"
        assert guard.read_journal(journal)["knobs"][str(knob)] == {"old": "511", "ours": ["0"]}

        def refuse(path: str, value: str) -> None:
            raise OSError(16, "Device or resource busy")
        monkeypatch.setattr(guard, "write_knob", refuse)
    assert knob.read_text() == "0" and os.path.exists(journal)    # not restored: journal kept
    monkeypatch.setattr(guard, "write_knob", real_write)
    assert guard.replay_knobs("t") is True                       # the next run restores it
    assert knob.read_text() == "511" and not os.path.exists(journal)


# -- KSM: a stale journal never overwrites an administrator's value --------------------------------

KSM_SLEEP = "/sys/kernel/mm/ksm/sleep_millisecs"


@pytest.mark.kernel
@pytest.mark.skipif(not ROOT or not os.access(KSM_SLEEP, os.W_OK), reason="needs root and KSM")
def test_a_stale_ksm_journal_keeps_a_later_admin_value(capsys) -> None:
    with guard.machine_lock("ksm") as journal:
        guard.replay_knobs("ksm")
        original = guard.read_knob(KSM_SLEEP)
        admin = str(int(original) + 7)
        try:
            # a run set sleep_millisecs to 0, restored it, and was killed before removing its journal;
            # then an administrator changed the value
            guard.write_journal(journal, {"knobs": {KSM_SLEEP: {"old": original, "ours": ["0"]}}})
            guard.write_knob(KSM_SLEEP, admin)
            assert guard.replay_knobs("ksm") is True
            assert guard.read_knob(KSM_SLEEP) == admin            # before: the journal wrote `original`
            assert not os.path.exists(journal)
            assert "changed by someone else" in capsys.readouterr().err
            # a run killed while its value was in place is undone
            guard.write_journal(journal, {"knobs": {KSM_SLEEP: {"old": original, "ours": ["0"]}}})
            guard.write_knob(KSM_SLEEP, "0")
            assert guard.replay_knobs("ksm") is True
            assert guard.read_knob(KSM_SLEEP) == original and not os.path.exists(journal)
        finally:
            guard.write_knob(KSM_SLEEP, original)
            guard.remove_journal(journal)


# -- zram: the journal stays until the device is gone -----------------------------------------------

def _zram_usable() -> str | None:
    if not ROOT:
        return "needs root"
    if not os.path.exists("/sys/class/zram-control/hot_add"):
        return "no zram (module not loaded or not built)"
    return None


zram = pytest.mark.skipif(_zram_usable() is not None, reason=f"zram swap: {_zram_usable()}")


@pytest.mark.kernel
@zram
def test_a_signal_during_zram_cleanup_waits_until_the_device_is_gone(term_recorder, monkeypatch) -> None:
    from uffdsim.backends.kernel import swap
    real_swapoff = swap._swapoff

    def swapoff_then_signal(path: str) -> None:      # the signal lands between swapoff and hot_remove
        real_swapoff(path)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(swap, "_swapoff", swapoff_then_signal)
    with guard.machine_lock("swap") as journal:
        swap.replay_swap()
        with signals.protected():
            tmp = swap.tempfile.mkdtemp(prefix=f"uffdsim-swap-{os.getpid()}-", dir="/var/tmp")
            with swap._zram(tmp, journal) as dev:
                record = guard.read_journal(journal)
                assert record["dev"] == dev.removeprefix("zram") and record["path"] in active_swaps()
        assert term_recorder == [signal.SIGTERM]             # delivered after the undo
        assert not os.path.exists(f"/sys/block/{dev}")         # before: the device stayed
        assert record["path"] not in active_swaps() and not os.path.exists(tmp)
    guard.remove_journal(journal)


@pytest.mark.kernel
@zram
def test_a_zram_device_that_is_not_removed_keeps_its_journal(monkeypatch) -> None:
    from uffdsim.backends.kernel import swap
    real_write = swap._write

    def refuse_hot_remove(path: str, text: str) -> None:
        if path.endswith("hot_remove"):
            raise OSError(16, "Device or resource busy")
        real_write(path, text)

    with guard.machine_lock("swap") as journal:
        swap.replay_swap()
        tmp = swap.tempfile.mkdtemp(prefix=f"uffdsim-swap-{os.getpid()}-", dir="/var/tmp")
        monkeypatch.setattr(swap, "_write", refuse_hot_remove)
        monkeypatch.setattr(swap.time, "sleep", lambda s: None)
        with pytest.raises(swap.UffdError, match="journal .* kept"):
            with swap._zram(tmp, journal) as dev:
                pass
        assert os.path.exists(f"/sys/block/{dev}")
        assert guard.read_journal(journal)["dev"] == dev.removeprefix("zram")  # before: deleted
        monkeypatch.setattr(swap, "_write", real_write)
        assert swap.replay_swap() is True                       # the next run removes it
        assert not os.path.exists(f"/sys/block/{dev}") and not os.path.exists(journal)
        assert not os.path.exists(tmp)


# -- temporary folders ------------------------------------------------------------------------------

def test_the_race_helper_leaves_no_folder(monkeypatch) -> None:
    from uffdsim.concurrency import kernel_race
    if kernel_race.find_compiler() is None:
        pytest.skip("no C compiler")
    monkeypatch.setattr(kernel_race, "_HELPER", None)
    monkeypatch.setattr(kernel_race, "_HELPER_REASON", "")
    lib, why = kernel_race.load_helper()
    assert lib is not None, why
    # before: the folder stayed until the interpreter exited (and forever after a SIGTERM)
    assert glob.glob(f"/tmp/uffdsim-race-{os.getpid()}-*") == []
    assert glob.glob(os.path.join(kernel_race.tempfile.gettempdir(), f"uffdsim-race-{os.getpid()}-*")) == []


@pytest.mark.kernel
@pytest.mark.parametrize("delay", [0.05, 0.4, 1.2])
def test_atomicity_kernel_killed_by_sigterm_leaves_no_folder(delay: float) -> None:
    from uffdsim.concurrency import kernel_race
    ok, why = kernel_race.availability()
    if not ok:
        pytest.skip(f"kernel race: {why}")
    proc = subprocess.Popen([sys.executable, "-m", "uffdsim", "atomicity", "--kernel", "--trials", "100000"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    # before: /tmp/uffdsim-race-* stayed (removed only by an atexit hook SIGTERM never runs)
    assert glob.glob(os.path.join(kernel_race.tempfile.gettempdir(), f"uffdsim-race-{proc.pid}-*")) == []


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_doctor_reports_and_repairs_a_dead_runs_folder() -> None:
    folder = Path(f"/tmp/uffdsim-race-{_dead_pid()}-test")
    folder.mkdir()
    try:
        (folder / "race.so").write_text("x")
        doctor = [sys.executable, "-m", "uffdsim", "doctor"]
        out = subprocess.run(doctor, capture_output=True, text=True, timeout=120).stdout
        assert f"folder {folder}" in out and "doctor --repair" in out
        out = subprocess.run(doctor + ["--repair"], capture_output=True, text=True, timeout=120).stdout
        assert f"repaired: folder {folder} removed" in out and not folder.exists()
        doc = json.loads(subprocess.run(doctor + ["--json"], capture_output=True, text=True,
                                        timeout=120).stdout)
        assert str(folder) not in json.dumps(doc["leftovers"])
    finally:
        if folder.exists():
            for p in folder.iterdir():
                p.unlink()
            folder.rmdir()


def test_doctor_does_not_create_the_lock_folder_just_to_look(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unprivileged reader's `doctor` (chapter 1, Binder) left /tmp/uffdsim behind: looking for
    leftovers created the lock folder.  With no lock folder there is nothing journaled to find."""
    from uffdsim.backends.kernel import guard, leftovers

    def must_not_create() -> str:
        raise AssertionError("scan() created the lock folder")

    monkeypatch.setattr(guard, "existing_lock_dir", lambda: None)
    monkeypatch.setattr(guard, "lock_dir", must_not_create)
    rep = leftovers.scan()
    assert not [line for line in rep.found if "journal" in line]
