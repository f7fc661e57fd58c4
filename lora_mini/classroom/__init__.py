"""The classroom edition: one source notebook per chapter, a student edition built from it, a grader.

The convention (chapters/solutions/NN_name.ipynb is the source of truth):

- Exercises sit at the end of a chapter. Each one starts with a markdown cell whose first line is
  `### Exercise N.k: title` (what to write, and a **Hint:**). Everything from the first such
  heading to the end of the notebook is the exercise section.
- A code answer cell puts the answer between `### BEGIN SOLUTION` and `### END SOLUTION`, inside a
  function (the student edition replaces the region by `raise NotImplementedError(...)` at the
  same indentation, so the student edition still runs top to bottom):

      def best_rank_r(W, r):
          ### BEGIN SOLUTION
          U, S, Vh = torch.linalg.svd(W, full_matrices=False)
          return U[:, :r] @ torch.diag(S[:r]) @ Vh[:r]
          ### END SOLUTION

- Right after it, a check cell calls the visible self-check and, for the grader only, the strict
  one between `### BEGIN HIDDEN TESTS` / `### END HIDDEN TESTS` (removed from the student edition):

      check_1_1(best_rank_r)
      ### BEGIN HIDDEN TESTS
      grade_1_1(best_rank_r)
      ### END HIDDEN TESTS

  An exercise scores its points when its check cell (with the hidden tests put back) runs without
  an error. `check_N_k` prints ✓ or a hint and never raises; `grade_N_k` raises.
- An explanation exercise has a markdown answer cell with the model answer between the same
  markers; the student edition shows "*Your answer here.*" and the rubric is in
  chapters/INSTRUCTORS.md (graded by hand; the grader lists it as "manual").
- The exercises need only the cells tagged `setup` (cell metadata "tags"); put one such cell
  (imports + `from lora_mini.classroom.checks.chNN import *`) just before the first exercise.
  The grader and the build execute the `setup` cells and the exercise section, nothing else.

Check helpers for writing `check_N_k` / `grade_N_k` are in `lora_mini.classroom.checks`.

    python -m lora_mini.classroom build [01 02 ...]     # write the student editions chapters/NN_*.ipynb
        [--refresh-sources]                             # (first re-run the sources' exercise cells)
    python -m lora_mini.classroom execute [01 ...]      # run whole sources in place (from chapters/), then build
    python -m lora_mini.classroom grade SUBMISSION.ipynb [--json]
    python -m lora_mini.classroom nbgrader OUTDIR [01 ...]   # an nbgrader "source" folder
"""
from .notebook import Exercise, exercises, source_notebooks, student_edition
from .build import build_chapter
from .grade import grade

__all__ = ["Exercise", "exercises", "source_notebooks", "student_edition", "build_chapter", "grade"]
