"""Explorers for the book (ipywidgets), each a thin layer over plain, tested functions.

* :class:`ScenarioExplorer`   -- toggles (fork, KSM, pin, THP, ...) -> the MOVE's outcome,
  trail and diagram; logic in :func:`explorer_outcome`
* :class:`InterleavingStepper` -- step through a schedule of the atomicity model; logic in
  :class:`StepperModel`
* :class:`ErrnoExplorer`      -- an errno -> the smallest scenario of the corpus that produces
  it; logic in :func:`corpus_index` / :func:`smallest_scenario` / :func:`run_hit`

Displayed, each widget also carries a static PNG of its current figure and a one-line text
summary, so a page read without a kernel still shows its default state.
"""
from .errnos import ErrnoExplorer, ErrnoIndex, Hit, corpus_index, run_hit, smallest_scenario
from .explorer import ExplorerOptions, ExplorerOutcome, ScenarioExplorer, explorer_outcome, options_from, scenario_text
from .stepper import InterleavingStepper, StepperModel

__all__ = ["ScenarioExplorer", "ExplorerOptions", "ExplorerOutcome", "explorer_outcome", "options_from",
           "scenario_text", "InterleavingStepper", "StepperModel", "ErrnoExplorer", "ErrnoIndex", "Hit",
           "corpus_index", "smallest_scenario", "run_hit"]
