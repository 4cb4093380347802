"""The results store: one finished experiment = one JSON file plus one .npz of arrays.

    store/
      3f2a9c0d1e2b4a56.json   config, seed, versions, per-step history, report summary, kernels
      3f2a9c0d1e2b4a56.npz    core_utilization, sram_per_core, kernel_grid, losses, cycles, ...

The file name is the experiment's key: a hash of its full config, seed included (`config_key`),
so a re-run finds the points it already has and two runs that differ in anything, their seed
included, never share an entry. Both files are written atomically (a temporary file in the same
folder, then `os.replace`): the .npz first, then the JSON, which records the .npz's SHA-256,
both under the store's lock, so they come from one writer even when sweeps share the store
(`wsebench.store_claims`: claims, the lock, the clean-up of what a crashed writer left). An
entry exists once its JSON does, so a sweep killed at any moment leaves only complete entries
(and perhaps an orphan .npz or temporary file, which readers ignore and the next sweep removes).

`load_results(path)` reads every entry back into a `Results` table. A damaged entry (truncated
or corrupted JSON, a missing or altered .npz, an unknown format) is listed in `results.errors`
with its file name and what is wrong, and everything else loads.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import UserError

FORMAT = 1
KIND = "wsebench-result"
LIST_COLUMNS = ("losses", "cycles")
_REQUIRED = ("format", "kind", "key", "config", "seed", "point", "versions", "history", "summary",
             "arrays")


class StoreEntryError(UserError, ValueError):
    """A stored entry that cannot be read; `file` is its file name, and the message starts with it."""

    def __init__(self, file: str, problem: str):
        super().__init__(f"{file}: {problem}")
        self.file, self.problem = file, problem


def _plain(value):
    """JSON `default=` hook: NumPy scalars and arrays, dataclasses (wb.Mapping, wb.Sparsity)."""
    import dataclasses
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serializable: {value!r}")


def dumps(value, **kwargs) -> str:
    return json.dumps(value, default=_plain, **kwargs)


def canonical(config: dict) -> dict:
    """`config` as plain JSON data (tuples become lists, dataclasses dicts), keys sorted."""
    return json.loads(dumps(config, sort_keys=True))


def config_key(config: dict) -> str:
    """The store key of an experiment: SHA-256 of its full config (seed included), 16 hex digits."""
    return hashlib.sha256(dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that `path` is either absent, the old file, or all of `data`."""
    path = Path(path)
    # the writer's pid in the name lets a clean-up tell a crashed writer's file from a live one's
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)      # mkstemp's 0600 would hide results from a team
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _npz_bytes(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


class Store:
    """A folder of finished experiments (created if missing)."""

    def __init__(self, path):
        from compiler import ConfigError
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"results store {str(self.path)!r} is a file, not a folder; give "
                              f"a folder path")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"results store {str(self.path)!r} cannot be created: "
                              f"{err.strerror or err}; give a folder you can write to") from None

    def json_path(self, key: str) -> Path:
        return self.path / f"{key}.json"

    def npz_path(self, key: str) -> Path:
        return self.path / f"{key}.npz"

    def put(self, record: dict, arrays: dict) -> Path:
        """Store one finished experiment atomically; returns the JSON's path."""
        from .store_claims import locked
        key = record["key"]
        blob = _npz_bytes(arrays)
        record = {**record, "arrays": {"file": self.npz_path(key).name, "names": sorted(arrays),
                                       "sha256": hashlib.sha256(blob).hexdigest()}}
        text = dumps(record, indent=1).encode()
        with locked(self.path):         # the .npz and the JSON of one entry from one writer
            atomic_write(self.npz_path(key), blob)
            atomic_write(self.json_path(key), text)
        return self.json_path(key)

    def keys(self) -> list[str]:
        """Keys of the entries present (complete or damaged), sorted."""
        return sorted(p.stem for p in self.path.glob("*.json") if not p.name.startswith("."))

    def has(self, key: str) -> bool:
        return self.json_path(key).is_file()

    def get(self, key: str, arrays: bool = False) -> tuple[dict, dict | None]:
        """(record, arrays or None) of entry `key`; StoreEntryError names the damaged file."""
        path = self.json_path(key)
        record = read_record(path)
        blob = _read_npz_blob(self.path, record, path.name)
        return record, (_load_npz(blob, record["arrays"]["file"]) if arrays else None)

    def arrays(self, key: str) -> dict:
        return self.get(key, arrays=True)[1]


def read_record(path: Path) -> dict:
    """The JSON half of an entry, checked; StoreEntryError names the file and the problem."""
    name = Path(path).name
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise StoreEntryError(name, f"not UTF-8 text (file damaged): {err}") from None
    except OSError as err:
        raise StoreEntryError(name, f"cannot be read: {err}") from None
    if not text.strip():
        raise StoreEntryError(name, "empty file (truncated)")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise StoreEntryError(name, f"truncated or corrupted JSON ({err})") from None
    if not isinstance(record, dict) or record.get("kind") != KIND:
        raise StoreEntryError(name, f"not a wsebench result (no \"kind\": \"{KIND}\")")
    if record.get("format") != FORMAT:
        raise StoreEntryError(name, f"result format {record.get('format')!r} is not supported "
                              f"by this wsebench (it reads format {FORMAT})")
    missing = [k for k in _REQUIRED if k not in record]
    if missing:
        raise StoreEntryError(name, f"incomplete result, missing {', '.join(missing)}")
    shapes = {"config": dict, "point": dict, "history": list, "summary": dict, "arrays": dict,
              "versions": dict}
    wrong = [k for k, t in shapes.items() if not isinstance(record[k], t)]
    if wrong or not all(isinstance(h, dict) and "loss" in h for h in record["history"]) \
            or not isinstance(record["arrays"].get("file"), str) \
            or not isinstance(record["arrays"].get("sha256"), str):
        raise StoreEntryError(name, f"malformed result ({', '.join(wrong) or 'history/arrays'} "
                              "not as written by wsebench)")
    if record["key"] != Path(path).stem or config_key(record["config"]) != record["key"]:
        raise StoreEntryError(name, "its config does not hash to its key (file edited or damaged)")
    return record


def _read_npz_blob(folder: Path, record: dict, name: str) -> bytes:
    npz = folder / record["arrays"]["file"]
    try:
        blob = npz.read_bytes()
    except FileNotFoundError:
        raise StoreEntryError(npz.name, f"missing (the arrays of {name})") from None
    except OSError as err:
        raise StoreEntryError(npz.name, f"cannot be read: {err}") from None
    if hashlib.sha256(blob).hexdigest() != record["arrays"]["sha256"]:
        raise StoreEntryError(npz.name, f"checksum mismatch, the file is truncated or corrupted "
                              f"(the arrays of {name})")
    return blob


def _load_npz(blob: bytes, name: str) -> dict:
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as err:  # BadZipFile, ValueError, EOFError, ...
        raise StoreEntryError(name, f"unreadable arrays ({type(err).__name__}: {err})") from None


def row_of(record: dict) -> dict:
    """One table row: key, the point's values, seed, headline figures, summary, losses, cycles."""
    history = record["history"]
    row = {"key": record["key"], **record["point"], "seed": record["seed"],
           "final_loss": history[-1]["loss"] if history else None,
           "accuracy": record.get("accuracy"), "backend": record.get("backend")}
    row.update({k: v for k, v in record["summary"].items() if k not in row})
    row.update({"wall_seconds": record.get("wall_seconds"),
                "losses": [h["loss"] for h in history], "cycles": [h["cycles"] for h in history]})
    row.update(record["point"])       # a swept value keeps its column, even if a summary key is alike
    return row


class Results(list):
    """A sweep's table: one dict per experiment (see `row_of`), in grid order.

    `errors` lists what did not load or did not run: dicts with "file" (a damaged store entry)
    or "point" (a point that failed), and "error". `ran` and `skipped` hold the keys that this
    call ran and those it found in the store. `arrays(row)` gives the .npz arrays of a row."""

    def __init__(self, rows=(), errors=(), store=None, arrays=None, ran=(), skipped=()):
        super().__init__(rows)
        self.errors = list(errors)
        self.store = None if store is None else Path(store)
        self.ran, self.skipped = list(ran), list(skipped)
        self.interrupted = False
        self._arrays = dict(arrays or {})

    @property
    def columns(self) -> list[str]:
        seen = {}
        for row in self:
            seen.update(dict.fromkeys(row))
        return list(seen)

    def arrays(self, row) -> dict:
        """Arrays of `row` (a row dict, its index or its key): core_utilization, sram_per_core,
        kernel_grid, losses, cycles, dense_cycles."""
        if isinstance(row, int):
            row = self[row]
        key = row["key"] if isinstance(row, dict) else row
        if key in self._arrays:
            return self._arrays[key]
        if self.store is None:
            raise KeyError(f"no arrays for {key!r}: this table has no store")
        return Store(self.store).arrays(key)

    def to_csv(self, path=None, columns=None) -> str | Path:
        """CSV text of the table (lists written as JSON); written to `path` when given."""
        columns = list(columns or self.columns)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        for row in self:
            writer.writerow([_cell(row.get(c)) for c in columns])
        if path is None:
            return buf.getvalue()
        Path(path).write_text(buf.getvalue())
        return Path(path)

    def to_text(self, columns=None, digits: int = 4) -> str:
        """An aligned plain-text table of scalar columns, for terminals."""
        columns = list(columns or [c for c in self.columns if c not in LIST_COLUMNS])
        cells = [[_short(row.get(c), digits) for c in columns] for row in self]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
        return "\n".join(lines)

    def plot(self, x: str, y: str, by: str | None = None, ax=None):
        """`y` against `x`, one line per value of column `by`. With x="step" and y="losses" or
        "cycles", one curve per experiment."""
        import matplotlib.pyplot as plt
        for name in (x, y, by):
            if name is not None and name != "step" and name not in self.columns:
                raise KeyError(f"no column {name!r}; columns: {', '.join(self.columns)}")
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        if x == "step":
            for row in self:
                ax.plot(range(1, len(row[y]) + 1), row[y], label=_label(row, by))
        else:
            groups = {}
            for row in self:
                groups.setdefault(_cell(row.get(by)) if by else None, []).append(row)
            for label, rows in groups.items():
                rows = sorted(rows, key=lambda r: _sort_key(r.get(x)))
                ax.plot([_cell(r.get(x)) for r in rows], [r.get(y) for r in rows], marker="o",
                        label=None if by is None else f"{by}={label}")
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        if by is not None or x == "step":
            ax.legend(fontsize="small")
        return ax

    def __repr__(self) -> str:
        extra = f", {len(self.errors)} errors" if self.errors else ""
        return f"<Results: {len(self)} experiments{extra}>\n{self.to_text()}"


def _cell(value):
    if isinstance(value, (list, dict, tuple)):
        return dumps(value, sort_keys=True)
    return value


def _short(value, digits: int) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(_cell(value))


def _sort_key(value):
    return (0, value, "") if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else (1, 0, str(_cell(value)))


def _label(row: dict, by: str | None) -> str:
    return f"{by}={_cell(row.get(by))}" if by else row["key"]


def load_results(path) -> Results:
    """Read a results store back: every complete entry as a row (ordered by finish time); each
    damaged entry listed in `.errors` as {"file": name, "error": what is wrong}."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"results store {str(folder)!r} does not exist or is not a folder")
    store = Store(folder)
    loaded, errors = [], []
    for key in store.keys():
        try:
            record, _ = store.get(key)
            loaded.append((str(record.get("finished") or ""), key, row_of(record)))
        except StoreEntryError as err:
            errors.append({"file": err.file, "error": str(err)})
        except Exception as err:  # noqa: BLE001 - one bad entry must not stop the others loading
            name = store.json_path(key).name
            errors.append({"file": name, "error": f"{name}: unreadable ({type(err).__name__}: {err})"})
    loaded.sort(key=lambda t: t[:2])
    return Results([row for _, _, row in loaded], errors=errors, store=folder)
