"""Run records: JSON files written atomically, keyed by a hash of everything that shapes a result."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import tempfile
import time
from functools import lru_cache
from pathlib import Path

ENV_RUNS = "KAFNOTES_RUNS"

# What the kafnotes code computes, as a number that enters every record's key. Bump it with any change
# that alters a result (a loss, an attack, an initialiser, a data pipeline): records made by the old
# code are then not reused. A refactor, a caption or a plot keeps it, so committed records (the
# published edition) survive them. A change that forgets to bump is caught by the smoke outputs,
# which `pytest --nbval` recomputes from no records at all (tests/test_records.py shows it).
NUMERICS_VERSION = 1
# Set to 1 to forbid computing: a run or an attack without its record raises MissingRecord instead.
# The published edition is built this way, so a missing record fails the build instead of training.
ENV_RECORDS_ONLY = "KAFNOTES_RECORDS_ONLY"


class MissingRecord(RuntimeError):
    """A record that ``$KAFNOTES_RECORDS_ONLY`` forbids computing is not there."""


def forbid_computing(what: str | os.PathLike):
    """Raise ``MissingRecord`` for ``what`` when only stored records may be used."""
    if os.environ.get(ENV_RECORDS_ONLY, "0") == "1":
        raise MissingRecord(
            f"no record for {what} (numerics version {NUMERICS_VERSION}), and {ENV_RECORDS_ONLY}=1 forbids "
            f"computing it. Run the chapter without {ENV_RECORDS_ONLY} to compute it (see the README's "
            f"'The study edition'), or bump nothing and check that the committed records match "
            f"this config.")


def runs_dir(profile: str | None = None) -> Path:
    """Where records go: ``$KAFNOTES_RUNS`` if set, else ``./kafnotes-runs``; one folder per profile."""
    root = Path(os.environ.get(ENV_RUNS) or "kafnotes-runs")
    return root / profile if profile else root


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as JSON via a temporary file and an atomic rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=True, default=_jsonable)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; records are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def exclusive(path: str | os.PathLike):
    """Hold an OS lock on ``path`` (a ``.lock`` file) while the body runs.

    Two chapters that need the same run (chapter 6 attacks chapter 5's models) can then run side by
    side: the second waits for the first to finish that run and reuses it instead of training it
    again. The OS releases the lock when its process dies, so a crash never leaves a stale lock.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no shared runs between processes, nothing to wait for
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def reuse_or_record(path: str | os.PathLike, compute) -> dict:
    """The record at ``path`` if there is one; else ``compute()``'s dict, stamped with its ``seconds``
    and the environment and written there. The lock makes processes that ask at once compute it once
    (chapters 5 and 6 ask for the same evaluations)."""
    path = Path(path)
    with exclusive(path.with_suffix(".lock")):
        if path.exists():
            return read_json(path)
        forbid_computing(path)
        t0 = time.perf_counter()
        record = compute()
        # seconds_earlier: what interrupted processes spent on the parts a resumed compute() reused
        record.update(seconds=time.perf_counter() - t0 + record.pop("seconds_earlier", 0.0), environment=environment())
        write_json(path, record)
        return record


def read_json(path: str | os.PathLike):
    with open(path) as f:
        return json.load(f)


def config_key(config: dict) -> str:
    """A short stable hash of a config (with its data's checksum) and ``NUMERICS_VERSION``."""
    text = json.dumps({"config": config, "numerics": NUMERICS_VERSION}, sort_keys=True, default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def array_digest(*arrays) -> str:
    """A short hash of array contents (e.g. the labels a run trained on), for config keys."""
    import numpy as np
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:12]


# Modules that only present results. The others' source is hashed into each record's environment
# stamp, so two records' code can be compared; the key itself is NUMERICS_VERSION.
PRESENTATION_MODULES = frozenset({"__init__.py", "chapter.py", "cli.py", "plots.py", "profiles.py", "thesis.py"})


@lru_cache(maxsize=None)
def code_fingerprint(package: str | os.PathLike | None = None) -> str:
    """Hash of the source of the kafnotes modules that compute results (all but the presentation ones),
    stamped on every record as provenance.

    Computed once per process, so it names the code this process imported even if the files are
    edited while it runs.
    """
    h = hashlib.sha256()
    for p in sorted(Path(package or Path(__file__).parent).glob("*.py")):
        if p.name not in PRESENTATION_MODULES:
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:12]


def environment() -> dict:
    import keras
    import numpy as np
    import tensorflow as tf
    from . import __version__
    gpus = tf.config.list_physical_devices("GPU")
    return {"kafnotes": __version__, "numerics": NUMERICS_VERSION, "code": code_fingerprint(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "device": ", ".join(d.name for d in gpus) or f"CPU ({os.cpu_count()} cores)",
            "machine": platform.machine(), **cpu(),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "")}


# The instruction-set extensions that decide which kernels oneDNN, Eigen and OpenBLAS run.
_ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile")


@lru_cache(maxsize=None)
def cpu() -> dict:
    """The CPU model and its relevant instruction-set flags (Linux), so a difference between two
    machines' records can be traced to the hardware."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    model = value.strip()
                elif key.strip() == "flags":
                    present = set(value.split())
                    flags = [flag for flag in _ISA_FLAGS if flag in present]
                    break
    except OSError:
        pass
    return {"cpu": model, "cpu_flags": " ".join(flags)}


def _jsonable(obj):
    import numpy as np
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a run record")
