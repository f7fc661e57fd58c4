"""Wrong and right answers for each exercise, as the source of the student's answer cell.

One module per chapter (chNN.py) with CASES = {"N.k": {"wrong": [src, ...], "right": [src, ...]}}:
at least two usual mistakes (each must be rejected by the exercise's check) and one correct form
other than the notebook's solution (which must be accepted). tests/test_exercises.py runs them
against the checks; tests/test_classroom.py plants the first wrong answer of every exercise into a
submission and asserts that the grader gives it zero.
"""
