"""Date-level publication on a local file system: a journaled commit and a per-date lock.

A run stages every table of its date under ``<root>/_staging/as_of_date=D/<run_id>/`` and
its final manifest file beside them. :func:`commit_date` then publishes the date:

1. it records, for every table, the published folder ``<root>/<table>/as_of_date=D``, the
   staged one and a parking place inside the staging folder, together with the identity
   (device and inode) of the new folder and of the old one;
2. it writes that plan as the date's journal ``<root>/_journal/as_of_date=D.json``
   (temporary file, ``fsync``, rename): **this is the commit point**;
3. it moves the folders (one ``renameat2(RENAME_EXCHANGE)`` per table on Linux, two
   renames elsewhere), then replaces the run's manifest file with the final one;
4. it deletes the journal, then the staging folder.

Every step is one rename, and the state of every table is read back from the folders'
identities, so the moves can be replayed from any point: :func:`recover_date` finishes an
interrupted publication (rolls the date forward to the journal's run, manifest included),
or finishes undoing one that failed (the journal then says ``backward``). A run calls it
at its start, under the date's lock. Killed before the journal exists, a run has published
nothing; killed after, its recovery publishes all of it. Either way every table folder of
the date holds exactly one run, the same for all tables, and the manifest agrees.

A reader reading several tables during the few milliseconds of step 3 can still see two
runs across tables (each table folder is exchanged atomically, the date is not): compare
``run_id`` across tables, or wait for the journal to be gone.

:class:`DateLock` makes runs of one date exclusive: an advisory ``flock`` on
``<root>/_locks/as_of_date=D.lock``, released by the kernel when its process ends, however
it ends, so a killed run never leaves it behind. The file holds the holder's run id, pid,
host and start time for the error message of a run that finds it taken.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from risk_engine.errors import RiskEngineError
from risk_engine.storage import swap_directories

try:  # POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: Called after every durable step of a commit with the step's name (tests kill there).
StepHook = Callable[[str], None]

JOURNAL_DIR = "_journal"
LOCK_DIR = "_locks"
STAGING_DIR = "_staging"


class ConcurrentRunError(RiskEngineError):
    """Another run of the same as-of date holds the date's lock."""


class PublicationError(RiskEngineError):
    """A date's publication cannot be completed or undone from its journal."""


def _date_dir(as_of: dt.date) -> str:
    return f"as_of_date={as_of.isoformat()}"


def journal_path(root: Path, as_of: dt.date) -> Path:
    """``<root>/_journal/as_of_date=D.json``: present only while a publication is under way."""
    return root / JOURNAL_DIR / f"{_date_dir(as_of)}.json"


def staging_root(root: Path, as_of: dt.date) -> Path:
    """``<root>/_staging/as_of_date=D``: the staging folders of the date's runs."""
    return root / STAGING_DIR / _date_dir(as_of)


# ----------------------------------------------------------------------------- the lock


class DateLock:
    """Exclusive lock of one as-of date under a local output root.

    Parameters
    ----------
    root : Path
        Local output root.
    as_of : datetime.date
        The date.
    run_id : str
        The run taking the lock (written into the lock file for the error message of others).

    Raises
    ------
    ConcurrentRunError
        From :meth:`acquire` when another live process holds the lock.
    """

    def __init__(self, root: Path, as_of: dt.date, run_id: str) -> None:
        self.path = root / LOCK_DIR / f"{_date_dir(as_of)}.lock"
        self.as_of, self.run_id = as_of, run_id
        self._fd: int | None = None

    def acquire(self) -> DateLock:
        """Take the lock at once or raise :class:`ConcurrentRunError`; changes nothing else."""
        if fcntl is None:  # pragma: no cover - no advisory locks: runs are not serialized
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise ConcurrentRunError(
                f"another run of as_of_date {self.as_of.isoformat()} is in progress "
                f"({holder}; lock {self.path}); runs of one date must not overlap"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        info = {"run_id": self.run_id, "pid": os.getpid(), "host": socket.gethostname(),
                "started_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Release the lock (closing the file releases it; the file itself stays)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> DateLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "holder starting"
    return (f"run {info.get('run_id')}, pid {info.get('pid')} on {info.get('host')} since "
            f"{info.get('started_at')}")


# ----------------------------------------------------------------------------- the journal


def _identity(path: Path) -> list[int] | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return [st.st_dev, st.st_ino]


def _write_json_durably(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@dataclass(frozen=True)
class _Move:
    """One table's folders (relative to the root) and the identities of its two contents."""

    table: str
    published: str
    staged: str
    parked: str
    new: list[int] | None
    old: list[int] | None


def _plan(root: Path, staging: Path, as_of: dt.date, tables: list[str]) -> list[_Move]:
    moves = []
    for table in tables:
        published = root / table / _date_dir(as_of)
        staged = staging / table / _date_dir(as_of)
        parked = staging / "_replaced" / table
        new, old = _identity(staged), _identity(published)
        if new is None and old is None:
            continue
        if new is not None:
            published.parent.mkdir(parents=True, exist_ok=True)
        parked.parent.mkdir(parents=True, exist_ok=True)
        moves.append(_Move(table, str(published.relative_to(root)),
                           str(staged.relative_to(root)), str(parked.relative_to(root)),
                           new, old))
    return moves


def _settle(root: Path, move: _Move, forward: bool, hook: StepHook) -> None:
    """Make the published folder hold the wanted content (new forward, old backward).

    One rename (or exchange) at a time, each followed by ``hook``; the state is read back
    from the folders' identities, so calling it again after a kill continues where it
    stopped.
    """
    published, spots = root / move.published, (root / move.staged, root / move.parked)
    want, other = (move.new, move.old) if forward else (move.old, move.new)
    at_published = _identity(published)
    if at_published == want:  # done (for want None: no folder, as wanted)
        return
    if at_published is not None and at_published != other:
        raise PublicationError(f"publication of {move.table}: {published} holds neither the "
                               "run's results nor the ones they replace; not touching it")
    free = [p for p in reversed(spots) if _identity(p) is None]  # parked first
    if want is None:  # the date must have no folder for this table
        if at_published is not None:
            os.rename(published, free[0])
            hook(f"{move.table}:removed")
        return
    source = next((p for p in spots if _identity(p) == want), None)
    if source is None:
        raise PublicationError(f"publication of {move.table}: the folder to publish is "
                               f"missing from {root / move.staged} and {root / move.parked}")
    if at_published is None:
        os.rename(source, published)
        hook(f"{move.table}:installed")
        return
    if swap_directories(source, published):
        hook(f"{move.table}:exchanged")
        return
    os.rename(published, free[0])
    hook(f"{move.table}:moved_aside")
    os.rename(source, published)
    hook(f"{move.table}:installed")


def _settle_manifest(root: Path, doc: dict[str, Any], hook: StepHook) -> None:
    staged, published = doc.get("manifest_staged"), doc.get("manifest_published")
    if staged and published and (root / staged).exists():
        os.replace(root / staged, root / published)
        hook("manifest")


def _roll(root: Path, doc: dict[str, Any], hook: StepHook) -> None:
    forward = doc["direction"] == "forward"
    for m in doc["moves"]:
        _settle(root, _Move(**m), forward, hook)
    if forward:
        _settle_manifest(root, doc, hook)


def _finish(root: Path, journal: Path, doc: dict[str, Any], hook: StepHook) -> None:
    journal.unlink()
    _fsync_dir(journal.parent)
    hook("journal_removed")
    shutil.rmtree(root / doc["staging"], ignore_errors=True)
    hook("staging_removed")


#: Test-only fault injection, like the config's ``testing`` section: a process with this
#: variable set to k exits with status 137 (as if SIGKILLed) after the k-th step of a commit.
KILL_AFTER_STEP_ENV = "RISK_ENGINE_TESTING_KILL_AFTER_PUBLICATION_STEP"


def _no_hook(step: str) -> None:
    return None


def _default_hook() -> StepHook:
    kill_at = int(os.environ.get(KILL_AFTER_STEP_ENV, "0") or 0)
    if kill_at <= 0:
        return _no_hook
    done: list[str] = []

    def hook(step: str) -> None:
        done.append(step)
        if len(done) >= kill_at:
            os._exit(137)

    return hook


def commit_date(
    root: Path, staging: Path, as_of: dt.date, run_id: str, tables: list[str], *,
    manifest: Path | None = None, hook: StepHook | None = None,
) -> None:
    """Publish a run's staged tables for ``as_of`` as one commit (see the module docstring).

    Parameters
    ----------
    root : Path
        Local output root.
    staging : Path
        The run's staging folder (under ``root``), holding ``<table>/as_of_date=D/``.
    as_of : datetime.date
        The date published.
    run_id : str
        The run (recorded in the journal).
    tables : list of str
        Every table of the date: a table without a staged folder loses its published one.
    manifest : Path, optional
        The run's final manifest file, staged; it replaces ``run_manifest/as_of_date=D/
        <its name>`` as the last move of the commit.
    hook : callable, optional
        Called with a step name after each durable step (fault injection in tests). Without
        it, :data:`KILL_AFTER_STEP_ENV` (test-only) can kill the process after a step.

    Raises
    ------
    PublicationError, OSError
        If a move fails (a permission error, ...): the moves done are undone first, so the
        date keeps its previous results; if undoing fails too the journal stays and the next
        run of the date finishes undoing it.
    """
    step = hook or _default_hook()
    journal = journal_path(root, as_of)
    if journal.exists():
        raise PublicationError(f"an unfinished publication of {as_of} is in {journal}; "
                               "call recover_date first")
    doc: dict[str, Any] = {
        "version": 1, "as_of_date": as_of.isoformat(), "run_id": run_id,
        "direction": "forward", "staging": str(staging.relative_to(root)),
        "moves": [m.__dict__ for m in _plan(root, staging, as_of, tables)],
    }
    if manifest is not None:
        doc["manifest_staged"] = str(manifest.relative_to(root))
        doc["manifest_published"] = str(
            (root / "run_manifest" / _date_dir(as_of) / manifest.name).relative_to(root))
    try:
        _write_json_durably(journal, doc)
    except BaseException:  # nothing moved yet: no journal means nothing to recover
        journal.unlink(missing_ok=True)
        for tmp in journal.parent.glob(f".{journal.name}.tmp-*"):
            tmp.unlink(missing_ok=True)
        raise
    step("journal")
    try:
        _roll(root, doc, step)
    except Exception as exc:
        doc["direction"] = "backward"
        doc["error"] = f"{type(exc).__name__}: {exc}"
        try:
            _write_json_durably(journal, doc)
            step("journal_backward")
            _roll(root, doc, step)
            _finish(root, journal, doc, step)
        except Exception as undo:  # noqa: BLE001 - report both, keep the journal
            raise PublicationError(
                f"publication of {as_of} failed ({type(exc).__name__}: {exc}) and undoing "
                f"it failed too ({type(undo).__name__}: {undo}); the next run of the date "
                f"will finish from {journal}") from exc
        raise
    try:
        _finish(root, journal, doc, step)
    except OSError as exc:  # published; the next run's recovery removes what is left
        log.warning("publication of %s: cleaning up after the commit failed: %s", as_of, exc)


def recover_date(root: str | Path, as_of: dt.date, *, hook: StepHook | None = None) -> str | None:
    """Finish an interrupted publication of ``as_of`` under a local ``root``.

    Rolls the date forward to the journal's run (its tables and its final manifest) when
    the journal says ``forward`` (the run was killed after its commit point), or back to
    the previous results when it says ``backward`` (the publication failed and was being
    undone). Idempotent; a no-op without a journal. Call it with the date's lock held (a
    run does, at its start).

    Parameters
    ----------
    root : str or Path
        Local output root (``file://`` prefix allowed).
    as_of : datetime.date
        The date.
    hook : callable, optional
        Called with a step name after each durable step (tests).

    Returns
    -------
    str or None
        What was done (``"rolled forward to run <id>"`` / ``"rolled back run <id>"``), or
        None if there was nothing to recover.

    Raises
    ------
    PublicationError
        If the journal's folders are not where it says (changed by hand).
    """
    base = Path(str(root).removeprefix("file://"))
    journal = journal_path(base, as_of)
    if not journal.exists():
        return None
    doc = json.loads(journal.read_text(encoding="utf-8"))
    step = hook or _no_hook
    try:
        _roll(base, doc, step)
    except PublicationError as exc:
        raise PublicationError(f"{exc}. The unfinished publication of {as_of} in {journal} "
                               "cannot be completed; restore the folders it names, or "
                               "delete it to give up the recovery") from None
    _finish(base, journal, doc, step)
    verb = "rolled forward to" if doc["direction"] == "forward" else "rolled back"
    return f"{verb} run {doc['run_id']}"


def clean_stale_staging(root: Path, as_of: dt.date, keep: str | None = None) -> list[str]:
    """Delete the staging folders of ``as_of``'s runs other than ``keep``; return their names.

    Call with the date's lock held and after :func:`recover_date`: no other run of the date
    is then running and none needs its staging folder. Also removes the pre-journal layout
    ``_staging/<run_id>`` of this date's killed runs (run ids start with the date).
    """
    removed = []
    folder = staging_root(root, as_of)
    if folder.is_dir():
        for child in sorted(folder.iterdir()):
            if child.name != keep:
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child.name)
    legacy = root / STAGING_DIR
    if legacy.is_dir():
        for child in sorted(legacy.glob(f"{as_of.isoformat()}-*")):
            if child.is_dir() and child.name != keep:
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child.name)
    return removed
