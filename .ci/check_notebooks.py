"""Fails unless every executed notebook ran all code cells without error and shows a figure.

Usage: python .ci/check_notebooks.py EXECUTED.ipynb...
"""

import json
import sys

FIGURE_MIMES = ("image/svg+xml", "image/png")


def problems(path):
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    figures = 0
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        if cell.get("execution_count") is None:
            yield f"code cell {index} was not executed"
        for output in cell.get("outputs", []):
            if output["output_type"] == "error":
                trace = "\n".join(output.get("traceback", []))
                yield f"code cell {index} failed: {output.get('ename')}: {output.get('evalue')}\n{trace}"
            if any(mime in output.get("data", {}) for mime in FIGURE_MIMES):
                figures += 1
    if figures == 0:
        yield f"no {' or '.join(FIGURE_MIMES)} output"
    else:
        print(f"{path}: ok, {figures} figure output(s)")


def main(paths):
    if not paths:
        sys.exit("no executed notebooks to check")
    failed = False
    for path in paths:
        for problem in problems(path):
            print(f"{path}: {problem}", file=sys.stderr)
            failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main(sys.argv[1:])
