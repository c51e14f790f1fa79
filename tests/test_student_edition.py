"""The student edition for course labs: every solution replaced by a stub that states the exercise; the checks stay.

For every written chapter: the student notebook holds none of the solution code, opens as a valid notebook, and
runs up to its first exercise; each check fails on the stub with "... is not solved yet: <the prompt>" and passes
on the solution. Small synthetic chapters show the stubbing rules and the errors for malformed exercises.
"""

import re
import textwrap
import unicodedata

import nbformat
import pytest

from genbook.book.execution import read_chapter
from genbook.book.manifest import load_manifest
from genbook.book.student import (
    ExerciseFormatError,
    check_student_edition,
    exercise_statement,
    find_exercises,
    main,
    solution_regions,
    stub_source,
    student_notebook,
    write_student_editions,
)
from genbook.exercises import ExerciseFailed, call_student
from genbook.metrics import saved_samples

WRITTEN = load_manifest().written()
READS_SAVED_SAMPLES = {"10_capstone"}  # chapters that evaluate what the others saved


def code_lines(nb) -> list[str]:
    return [line.strip() for c in nb.cells for line in c.source.splitlines() if line.strip()]



@pytest.fixture(scope="module")
def editions(tmp_path_factory):
    """`python -m genbook.book.student --out DIR`: the student editions as a course would get them."""
    out = tmp_path_factory.mktemp("labs")
    assert main(["--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("chapter", WRITTEN, ids=lambda c: c.slug)
def test_student_edition_contains_no_solution(editions, chapter):
    path = editions / f"{chapter.slug}.ipynb"
    student = nbformat.read(path, as_version=4)  # opens: a valid notebook
    nbformat.validate(student)
    instructor = read_chapter(chapter.path)
    exercises = find_exercises(instructor)
    solution = {line.strip() for ex in exercises for line in ex.solution if line.strip()}
    # A line the chapter also has outside its solutions (e.g. a bare `return x`) is not a leak.
    outside = set()
    for cell in instructor.cells:
        lines = cell.source.splitlines()
        inside = {k for begin, end, _ in solution_regions(cell.source) for k in range(begin, end + 1)}
        outside |= {line.strip() for k, line in enumerate(lines) if k not in inside}
    student_lines = set(code_lines(student))
    student_text = "\n".join(c.source for c in student.cells)
    leaked = [line for line in solution - outside
              if line in student_lines or (len(line) >= 20 and line in student_text)]
    assert not leaked, f"{path.name} leaks solution lines: {leaked}"
    code = "\n".join(c.source for c in student.cells if c.cell_type == "code")
    assert "BEGIN SOLUTION" not in code and "END SOLUTION" not in code
    assert code.count("raise NotImplementedError(") == sum(len(solution_regions(instructor.cells[ex.cell].source))
                                                          for ex in exercises)
    # Everything else is the chapter itself: the same code cells, in order, the checks included.
    s_code = [c.source for c in student.cells if c.cell_type == "code"]
    i_code = [c.source for c in instructor.cells if c.cell_type == "code"]
    stubbed = {sum(1 for c in instructor.cells[:ex.cell] if c.cell_type == "code") for ex in exercises}
    assert len(s_code) == len(i_code)
    unchanged = [k for k in range(len(i_code)) if k not in stubbed]
    assert [s_code[k] for k in unchanged] == [i_code[k] for k in unchanged]
    assert student.metadata["kernelspec"]["name"] == "python3" and "jupytext" not in student.metadata


@pytest.mark.parametrize("chapter", WRITTEN, ids=lambda c: c.slug)
def test_student_edition_runs_to_its_first_exercise_and_checks_fail_helpfully(editions, chapter):
    student = nbformat.read(editions / f"{chapter.slug}.ipynb", as_version=4)
    exercises = find_exercises(read_chapter(chapter.path))
    if chapter.slug in READS_SAVED_SAMPLES and not saved_samples():
        pytest.skip(f"{chapter.slug} evaluates the samples other chapters save; none are saved yet "
                    "(make test runs it after them)")
    result = check_student_edition(chapter.path, student)  # raises EditionCheckFailed with the reason
    if not exercises:
        pytest.skip(f"{chapter.slug} has no exercise with a solution")
    assert result.cells_before_first_exercise >= 1
    for ex in exercises:
        if ex.check_cell is None:
            continue
        message = result.stub_messages[ex.label]
        number = re.match(r"Exercise\s+([\w.]*\w)", ex.label).group(1)
        assert "is not solved yet" in message and f"Exercise {number}" in message, message
        assert ex.prompt[:60] in message, f"the stub's message should state the exercise: {message}"
        assert ex.label in result.solutions_passed


def test_make_labs_writes_every_written_chapter(editions, capsys, monkeypatch, tmp_path):
    assert sorted(p.name for p in editions.glob("*.ipynb")) == sorted(f"{c.slug}.ipynb" for c in WRITTEN)
    monkeypatch.setenv("GENBOOK_BUILD", str(tmp_path))
    paths = write_student_editions()  # the default folder: _build/labs
    assert [p.parent for p in paths] == [tmp_path / "labs"] * len(WRITTEN)


# --- the rules, on small synthetic chapters ---------------------------------------------------------------------

HEADER = """# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---
"""

# The chapter's checks mirror genbook.exercises without importing genbook (a kernel importing torch costs seconds).
CHAPTER = HEADER + textwrap.dedent('''
    # %%
    import math


    class ExerciseFailed(AssertionError):
        pass


    def call_student(fn, *args, exercise):
        try:
            return fn(*args)
        except NotImplementedError as err:
            raise ExerciseFailed(f"{exercise} is not solved yet: {err}") from None

    # %% [markdown]
    # ## Exercises
    #
    # **Exercise 9.1: a circle's area.** Write `area(r)` that returns $\\pi r^2$, the area of a circle
    # of radius `r`. Use `math.pi`.

    # %% tags=["exercise"]
    def area(r):
        """The area of a circle of radius r."""
        # BEGIN SOLUTION
        return math.pi * r**2
        # END SOLUTION


    # %%
    got = call_student(area, 2.0, exercise="Exercise 9.1 (area)")
    if abs(got - 4 * math.pi) > 1e-9:
        raise ExerciseFailed(f"area(2.0) should be 4π, got {got}")

    # %% [markdown]
    # **Exercise 9.2: two regions.** Write `both(x)` returning `(x + 1, x * 2)`.

    # %% tags=["exercise"]
    def both(x):
        # BEGIN SOLUTION
        first = x + 1
        # END SOLUTION
        if x is None:
            # BEGIN SOLUTION
            return None
            # END SOLUTION
        return first, x * 2


    # %%
    assert call_student(both, 3, exercise="Exercise 9.2 (both)") == (4, 6)
''')


@pytest.fixture
def chapter(tmp_path):
    path = tmp_path / "09_circle.py"
    path.write_text(CHAPTER)
    return path


def test_stub_keeps_signature_and_docstring_and_states_the_prompt(chapter):
    nb = student_notebook(chapter, "Circles")
    cell = next(c for c in nb.cells if "def area" in c.source)
    assert cell.source.startswith('def area(r):\n    """The area of a circle of radius r."""\n    # YOUR CODE HERE')
    assert "return math.pi" not in cell.source
    namespace = {"math": __import__("math")}
    exec(cell.source, namespace)
    with pytest.raises(ExerciseFailed, match=r"Exercise 9.1 \(area\) is not solved yet: Exercise 9.1: a circle's "
                                             r"area\. Write `area\(r\)` that returns π r\^2, the area of a circle"):
        call_student(namespace["area"], 2.0, exercise="Exercise 9.1 (area)")
    assert "Circles" in nb.cells[0].source and "exercise" in cell.metadata["tags"]


def test_every_region_of_a_cell_is_stubbed_at_its_indentation(chapter):
    nb = student_notebook(chapter)
    cell = next(c for c in nb.cells if "def both" in c.source)
    assert cell.source.count("raise NotImplementedError(") == 2 and "first = x + 1" not in cell.source
    assert "\n        raise NotImplementedError(" in cell.source  # the second region, inside the `if`
    compile(cell.source, "<stub>", "exec")


def test_synthetic_chapter_runs_stubs_fail_and_solutions_pass(chapter):
    result = check_student_edition(chapter)
    assert result.cells_before_first_exercise == 1
    assert set(result.stub_messages) == {"Exercise 9.1: a circle's area.", "Exercise 9.2: two regions."}
    assert result.solutions_passed == ["Exercise 9.1: a circle's area.", "Exercise 9.2: two regions."]


def test_long_prompts_are_condensed():
    label, prompt = exercise_statement("Intro.\n\n**Exercise 1.2: long.** " + "Do this and that. " * 80 + "\n")
    assert label == "Exercise 1.2: long." and prompt.startswith("Exercise 1.2: long. Do this and that.")
    assert len(prompt) < 700 and prompt.endswith("(see the exercise above)")


@pytest.mark.parametrize("source, error", [
    ("def f():\n    # BEGIN SOLUTION\n    return 1\n", "BEGIN SOLUTION without END SOLUTION"),
    ("def f():\n    return 1\n    # END SOLUTION\n", "END SOLUTION without BEGIN SOLUTION"),
    ("def f():\n    # BEGIN SOLUTION\n    # BEGIN SOLUTION\n    # END SOLUTION\n", "inside another"),
    ("# BEGIN SOLUTION\nx = 1\n# END SOLUTION\n", "not inside a function"),
])
def test_malformed_markers_are_errors(source, error):
    with pytest.raises(ExerciseFormatError, match=error):
        stub_source(source, "Exercise 1.1: x.", "Exercise 1.1: x. Do it.")


def test_an_exercise_must_be_stated_before_its_solution(tmp_path):
    path = tmp_path / "01_bad.py"
    path.write_text(HEADER + "\n# %% [markdown]\n# Some prose.\n\n# %%\ndef f():\n    # BEGIN SOLUTION\n"
                    "    return 1\n    # END SOLUTION\n")
    with pytest.raises(ExerciseFormatError, match=r"01_bad.py: code cell 1 has a solution but the exercise is not "
                                                  r"stated before it"):
        student_notebook(path)


@pytest.mark.parametrize("tex, text", [
    (r"\tilde\mu_t(x_t, x_0)", "μ̃_t(x_t, x_0)"),
    (r"\tilde{\beta}_t", "β̃_t"),
    (r"\sqrt{1-\bar\alpha_t}\, x_0", "√(1-ᾱ_t) x_0"),
    (r"\cos\phi = \sqrt{\bar\alpha_t}", "cos φ = √ᾱ_t"),
    (r"q(x_{t-1} \mid x_t, x_0)", "q(x_(t-1) | x_t, x_0)"),
    (r"\tfrac{L_j-1}{2}\tanh(z)", "(L_j-1)/2 tanh(z)"),
    (r"\lfloor L_j/2 \rfloor", "⌊ L_j/2 ⌋"),
    (r"\mathrm{KL}(\mathcal N(\mu_q, \sigma_q^2) \Vert \mathcal{N}(\mu_p, \sigma_p^2))",
     "KL(N(μ_q, σ_q^2) ‖ N(μ_p, σ_p^2))"),
    (r"\big\|\mathbb E_x f(x)\big\|_2^2", "‖E_x f(x)‖_2^2"),
    (r"\mathbb E[\varepsilon\varepsilon^\top] = I", "E[εεᵀ] = I"),
    (r"P_i = \{j : g_j = g_i\}", "P_i = {j : g_j = g_i}"),
    (r"\tilde v = v_\varnothing + s(v_c - v_\varnothing)", "ṽ = v_∅ + s(v_c - v_∅)"),
    (r"u_t = \dot\alpha_t x_1", "u_t = α̇_t x_1"),
    (r"\operatorname{softmax}(QK^\top/\sqrt{d})", "softmax(QKᵀ/√d)"),
])
def test_stub_messages_write_tex_as_plain_text(tex, text):
    from genbook.book.student import plain_text

    assert plain_text(f"the value ${tex}$.") == unicodedata.normalize("NFC", f"the value {text}.")


@pytest.mark.parametrize("chapter", WRITTEN, ids=lambda c: c.slug)
def test_no_tex_left_in_the_stub_messages_of_the_book(chapter):
    for ex in find_exercises(read_chapter(chapter.path)):
        leftovers = re.findall(r"\\[A-Za-z]+|\b(?:tilde|bar|hat|dot|mathcal|mathbb|mathrm|tfrac|frac|sqrt|lfloor|"
                               r"rfloor|Vert|varnothing|big)(?=[A-Za-zα-ωΑ-Ω\\\s(|])", ex.prompt)
        assert not leftovers, f"{ex.label}: TeX left in the stub's message: {leftovers} in {ex.prompt!r}"
