"""``kafnotes`` command: execute chapters with papermill, build the book, refresh stored outputs.

    kafnotes run [CHAPTER ...] --profile P [-p key=value ...]   executed copies in outputs/P/
    kafnotes book --profile P                                   run every chapter, then build HTML
    kafnotes refresh                                            re-execute book/ in place (smoke)
    kafnotes order-check [CHAPTER ...]                          which stored outputs move with the sum order
    kafnotes train --arch resnet20 --activation relu --data PATH --epochs 10 --pgd-steps 20
                                                                one run + PGD, printed and recorded
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import records, settings
from .profiles import COMMITTED_RECORDS, PROFILES

KERNEL_ENV = {**settings.NUMERICS_ENV, "PYTHONWARNINGS": "ignore"}


def repo_root(start: Path | None = None) -> Path:
    root = (start or Path.cwd()).resolve()
    for candidate in (root, *root.parents):
        if (candidate / "_toc.yml").exists() and (candidate / "book").is_dir():
            return candidate
    raise SystemExit("kafnotes: no book here. Run this from the kafnotes repository (the folder with "
                     "_toc.yml and book/), or pass --root PATH.")


def chapters(root: Path) -> list[Path]:
    """The chapter notebooks, without the copies ``refresh`` stages beside them while it runs."""
    return sorted(p for p in (root / "book").glob("[0-9][0-9]_*.ipynb") if not p.name.endswith(".refresh.ipynb"))


def pick_chapters(root: Path, names: list[str]) -> list[Path]:
    available = chapters(root)
    if not names:
        return available
    picked = []
    for name in names:
        hits = [p for p in available if p.stem == name or p.stem.startswith(name) or p.name == name]
        if not hits:
            raise SystemExit(f"kafnotes: no chapter matches {name!r}; chapters: "
                             f"{', '.join(p.stem for p in available)}")
        picked.extend(h for h in hits if h not in picked)
    return picked


def parse_params(items: list[str]) -> dict:
    params = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"kafnotes: parameter {item!r} must look like key=value (e.g. epochs=5)")
        key, value = item.split("=", 1)
        try:
            params[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key.strip()] = value
    return params


def _kernel_env(runs: Path):
    env = {**os.environ, **KERNEL_ENV, "KAFNOTES_RUNS": str(runs)}
    return env


def execute(notebook: Path, output: Path, parameters: dict, runs: Path, cwd: Path):
    """Run one notebook with papermill in a kernel whose environment points at ``runs``."""
    import papermill
    old = dict(os.environ)
    os.environ.update(_kernel_env(runs))  # the kernel inherits this process' environment
    try:
        # The kernel's own log says nothing a run needs: ipykernel 7 warns on every start that its local
        # sockets are unencrypted, and jupyter_client stops every kernel with a SIGINT first, which
        # ipykernel logs as "ERROR | KeyboardInterrupt caught in kernel" though nothing failed. A cell's
        # error still fails the run through papermill, and a dead kernel through nbclient.
        papermill.execute_notebook(str(notebook), str(output), parameters=parameters, cwd=str(cwd),
                                   progress_bar=False, kernel_name="python3",
                                   extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
    finally:
        os.environ.clear()
        os.environ.update(old)


def default_jobs() -> int:
    # Chapters spend much of their time tracing tf.functions in one Python thread, so two chapters
    # share two cores well; more than four only adds memory (about 2 GB per kernel).
    return max(1, min(4, os.cpu_count() or 1))


def jobs_for(args, notebooks: list[Path]) -> int:
    """How many chapters to execute at once: ``--jobs`` (at least 1), else ``default_jobs()``."""
    if args.jobs is not None and args.jobs < 1:
        raise SystemExit(f"kafnotes: --jobs must be at least 1 (got {args.jobs})")
    return min(args.jobs or default_jobs(), len(notebooks))


def waits_for(nb: Path) -> list[str]:
    """Chapters whose run records this chapter reuses (its notebook metadata ``kafnotes.after``)."""
    return list(json.loads(nb.read_text()).get("metadata", {}).get("kafnotes", {}).get("after", []))


def run_chapters(notebooks: list[Path], work, jobs: int, label: str):
    """Call ``work(notebook)`` for each chapter, up to ``jobs`` at once in worker processes.

    A chapter starts only after the selected chapters it waits for have finished, so that it reuses
    their trained models instead of training them again. The first failure stops new starts and is
    raised once the running chapters finish.
    """
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from multiprocessing import get_context
    total = time.perf_counter()
    selected = {nb.stem for nb in notebooks}
    if jobs <= 1:  # in this process, in chapter order (which respects every chapter's waits)
        for nb in notebooks:
            print(f"[{label}] {nb.stem} ...", flush=True)
            print(f"[{label}] {nb.stem} done in {work(nb):.0f} s", flush=True)
    else:
        after = {nb.stem: [d for d in waits_for(nb) if d in selected] for nb in notebooks}
        needed = {d for ds in after.values() for d in ds}
        # chapters others wait for first, then the later (heavier) chapters before the lighter ones
        pending = sorted(notebooks, key=lambda nb: (nb.stem not in needed, [-ord(c) for c in nb.stem]))
        done, running, failure = set(), {}, None
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            while running or (pending and failure is None):
                ready = [nb for nb in pending if all(d in done for d in after[nb.stem])]
                while failure is None and ready and len(running) < jobs:
                    nb = ready.pop(0)
                    pending.remove(nb)
                    print(f"[{label}] {nb.stem} ...", flush=True)
                    running[pool.submit(work, nb)] = nb
                if not running:
                    raise SystemExit(f"kafnotes: chapters wait for each other in a cycle: {after}")
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    nb = running.pop(future)
                    try:
                        print(f"[{label}] {nb.stem} done in {future.result():.0f} s", flush=True)
                        done.add(nb.stem)
                    except BaseException as e:  # noqa: BLE001 - re-raised below
                        print(f"[{label}] {nb.stem} FAILED", flush=True)
                        failure = failure or e
        if failure is not None:
            raise failure
    print(f"[{label}] all chapters done in {time.perf_counter() - total:.0f} s", flush=True)


class _ExecuteInto:
    """Execute a chapter into ``out/book`` atomically: a failed run keeps the last good copy."""

    def __init__(self, out: Path, params: dict, runs: Path):
        self.out, self.params, self.runs = out, params, runs

    def __call__(self, nb: Path) -> float:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=self.out) as tmp:
            staged = Path(tmp) / nb.name
            execute(nb, staged, self.params, self.runs, cwd=self.out / "book")
            _tag_injected(staged)
            os.replace(staged, self.out / "book" / nb.name)
        return time.perf_counter() - t0


def cmd_run(args) -> Path:
    root = repo_root(Path(args.root) if args.root else None)
    if args.profile not in PROFILES:
        raise SystemExit(f"kafnotes: unknown profile {args.profile!r}; valid profiles: {', '.join(PROFILES)}")
    out = (Path(args.out) if args.out else root / "outputs" / args.profile).resolve()
    (out / "book").mkdir(parents=True, exist_ok=True)
    params = {"profile": args.profile, **parse_params(args.param)}
    notebooks = pick_chapters(root, args.chapters)
    runs = records_for(args, root, out)
    if args.records_only:  # the kernels inherit it: any missing record fails instead of being computed
        os.environ[records.ENV_RECORDS_ONLY] = "1"
    print(f"[{args.profile}] run records in {runs}" + (" (records only)" if args.records_only else ""), flush=True)
    run_chapters(notebooks, _ExecuteInto(out, params, runs), jobs_for(args, notebooks), args.profile)
    print(f"[{args.profile}] executed chapters are in {out / 'book'}", flush=True)
    return out


def records_for(args, root: Path, out: Path) -> Path:
    """``--runs``; else the profile's committed records (``profiles.COMMITTED_RECORDS``: the study
    edition's, which the book is built from); else ``OUT/runs``."""
    if args.runs:
        return Path(args.runs).resolve()
    if args.profile in COMMITTED_RECORDS:
        return (root / COMMITTED_RECORDS[args.profile]).resolve()
    return out / "runs"


def _tag_injected(path: Path):
    """Hide papermill's injected-parameters cell in the rendered book, like the parameters cell."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-input" not in tags:
            tags.append("remove-input")
    path.write_text(json.dumps(nb, indent=1))


def cmd_book(args):
    out = cmd_run(args)
    root = repo_root(Path(args.root) if args.root else None)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(root / name, out / name)
    for md in (root / "book").glob("*.md"):
        shutil.copy(md, out / "book" / md.name)
    for extra in ("references.bib",):
        if (root / "book" / extra).exists():
            shutil.copy(root / "book" / extra, out / "book" / extra)
    t0 = time.perf_counter()
    # The jupyter-book script beside this interpreter, so an unactivated venv works too.
    script = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(script) if script.exists() else (shutil.which("jupyter-book") or "jupyter-book"),
           "build", str(out), "--all", "-W", "--keep-going"]
    result = subprocess.run(cmd, env=_kernel_env(records_for(args, root, out)))
    if result.returncode:
        raise SystemExit(f"kafnotes: jupyter-book build failed (exit {result.returncode}); see the log above.")
    index = out / "_build" / "html" / "index.html"
    print(f"book built in {time.perf_counter() - t0:.0f} s. Open {index}")


def cmd_refresh(args):
    """Re-execute the committed notebooks in place at the smoke profile (their stored nbval outputs)."""
    root = repo_root(Path(args.root) if args.root else None)
    notebooks = pick_chapters(root, args.chapters)
    jobs = jobs_for(args, notebooks)
    os.environ[settings.ENV_THREADS] = settings.REFERENCE_THREADS  # as pytest --nbval will run them
    with tempfile.TemporaryDirectory() as runs:
        run_chapters(notebooks, _RefreshInPlace(Path(runs)), jobs, "refresh")


class _RefreshInPlace:
    def __init__(self, runs: Path):
        self.runs = runs

    def __call__(self, nb: Path) -> float:
        t0 = time.perf_counter()
        staged = nb.with_suffix(".refresh.ipynb")
        try:
            execute(nb, staged, {}, self.runs, cwd=nb.parent)
            _strip_execution_metadata(staged)
            os.replace(staged, nb)
        finally:
            staged.unlink(missing_ok=True)
        return time.perf_counter() - t0


@contextlib.contextmanager
def _environ(key: str, value: str):
    """Set environment variable ``key`` (the kernels inherit it) and put it back as it was on the way out."""
    before = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def cmd_order_check(args):
    """Execute chapters at smoke with ``--threads`` intra-op threads (the stored outputs were made with
    ``settings.REFERENCE_THREADS``) and list the compared cells whose outputs differ. Another thread
    count sums in another order, as another CPU's cache sizes do: a cell listed here can fail nbval on
    a CI machine of another kind, so tag it ``nbval-ignore-output`` (saying why) or make it stable."""
    from . import nbcompare
    root = repo_root(Path(args.root) if args.root else None)
    if str(args.threads) == settings.REFERENCE_THREADS:
        raise SystemExit(f"kafnotes: --threads {args.threads} is the reference count; give another (e.g. 1 or 3)")
    notebooks = pick_chapters(root, args.chapters)
    subs = nbcompare.sanitizers(root / "tests" / "nbval_sanitize.cfg")
    moved = []
    with tempfile.TemporaryDirectory() as tmp, _environ(settings.ENV_THREADS, str(args.threads)):
        runs, out = Path(tmp) / "runs", Path(tmp) / "book"
        out.mkdir()
        for nb in notebooks:  # one at a time, in book order, so later chapters reuse earlier records
            execute(nb, out / nb.name, {}, runs, cwd=nb.parent)
            found = nbcompare.differing_cells(json.loads(nb.read_text()), json.loads((out / nb.name).read_text()), subs)
            for index, lines in found:
                print(f"{nb.name}: code cell {index} moves with {args.threads} thread(s)\n  " + "\n  ".join(lines[:20]),
                      flush=True)
            print(f"{nb.name}: {len(found)} compared cell(s) move", flush=True)
            moved += [(nb.name, i) for i, _ in found]
    if moved:
        raise SystemExit(f"kafnotes: {len(moved)} compared cell(s) depend on the summation order")


def _strip_execution_metadata(path: Path):
    nb = json.loads(path.read_text())
    nb["metadata"].pop("papermill", None)
    for cell in nb["cells"]:
        cell.get("metadata", {}).pop("papermill", None)
        cell.get("metadata", {}).pop("execution", None)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def cmd_train(args):
    """Train one model and evaluate it with native PGD; both leave run records."""
    from . import attacks, data, records, settings, training
    settings.setup(args.seed)
    cifar = data.load_cifar10(args.data, n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    config = training.TrainConfig(arch=args.arch, activation=args.activation, method=args.method,
                                  epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_min=args.lr_min,
                                  augment=args.augment, co_guard=args.co_guard, seed=args.seed,
                                  arch_options=dict(variant=args.block) if args.arch.startswith("resnet") else {})
    print(f"{config.arch} / {config.activation} / {config.method} on {cifar.source}: "
          f"{len(cifar.x_train)} train, {len(cifar.x_test)} test", flush=True)
    t0 = time.perf_counter()
    run = training.train(config, cifar, runs=args.runs or records.runs_dir("cli"))
    train_s = time.perf_counter() - t0
    n = min(args.n_eval, len(cifar.x_test))
    x, y = cifar.x_test[:n], cifar.y_test[:n]
    t1 = time.perf_counter()
    robust = attacks.robust_accuracy(run.model, x, y, eps=args.eps / 255, alpha=args.alpha / 255,
                                     steps=args.pgd_steps, restarts=args.pgd_restarts, progress=True)
    clean = attacks.clean_accuracy(run.model, x, y)
    result = {"data": cifar.source, "n_eval": n, "clean": clean, "robust": robust,
              "attack": f"PGD-{args.pgd_steps}-{args.pgd_restarts}, eps {args.eps}/255, step {args.alpha}/255",
              "train_seconds": train_s, "attack_seconds": time.perf_counter() - t1, "reused": run.reused}
    records.write_json(run.path / f"cli-eval-pgd{args.pgd_steps}-{args.pgd_restarts}-n{n}.json", result)
    print(json.dumps(result, indent=1))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="kafnotes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, fn, help_ in (("run", cmd_run, "execute chapters with papermill"),
                            ("book", cmd_book, "execute every chapter, then build the HTML book")):
        p = sub.add_parser(name, help=help_)
        if name == "run":
            p.add_argument("chapters", nargs="*", default=[],
                           help="chapter names or prefixes, e.g. 03 or 03_vgg (default: all)")
        else:
            p.set_defaults(chapters=[])
        p.add_argument("--profile", default="smoke", help=f"one of {', '.join(PROFILES)} (default smoke)")
        p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                       help="override a chapter parameter, e.g. -p epochs=5 -p n_train=2000")
        p.add_argument("--out", help="output folder (default outputs/PROFILE)")
        p.add_argument("--runs", help="run records folder (default: the profile's committed records, "
                                      "results/study/runs for study; else OUT/runs)")
        p.add_argument("--records-only", action="store_true",
                       help="use stored records only: fail, naming the record, where one would be computed")
        p.add_argument("--root", help="repository root (default: found from the current folder)")
        p.add_argument("-j", "--jobs", type=int, help=f"chapters executed at once (default {default_jobs()} "
                                                      "here: the CPU count, at most 4)")
        p.set_defaults(fn=fn)
    p = sub.add_parser("train", help="train one model, then attack it with PGD")
    p.add_argument("--arch", default="resnet20")
    p.add_argument("--activation", default="relu")
    p.add_argument("--block", default="thesis", choices=["thesis", "he"],
                   help="ResNet block: the thesis' (BN after the add; the book's default) or He et al.'s")
    p.add_argument("--method", default="fgsm_rs", choices=["fgsm_rs", "n_fgsm", "standard"])
    p.add_argument("--data", default="auto", help="'sample', 'keras', 'auto' or a path to an .npz")
    p.add_argument("--n-train", type=int)
    p.add_argument("--n-test", type=int)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.2, help="peak of the one-cycle schedule")
    p.add_argument("--lr-min", type=float, default=0.0)
    p.add_argument("--augment", action="store_true")
    p.add_argument("--co-guard", action="store_true")
    p.add_argument("--eps", type=float, default=8.0, help="in 1/255 units")
    p.add_argument("--alpha", type=float, default=2.0, help="PGD step, in 1/255 units")
    p.add_argument("--pgd-steps", type=int, default=20)
    p.add_argument("--pgd-restarts", type=int, default=1)
    p.add_argument("--n-eval", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", help="records folder (default $KAFNOTES_RUNS/cli)")
    p.set_defaults(fn=cmd_train)
    p = sub.add_parser("refresh", help="re-execute the committed notebooks in place at the smoke profile")
    p.add_argument("chapters", nargs="*", default=[])
    p.add_argument("--root")
    p.add_argument("-j", "--jobs", type=int, help="chapters executed at once (default: the CPU count, at most 4)")
    p.set_defaults(fn=cmd_refresh)
    p = sub.add_parser("order-check", help="list the stored outputs that another summation order moves")
    p.add_argument("chapters", nargs="*", default=[])
    p.add_argument("--threads", type=int, default=1, help="intra-op threads to execute with (default 1)")
    p.add_argument("--root")
    p.set_defaults(fn=cmd_order_check)
    args = parser.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
