"""Checks for the exercises at the end of each chapter.

Convention (every chapter uses it, and the student edition is generated from it):
the solution code of an exercise sits between ``# BEGIN SOLUTION`` and
``# END SOLUTION`` lines inside a function the reader completes; the next cell
calls a check from this package, e.g. ``genbook.exercises.preface.check_sample_mixture(fn)``.
A check passes silently on a correct function and otherwise raises
:class:`ExerciseFailed` with a message that says what went wrong and how to look for it.
"""

from .core import ExerciseFailed, call_student, expect_close

__all__ = ["ExerciseFailed", "call_student", "expect_close"]
