"""Functions stay short enough to read at once: none in stflow/ over 60 lines, and
predict-slide's one function a short list of named steps (issue 25)."""

import ast
from pathlib import Path

STFLOW = Path(__file__).resolve().parents[1] / "stflow"
LIMIT = 60
SHORTER = {("deploy/predict_slide.py", "predict_slide"): 40}


def function_lengths() -> dict[tuple[str, str, int], int]:
    """Every function and method of stflow/ (nested ones too): (file, name, line) → lines
    from its ``def`` (or first decorator) to its last line."""
    lengths = {}
    for path in sorted(STFLOW.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                where = (str(path.relative_to(STFLOW)), node.name, node.lineno)
                lengths[where] = node.end_lineno - first + 1
    return lengths


def test_no_function_in_stflow_is_longer_than_60_lines():
    long = {f"{file}:{line} {name}: {n} lines" for (file, name, line), n in
            function_lengths().items() if n > SHORTER.get((file, name), LIMIT)}
    assert not long, "split these into named steps:\n" + "\n".join(sorted(long))


def test_the_limits_name_functions_that_exist():
    named = {(file, name) for file, name, _ in function_lengths()}
    assert set(SHORTER) <= named
