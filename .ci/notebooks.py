"""Executes notebooks headless with the evcxr kernel and fails on any error, on a notebook
without a figure, or on a notebook over its time budget.

Usage:
    python .ci/notebooks.py [--out DIR] [--budget SECONDS] NOTEBOOK.ipynb...
    python .ci/notebooks.py --self-test     # the checker on .ci/probes/: each failure is caught

Why not `jupyter nbconvert --execute` and a look at the outputs: evcxr reports neither a `?`
that returns `Err` nor a panic as an `error` output. It prints them to stderr, and its stderr is
forwarded asynchronously, so a line can arrive after the cell went idle and be lost (seen with
evcxr_jupyter 0.22: a cell whose `f()?` failed came back with no output at all). This runner
therefore proves that each code cell ran to its end: before execution it adds to every code cell
a statement that writes a marker file (before the cell's final expression when that is a lone
variable name, which the kernel then displays; after the last statement otherwise); a cell whose
marker is missing returned early or panicked. A cell that ends in any other expression is
refused (end it with `;`, or bind the value and end with its name), so that the marker can never
change what a cell displays. Compile errors are `error` outputs and fail too. The executed copy
written to --out has the original sources and the outputs.

The time budget (the notebook's metadata `robust_paf.budget_s`, else --budget; default none)
counts from the end of the first code cell that runs Rust, where evcxr builds the crate (minutes,
cold), to the end of the last cell: "top to bottom after the crate is built".
"""

import argparse
import datetime
import json
import os
import re
import shutil
import sys
import tempfile
import time

FIGURE_MIMES = ("image/svg+xml", "image/png")
LONE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
HERE = os.path.dirname(os.path.abspath(__file__))


def marker_code(path):
    return f'std::fs::write({json.dumps(path)}, b"ok").expect("robust-paf CI cell marker");'


def instrument(source, path):
    """The cell's source with the marker statement, or (None, reason) if it cannot take one."""
    lines = source.rstrip().split("\n")
    code = [i for i, l in enumerate(lines) if l.strip() and not l.strip().startswith("//")]
    if not code:
        return None, None
    if all(lines[i].lstrip().startswith(":") for i in code):
        return None, None  # evcxr commands only (:dep, :opt): failures are error outputs
    last = lines[code[-1]].strip()
    if LONE_NAME.match(last):
        i = code[-1]
        return "\n".join(lines[:i] + [marker_code(path)] + lines[i:]), None
    if last.endswith(";") or last.endswith("}"):
        return "\n".join(lines + [marker_code(path)]), None
    return None, (
        f"ends in the expression `{last}`: end the cell with `;`, or bind the value and end "
        "with its name"
    )


def run(path, out_dir, default_budget, timeout):
    import nbformat
    from nbclient import NotebookClient

    problems = []
    nb = nbformat.read(path, as_version=4)
    original = [c.source for c in nb.cells]
    markers = {}
    marker_dir = tempfile.mkdtemp(prefix="robust-paf-cells.")
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        marker = os.path.join(marker_dir, f"cell-{index}.ok")
        source, reason = instrument(cell.source, marker)
        if reason:
            problems.append(f"code cell {index} {reason}")
        elif source is not None:
            cell.source = source
            markers[index] = marker
    if problems:
        return problems, None
    budget = nb.metadata.get("robust_paf", {}).get("budget_s", default_budget)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="rust",
        allow_errors=True,
        resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}},
    )
    # the kernel's own stderr (evcxr's cargo builds) goes to a log, not into the CI output
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    log_path = os.path.join(out_dir or marker_dir, os.path.basename(path) + ".kernel.log")
    start = time.monotonic()
    with open(log_path, "w") as log:
        try:
            client.execute(stdout=log, stderr=log)
        except Exception as e:  # a dead kernel, a timeout: report it, keep what ran
            problems.append(f"execution stopped: {type(e).__name__}: {e} (kernel log: {log_path})")
    seconds = time.monotonic() - start
    warm = after_build(nb, markers)
    figures = 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        cell.source = original[index]
        if cell.get("execution_count") is None:
            problems.append(f"code cell {index} was not executed")
            continue
        for output in cell.get("outputs", []):
            if output["output_type"] == "error":
                trace = ANSI.sub("", "\n".join(output.get("traceback", [])))
                problems.append(
                    f"code cell {index} failed: {output.get('ename')}: {output.get('evalue')}\n{trace}"
                )
            if any(mime in output.get("data", {}) for mime in FIGURE_MIMES):
                figures += 1
        if index in markers and not os.path.exists(markers[index]):
            stderr = "".join(
                o.get("text", "") for o in cell.get("outputs", []) if o.get("name") == "stderr"
            ).strip()
            problems.append(
                f"code cell {index} did not run to its end (a `?` returned Err, or it panicked)"
                + (f":\n{stderr[:2000]}" if stderr else "")
            )
    if figures == 0:
        problems.append(f"no {' or '.join(FIGURE_MIMES)} output")
    if budget is not None and warm is not None and warm > budget:
        problems.append(
            f"took {warm:.0f} s after the crate was built ({seconds:.0f} s in all), over its "
            f"budget of {budget} s"
        )
    shutil.rmtree(marker_dir, ignore_errors=True)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        nbformat.write(nb, os.path.join(out_dir, os.path.basename(path)))
    return problems, (seconds, figures, warm)


def idle_time(cell):
    t = cell.get("metadata", {}).get("execution", {}).get("iopub.status.idle")
    return datetime.datetime.fromisoformat(t.replace("Z", "+00:00")) if t else None


def after_build(nb, markers):
    """Seconds from the end of the first instrumented (Rust) cell to the end of the last cell."""
    if not markers:
        return None
    first = idle_time(nb.cells[min(markers)])
    ends = [idle_time(c) for c in nb.cells if c.cell_type == "code"]
    ends = [t for t in ends if t is not None]
    if first is None or not ends:
        return None
    return (max(ends) - first).total_seconds()


def check(paths, out_dir, budget, timeout):
    failed = False
    for path in paths:
        problems, stats = run(path, out_dir, budget, timeout)
        for p in problems:
            print(f"{path}: {p}", file=sys.stderr)
        if problems:
            failed = True
        else:
            warm = "" if stats[2] is None else f", {stats[2]:.0f} s after the first Rust cell"
            print(f"{path}: ok, {stats[1]} figure output(s), {stats[0]:.0f} s in all{warm}")
    return not failed


def self_test(timeout):
    """Each probe must end as its name says: ok_* pass, every other one fails."""
    probes = sorted(
        os.path.join(HERE, "probes", f)
        for f in os.listdir(os.path.join(HERE, "probes"))
        if f.endswith(".ipynb")
    )
    wrong = []
    for p in probes:
        name = os.path.basename(p)
        budget = 1 if name.startswith("slow") else None
        problems, _ = run(p, None, budget, timeout)
        expect_ok = name.startswith("ok")
        if expect_ok == bool(problems):
            wrong.append(f"{name}: expected {'a pass' if expect_ok else 'a failure'}, got "
                         + ("; ".join(problems) if problems else "a pass"))
        else:
            print(f"probe {name}: {'passes' if expect_ok else 'fails'} as it must"
                  + (f" ({problems[0].splitlines()[0]})" if problems else ""))
    for w in wrong:
        print(f"checker self-test: {w}", file=sys.stderr)
    return not wrong


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="*")
    ap.add_argument("--out", help="where to write the executed copies")
    ap.add_argument("--budget", type=float, help="seconds a notebook may take (default: none)")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds a cell may take")
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    if a.self_test:
        sys.exit(0 if self_test(a.timeout) else 1)
    if not a.notebooks:
        sys.exit("no notebooks given")
    sys.exit(0 if check(a.notebooks, a.out, a.budget, a.timeout) else 1)


if __name__ == "__main__":
    main()
