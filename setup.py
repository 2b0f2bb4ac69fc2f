"""Only a marker for older repo2docker (Binder) releases; everything is in pyproject.toml.

repo2docker before 2025.12 runs ``pip install .`` only for a repository with a ``setup.py``
(newer ones also for a ``pyproject.toml`` with ``[project]`` and ``[build-system]``), so this file
makes both install the ``uffdsim`` package exactly once, non-editable.  See README.md, "Binder".
"""
from setuptools import setup

setup()
