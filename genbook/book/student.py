"""The student edition of the chapters, for course labs: ``python -m genbook.book.student`` (``make labs``).

A chapter is the instructor edition: each exercise is a function whose solution
sits between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` lines, in a code cell
(tagged ``exercise``) after the markdown cell that states it
(``**Exercise 0.1: sampling.** Write ...``); the next code cell checks it with
``genbook.exercises``. The student edition is the same notebook with every
solution region replaced by a stub at the same indentation::

    def sample_mixture(n, logits, means, log_stds, generator):
        \"\"\"n samples, shape (n,), of the Gaussian mixture with the given parameters.\"\"\"
        # YOUR CODE HERE (Exercise 0.1), then run the check below.
        raise NotImplementedError(
            "Exercise 0.1: sampling. A generative model must also generate. Write "
            ...
        )

The signature, the docstring and the check cells stay, so a student runs the
notebook, reaches the first check, and reads "Exercise 0.1 ... is not solved
yet: <the exercise's prompt>".

    python -m genbook.book.student                 # _build/labs/<slug>.ipynb for every written chapter
    python -m genbook.book.student --out DIR 00_preface
    python -m genbook.book.student --check         # also run each student edition up to its exercises:
                                                   # stubs must fail their checks, solutions must pass

``--check`` executes each chapter (minutes for a full chapter); the tests do the same.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import sys
import tempfile
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import nbformat

from ..paths import REPO_ROOT, build_dir
from .execution import read_chapter
from .manifest import Chapter, load_manifest

BEGIN = re.compile(r"^(?P<indent>[ \t]*)#\s*BEGIN SOLUTION\b")
END = re.compile(r"^[ \t]*#\s*END SOLUTION\b")
EXERCISE_HEADING = re.compile(r"\*\*(Exercise\s+[\w.]+[^*]*)\*\*")
PROMPT_LIMIT = 600  # characters of the exercise's statement repeated in the stub's message
STUB_WIDTH = 88  # width of the string pieces in the stub


class ExerciseFormatError(ValueError):
    """A chapter's exercise does not follow the convention the student edition relies on."""


@dataclass
class Exercise:
    """One exercise of a chapter, found in its instructor edition."""

    label: str  # "Exercise 0.1: sampling."
    prompt: str  # the condensed statement, as the stub's NotImplementedError says it
    cell: int  # index of the code cell holding the solution (in the instructor notebook)
    check_cell: int | None  # index of the next code cell, which runs the check
    solution: list[str]  # the solution's lines, as written between the markers


# --- the exercise's prompt: markdown condensed to one line of plain text --------------------------------------

_TEX_SYMBOLS = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε", "zeta": "ζ",
    "eta": "η", "theta": "θ", "vartheta": "θ", "iota": "ι", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν",
    "xi": "ξ", "pi": "π", "rho": "ρ", "varrho": "ρ", "sigma": "σ", "tau": "τ", "upsilon": "υ", "phi": "φ",
    "varphi": "φ", "chi": "χ", "psi": "ψ", "omega": "ω", "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ",
    "Xi": "Ξ", "Pi": "Π", "Sigma": "Σ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω",
    "sum": "Σ", "prod": "∏", "int": "∫", "nabla": "∇", "partial": "∂", "infty": "∞", "cdot": "·", "cdots": "⋯",
    "ldots": "…", "dots": "…", "times": "×", "div": "÷", "pm": "±", "mp": "∓", "in": "∈", "notin": "∉",
    "subset": "⊂", "subseteq": "⊆", "cup": "∪", "cap": "∩", "forall": "∀", "exists": "∃", "le": "≤",
    "leq": "≤", "ge": "≥", "geq": "≥", "neq": "≠", "ne": "≠", "approx": "≈", "equiv": "≡", "propto": "∝",
    "sim": "~", "to": "→", "rightarrow": "→", "leftarrow": "←", "gets": "←", "Rightarrow": "⇒", "mapsto": "↦",
    "implies": "⇒", "iff": "⇔", "mid": "|", "vert": "|", "Vert": "‖", "|": "‖", "lVert": "‖", "rVert": "‖",
    "lvert": "|", "rvert": "|", "langle": "⟨", "rangle": "⟩", "lfloor": "⌊", "rfloor": "⌋", "lceil": "⌈",
    "rceil": "⌉", "odot": "⊙", "oplus": "⊕", "otimes": "⊗", "circ": "∘", "top": "ᵀ", "intercal": "ᵀ",
    "ell": "ℓ", "varnothing": "∅", "emptyset": "∅", "star": "⋆", "ast": "*", "prime": "′", "dagger": "†",
    "{": "{", "}": "}", "_": "_", "%": "%", "$": "$", "&": "&", "#": "#",
    ",": " ", ";": " ", ":": " ", " ": " ", "quad": " ", "qquad": " ", "!": "",
}
# Operators written as words: a space separates them from what follows (``\cos\phi`` -> "cos φ").
_TEX_OPERATORS = {"log", "ln", "exp", "sin", "cos", "tan", "tanh", "sinh", "cosh", "arg", "min", "max", "sup",
                  "inf", "lim", "det", "dim", "softmax", "argmin", "argmax", "Pr", "KL", "Var", "Cov", "diag", "tr"}
# Accents become Unicode combining marks on a one-letter argument (``\bar\alpha_t`` -> "ᾱ_t").
_TEX_ACCENTS = {"bar": "\u0304", "overline": "\u0304", "tilde": "\u0303", "widetilde": "\u0303", "hat": "\u0302",
                "widehat": "\u0302", "dot": "\u0307", "ddot": "\u0308", "vec": "\u20d7", "check": "\u030c"}
# Commands that only change the font or size, or only space: their argument (if any) is kept as it is.
_TEX_FONTS = {"mathcal", "mathbb", "mathbf", "mathrm", "mathit", "mathsf", "mathtt", "mathfrak", "boldsymbol", "bm",
              "operatorname", "text", "textrm", "textit", "textbf", "mbox", "displaystyle", "textstyle"}
_TEX_SIZES = {"left", "right", "big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr", "biggl", "biggr",
              "middle", "limits", "nolimits"}
_TEX_TOKEN = re.compile(r"\\[A-Za-z]+\s*|\\.|.", re.S)


class _TexReader:
    """A small reader of inline TeX that writes it as plain text (not a TeX parser: enough for prompts)."""

    def __init__(self, tex: str):
        self.tokens = _TEX_TOKEN.findall(tex)
        self.k = 0

    def peek(self) -> str | None:
        return self.tokens[self.k] if self.k < len(self.tokens) else None

    def take(self) -> str | None:
        token = self.peek()
        self.k += token is not None
        return token

    def group(self) -> str:
        """The text of a ``{...}`` group (the ``{`` already taken), up to its ``}``."""
        out = []
        while (token := self.peek()) is not None and token != "}":
            out.append(self.item())
        self.take()
        return "".join(out)

    def argument(self) -> str:
        """A command's argument: a group, or the next single item (``\\sqrt d``, ``\\bar\\alpha``)."""
        while self.peek() is not None and self.peek().isspace():
            self.take()
        if self.peek() == "{":
            self.take()
            return self.group()
        return self.item() if self.peek() is not None else ""

    def item(self) -> str:
        token = self.take()
        if token == "{":
            return self.group()
        if token in ("_", "^"):
            raw = self.argument()
            arg, space = raw.strip(), " " * raw.endswith(" ")  # keep the space after ``x_\alpha ``
            if token == "^" and arg in ("ᵀ", "′", "†", "*"):
                return arg + space
            return token + _paren(arg) + space
        if not token.startswith("\\"):
            return token
        name = token[1:].strip() or token[1:2]
        if name in _TEX_SIZES:
            return ""
        if name in _TEX_FONTS:
            return self.argument() if name not in ("displaystyle", "textstyle") else ""
        if name in _TEX_ACCENTS:
            arg = self.argument().strip()
            return arg + _TEX_ACCENTS[name] if len(arg) == 1 else f"{name}({arg})"
        if name in ("frac", "tfrac", "dfrac"):
            num, den = self.argument().strip(), self.argument().strip()
            return f"{_paren(num)}/{_paren(den)}"
        if name == "sqrt":
            arg = self.argument().strip()
            return f"√{_paren(arg)}"
        if name in _TEX_OPERATORS:  # "\x00": a space here if a letter, digit or bracket comes before (see _tex)
            follows = self.peek()
            return "\x00" + name + (" " if follows and (follows[0].isalnum() or follows[0] == "\\") else "")
        symbol = _TEX_SYMBOLS.get(name, name)
        if token.endswith(" ") and symbol not in (" ", ""):
            symbol += " "  # the space that ended the command name, as in "\in X"
        return symbol


def _atom(text: str) -> bool:
    """True when ``text`` reads unambiguously without parentheses after ``_``, ``^``, ``/`` or ``√``."""
    return len(text) <= 1 or re.fullmatch(r"[\w.\u0300-\u036f\u20d7]+", text) is not None


def _paren(text: str) -> str:
    return text if _atom(text) else f"({text})"


def _tex(math: str) -> str:
    """Inline TeX as readable plain text.

    ``\\pi_k \\mathcal{N}(\\mu_k, \\sigma_k^2)`` -> ``π_k N(μ_k, σ_k^2)``; ``\\tilde\\mu_t`` -> ``μ̃_t``;
    ``\\sqrt{1-\\bar\\alpha_t}`` -> ``√(1-ᾱ_t)``; ``\\tfrac{L-1}{2}`` -> ``(L-1)/2``; ``x_{t-1}`` -> ``x_(t-1)``.
    """
    reader = _TexReader(math)
    out = []
    while reader.peek() is not None:
        out.append(reader.item())
    text = re.sub(r"(?<=[\w)\]])\x00", " ", "".join(out)).replace("\x00", "")
    return unicodedata.normalize("NFC", re.sub(r"[ \t]+", " ", text).strip())


def plain_text(markdown: str) -> str:
    """Markdown with inline TeX as one line of readable text (for an error message); code spans stay as they are."""
    text = re.sub(r"\$\$(.+?)\$\$|\$(.+?)\$", lambda m: _tex(m.group(1) or m.group(2)), markdown, flags=re.S)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # [link](url) -> link
    text = text.replace("**", "")
    text = re.sub(r"(?<![\w*`])\*([^*\s][^*]*?)\*(?![\w*])", r"\1", text)  # *emphasis*
    return re.sub(r"\s+", " ", text).strip()


def exercise_statement(markdown: str) -> tuple[str, str]:
    """(label, prompt) of the last exercise stated in a markdown cell, e.g. ("Exercise 0.1: sampling.", "...")."""
    matches = list(EXERCISE_HEADING.finditer(markdown))
    if not matches:
        raise ExerciseFormatError("no '**Exercise N.M: title.**' statement")
    start = matches[-1]
    rest = markdown[start.start():]
    heading = re.search(r"^\s*#", rest, flags=re.M)  # the statement ends at the next heading
    statement = rest[: heading.start()] if heading else rest
    label = plain_text(start.group(1))
    prompt = plain_text(statement)
    if len(prompt) > PROMPT_LIMIT:
        cut = prompt.rfind(". ", 0, PROMPT_LIMIT)
        prompt = prompt[: cut + 1 if cut > len(label) else PROMPT_LIMIT] + " (see the exercise above)"
    return label, prompt


# --- finding exercises and stubbing them -----------------------------------------------------------------------

def solution_regions(source: str) -> list[tuple[int, int, str]]:
    """(begin line, end line, indentation) of every solution region of a cell; malformed markers raise."""
    regions, begin = [], None
    for i, line in enumerate(source.splitlines()):
        if (m := BEGIN.match(line)) is not None:
            if begin is not None:
                raise ExerciseFormatError(f"line {i + 1}: BEGIN SOLUTION inside another solution region")
            begin = (i, m.group("indent"))
        elif END.match(line):
            if begin is None:
                raise ExerciseFormatError(f"line {i + 1}: END SOLUTION without BEGIN SOLUTION")
            regions.append((begin[0], i, begin[1]))
            begin = None
    if begin is not None:
        raise ExerciseFormatError(f"line {begin[0] + 1}: BEGIN SOLUTION without END SOLUTION")
    return regions


def stub_lines(indent: str, label: str, prompt: str) -> list[str]:
    """The lines that replace a solution: a comment and ``raise NotImplementedError(<prompt>)``."""
    number = re.match(r"Exercise\s+[\w.]*\w", label)
    pieces, line = [], ""
    for word in prompt.split(" "):
        if line and len(line) + len(word) + 1 > STUB_WIDTH:
            pieces.append(line + " ")
            line = word
        else:
            line = f"{line} {word}" if line else word
    pieces.append(line)
    return ([f"{indent}# YOUR CODE HERE ({number.group(0) if number else label}), then run the check below.",
             f"{indent}raise NotImplementedError("]
            + [f"{indent}    {_literal(piece)}" for piece in pieces] + [f"{indent})"])


def _literal(text: str) -> str:
    """A Python string literal of ``text``, in double quotes where that needs no escapes."""
    return f'"{text}"' if text.isprintable() and not set(text) & {'"', "\\"} else repr(text)


def stub_source(source: str, label: str, prompt: str) -> str:
    """The cell's source with every solution region replaced by a stub raising NotImplementedError(prompt)."""
    lines = source.splitlines()
    out, position, raises = [], 0, set()
    for begin, end, indent in solution_regions(source):
        stub = stub_lines(indent, label, prompt)
        out += lines[position:begin]
        raises.add(len(out) + 2)  # 1-based line number of the stub's `raise`
        out += stub
        position = end + 1
    out += lines[position:]
    stubbed = "\n".join(out)
    _check_stubs_are_in_functions(stubbed, raises)
    return stubbed


def _check_stubs_are_in_functions(source: str, raise_lines: set[int]) -> None:
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise ExerciseFormatError(f"the stubbed cell is not valid Python ({err}); keep the markers inside a "
                                  "function, on lines of their own") from None
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside |= {id(n) for n in ast.walk(node) if isinstance(n, ast.Raise)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and id(node) not in inside and node.lineno in raise_lines:
            raise ExerciseFormatError("a solution region is not inside a function: the stub would raise when the "
                                      "cell runs instead of when the student's function is called")


def find_exercises(nb: nbformat.NotebookNode) -> list[Exercise]:
    """The exercises of an instructor notebook: every code cell with solution markers, in order."""
    exercises = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not solution_regions(cell.source):
            continue
        markdown = next((c for c in reversed(nb.cells[:i]) if c.cell_type == "markdown"), None)
        try:
            if markdown is None:
                raise ExerciseFormatError("no markdown cell states it")
            label, prompt = exercise_statement(markdown.source)
        except ExerciseFormatError as err:
            raise ExerciseFormatError(f"code cell {i} has a solution but the exercise is not stated before it: "
                                      f"{err}. Put '**Exercise N.M: title.** <prompt>' in the markdown cell "
                                      "just before the exercise.") from None
        lines = cell.source.splitlines()
        solution = [line for begin, end, _ in solution_regions(cell.source) for line in lines[begin + 1:end]]
        check = next((j for j in range(i + 1, len(nb.cells)) if nb.cells[j].cell_type == "code"), None)
        exercises.append(Exercise(label, prompt, i, check, solution))
    return exercises


def _clean_metadata(nb: nbformat.NotebookNode, edition: str, source: Path) -> None:
    nb.metadata.pop("jupytext", None)  # a plain notebook, not paired with the chapter's .py file
    try:
        where = source.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        where = source.name
    nb.metadata["genbook"] = {"edition": edition, "source": where}


def instructor_notebook(path: Path) -> nbformat.NotebookNode:
    """The chapter itself as a plain ``.ipynb`` (no outputs): the instructor edition, solutions included."""
    nb = read_chapter(path)
    _clean_metadata(nb, "instructor", Path(path))
    nbformat.validate(nb)
    return nb


def student_notebook(path: Path, title: str | None = None) -> nbformat.NotebookNode:
    """The student edition of a chapter: every solution replaced by a stub; the checks stay."""
    path = Path(path)
    nb = read_chapter(path)
    try:
        exercises = find_exercises(nb)
        for ex in exercises:
            cell = nb.cells[ex.cell]
            cell.source = stub_source(cell.source, ex.label, ex.prompt)
            tags = cell.metadata.setdefault("tags", [])
            if "exercise" not in tags:
                tags.append("exercise")
    except ExerciseFormatError as err:
        raise ExerciseFormatError(f"{path.name}: {err}") from None
    name = f"“{title}” ({path.stem})" if title else path.stem
    intro = (f"*Student edition of {name}, generated from `chapters/{path.name}` by `make labs`.* "
             f"Each exercise's solution is replaced by a stub that raises `NotImplementedError`: write your "
             f"code in its place, then run the check in the cell after it. "
             f"This notebook has {len(exercises)} exercise{'s' * (len(exercises) != 1)} to complete.")
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(intro))
    _clean_metadata(nb, "student", path)
    nbformat.validate(nb)
    return nb


def write_notebook(nb: nbformat.NotebookNode, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    nbformat.write(nb, str(tmp))
    os.replace(tmp, path)
    return path


def write_student_editions(out_dir: Path | None = None, chapters: list[Chapter] | None = None) -> list[Path]:
    """Write ``<out_dir>/<slug>.ipynb`` (default ``_build/labs``) for every written chapter; return the paths."""
    out_dir = Path(out_dir or build_dir() / "labs")
    chapters = load_manifest().written() if chapters is None else chapters
    return [write_notebook(student_notebook(c.path, c.title), out_dir / f"{c.slug}.ipynb") for c in chapters]


# --- the nbgrader course folder: the same exercises, graded by nbgrader -----------------------------------------

NBGRADER_SCHEMA = 3
NBGRADER_CONFIG = """# nbgrader configuration of genbook's course folder, written by `make labs`.
# Run nbgrader from this folder: nbgrader generate_assignment <chapter>, then release, collect, autograde.
c = get_config()  # noqa: F821
c.CourseDirectory.root = "."
c.CourseDirectory.source_directory = "source"
# The stub students see in place of each solution (the plain student edition's stub states the exercise instead).
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}
c.ClearSolutions.begin_solution_delimeter = "BEGIN SOLUTION"
c.ClearSolutions.end_solution_delimeter = "END SOLUTION"
"""


def _grade_id(label: str) -> str:
    number = re.match(r"Exercise\s+([\w.]*\w)", label)
    return "exercise-" + re.sub(r"[^\w-]+", "-", number.group(1) if number else label).strip("-")


def nbgrader_notebook(path: Path, points: int = 1) -> nbformat.NotebookNode:
    """The chapter with solutions, as nbgrader's source notebook.

    Each exercise's solution cell is an nbgrader solution cell (``generate_assignment`` replaces the region
    between ``# BEGIN SOLUTION`` and ``# END SOLUTION`` with a stub); the check cell after it is a locked,
    autograded test cell worth ``points``. Every other cell stays as it is.
    """
    path = Path(path)
    nb = read_chapter(path)
    try:
        exercises = find_exercises(nb)
    except ExerciseFormatError as err:
        raise ExerciseFormatError(f"{path.name}: {err}") from None
    for ex in exercises:
        grade_id = _grade_id(ex.label)
        nb.cells[ex.cell].metadata["nbgrader"] = {
            "grade": False, "solution": True, "locked": False, "task": False,
            "grade_id": f"{grade_id}-solution", "schema_version": NBGRADER_SCHEMA}
        if ex.check_cell is not None:
            nb.cells[ex.check_cell].metadata["nbgrader"] = {
                "grade": True, "solution": False, "locked": True, "task": False, "points": points,
                "grade_id": f"{grade_id}-check", "schema_version": NBGRADER_SCHEMA}
    _clean_metadata(nb, "nbgrader source", path)
    nbformat.validate(nb)
    return nb


def write_nbgrader_course(course: Path, chapters: dict[str, Path]) -> list[Path]:
    """An nbgrader course folder: ``nbgrader_config.py`` and ``source/<slug>/<slug>.ipynb`` for each chapter.

    ``chapters``: slug -> the chapter's ``.py`` file. Returns the source notebooks written.
    """
    course = Path(course)
    course.mkdir(parents=True, exist_ok=True)
    (course / "nbgrader_config.py").write_text(NBGRADER_CONFIG)
    return [write_notebook(nbgrader_notebook(path), course / "source" / slug / f"{slug}.ipynb")
            for slug, path in chapters.items()]


# --- running the student edition: stubs fail their checks, solutions pass them ----------------------------------

@dataclass
class EditionCheck:
    """What running a chapter's student edition showed."""

    chapter: str
    cells_before_first_exercise: int
    stub_messages: dict[str, str]  # exercise label -> the check's message on the stub
    solutions_passed: list[str]  # labels whose solution passed its check
    seconds: float


class EditionCheckFailed(AssertionError):
    pass


def _error_text(err) -> str:
    return f"{getattr(err, 'ename', type(err).__name__)}: {getattr(err, 'evalue', err)}"


def check_student_edition(path: Path, student: nbformat.NotebookNode | None = None, timeout: int = 900,
                          env: dict | None = None) -> EditionCheck:
    """Run a chapter's student edition in a fresh kernel (working directory: the chapter's folder).

    - every cell before the first exercise runs without error;
    - each exercise: the stub's cell runs, then its check fails with ExerciseFailed "... is not solved yet: <prompt>";
      then the instructor's solution cell runs and the same check passes;
    - the cells between exercises run as in the chapter.

    ``student``: the student notebook to run (default: generated from ``path``). Raises EditionCheckFailed.
    Results the chapter reports go to a temporary build folder, not to ``_build/results``.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = Path(path)
    instructor = read_chapter(path)
    student = student if student is not None else student_notebook(path)
    exercises = find_exercises(instructor)
    if not exercises:
        return EditionCheck(path.stem, 0, {}, [], 0.0)
    student_code = [j for j, c in enumerate(student.cells) if c.cell_type == "code"]
    instructor_code = [i for i, c in enumerate(instructor.cells) if c.cell_type == "code"]
    if len(student_code) != len(instructor_code):
        raise EditionCheckFailed(f"{path.name}: the student edition has {len(student_code)} code cells, "
                                 f"the chapter {len(instructor_code)}")
    by_cell = {ex.cell: ex for ex in exercises}
    checks = {ex.check_cell: ex for ex in exercises if ex.check_cell is not None}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="genbook-student-") as tmp:
        for shared in ("samples", "results"):  # what chapters saved, for chapters that read it (the capstone)
            if (build_dir() / shared).is_dir():
                shutil.copytree(build_dir() / shared, Path(tmp) / shared)
        kernel_env = {**os.environ, "GENBOOK_BUILD": tmp, **(env or {})}
        kernel_env.setdefault("GENBOOK_PROGRESS", "summary")
        kernel_env.pop("MPLBACKEND", None)
        client = NotebookClient(student, timeout=timeout, kernel_name="python3", shutdown_kernel="immediate",
                                resources={"metadata": {"path": str(path.parent)}})
        result = EditionCheck(path.stem, 0, {}, [], 0.0)
        first = exercises[0].cell
        with client.setup_kernel(env=kernel_env):
            for number, (j, i) in enumerate(zip(student_code, instructor_code)):
                where, s_cell = f"{path.name}, code cell {number}", student.cells[j]
                if i < first:
                    try:
                        client.execute_cell(s_cell, j)
                    except CellExecutionError as err:
                        raise EditionCheckFailed(f"{where} (before the first exercise) fails in the student "
                                                 f"edition: {_error_text(err)}") from None
                    result.cells_before_first_exercise += 1
                elif i in by_cell:
                    try:
                        client.execute_cell(s_cell, j)  # defines the stub
                    except CellExecutionError as err:
                        raise EditionCheckFailed(f"{where}: the stub of {by_cell[i].label} fails when its cell "
                                                 f"runs: {_error_text(err)}") from None
                elif i in checks:
                    ex = checks[i]
                    try:
                        client.execute_cell(s_cell, j)
                    except CellExecutionError as err:
                        message = str(getattr(err, "evalue", err))
                        if getattr(err, "ename", "") != "ExerciseFailed" or "not solved yet" not in message:
                            raise EditionCheckFailed(f"{where}: on the stub, the check of {ex.label} should fail "
                                                     f"with ExerciseFailed '... not solved yet: ...', got "
                                                     f"{_error_text(err)}") from None
                        result.stub_messages[ex.label] = message
                    else:
                        raise EditionCheckFailed(f"{where}: the check of {ex.label} passed on the stub; a check "
                                                 "must call the student's function (genbook.exercises.call_student)")
                    for cell in (instructor.cells[ex.cell], instructor.cells[i]):  # the solution, then its check
                        try:
                            client.execute_cell(cell, j)
                        except CellExecutionError as err:
                            raise EditionCheckFailed(f"{where}: the check of {ex.label} fails on the solution: "
                                                     f"{_error_text(err)}") from None
                    result.solutions_passed.append(ex.label)
                else:
                    try:
                        client.execute_cell(instructor.cells[i], j)
                    except CellExecutionError as err:
                        raise EditionCheckFailed(f"{where} (after an exercise) fails: {_error_text(err)}") from None
    result.seconds = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the student edition of every written chapter.")
    parser.add_argument("chapters", nargs="*", help="slugs (default: every written chapter)")
    parser.add_argument("--out", type=Path, default=None, help="folder (default: _build/labs)")
    parser.add_argument("--check", action="store_true",
                        help="run each student edition: stubs must fail their checks, solutions pass")
    args = parser.parse_args(argv)
    manifest = load_manifest()
    chapters = [manifest.chapter(s) for s in args.chapters] if args.chapters else manifest.written()
    out_dir = args.out or build_dir() / "labs"
    try:
        paths = write_student_editions(out_dir, chapters)
    except ExerciseFormatError as err:
        print(f"student edition: {err}", file=sys.stderr)
        return 1
    total = 0
    for chapter, path in zip(chapters, paths):
        n = len(find_exercises(read_chapter(chapter.path)))
        total += n
        print(f"{path}  ({n} exercise{'s' * (n != 1)} stubbed)")
    print(f"student edition: {len(paths)} chapter{'s' * (len(paths) != 1)}, {total} exercise{'s' * (total != 1)} "
          f"-> {out_dir}")
    course = write_nbgrader_course(out_dir / "nbgrader", {c.slug: c.path for c in chapters})
    print(f"nbgrader course folder: {out_dir / 'nbgrader'} ({len(course)} source notebooks; see the README's "
          "section for instructors)")
    if args.check:
        for chapter, path in zip(chapters, paths):
            try:
                res = check_student_edition(chapter.path, nbformat.read(str(path), as_version=4))
            except EditionCheckFailed as err:
                print(f"check FAILED: {err}", file=sys.stderr)
                return 1
            print(f"check ok: {chapter.slug}: {res.cells_before_first_exercise} cells run before the first "
                  f"exercise, {len(res.stub_messages)} stubs fail their checks, {len(res.solutions_passed)} "
                  f"solutions pass ({res.seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
