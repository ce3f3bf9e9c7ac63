"""results.json: the versioned document a run writes and reports read.

The shape is fixed by ``testbed/data/results.schema.json`` (schema
``testbed.results/1``, JSON Schema draft 2020-12). The document records its
own environment (kernel, delay backend, tool versions, host sysctls) and the
scenario as run, so plots and reports are made from it alone and a saved run
can be re-plotted.

Life of a document: :func:`new_results` when the run starts, one
:func:`new_variant` per variant (the runner fills its measurement sections),
:func:`finish_results` at the end (also on interruption), then
:func:`save_results` = :func:`validate_results` + :func:`write_json_atomic`.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

import jsonschema

from testbed.errors import InputError, RunError

__all__ = [
    "SCHEMA_ID",
    "SCHEMA_PATH",
    "VERDICTS",
    "load_schema",
    "new_results",
    "new_variant",
    "finish_results",
    "validate_results",
    "write_json_atomic",
    "write_text_atomic",
    "save_results",
    "load_results",
    "get_value",
    "overall_verdict",
    "utc_now",
]

SCHEMA_ID = "testbed.results/1"
SCHEMA_PATH = Path(__file__).resolve().parent / "data" / "results.schema.json"
#: Fidelity verdicts from best to worst (``skip`` means "not judged").
VERDICTS = ("skip", "pass", "warn", "fail")


def utc_now() -> str:
    """Current time, ISO 8601 in UTC with seconds, e.g. ``2025-01-31T12:00:00+00:00``."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


@lru_cache(maxsize=1)
def load_schema() -> Dict[str, Any]:
    """The results JSON Schema, parsed (cached)."""
    with open(SCHEMA_PATH, encoding="utf-8") as handle:
        return json.load(handle)


def new_results(
    scenario: Any,
    environment: Dict[str, Any],
    overrides: Iterable[str] = (),
    quick: bool = False,
) -> Dict[str, Any]:
    """A fresh, incomplete document for a run of ``scenario`` (a Scenario)."""
    return {
        "schema": SCHEMA_ID,
        "scenario": scenario.name,
        "scenario_config": scenario.to_dict(),
        "source": getattr(scenario, "source", None),
        "overrides": list(overrides),
        "quick": bool(quick),
        "complete": False,
        "started_at": utc_now(),
        "finished_at": None,
        "environment": dict(environment),
        "host_sysctls": dict(scenario.host_sysctls),
        "errors": [],
        "variants": [],
    }


def new_variant(scenario: Any, variant: Any, links: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """A fresh variant entry: name, merged params, configured links, no results yet.

    ``links`` maps link names to the configured profiles as recorded; by
    default the variant's merged links are resolved (presets applied) and
    recorded in the profile's user form (``LinkSpec.to_user()``: tc-like
    strings; ``{forward: ..., reverse: ...}`` when the directions differ).
    """
    config = scenario.variant_config(variant)
    if links is None:
        links = {name: spec.to_user() for name, spec in scenario.variant_links(variant).items()}
    return {
        "name": config["name"],
        "description": config["description"],
        "complete": False,
        "errors": [],
        "started_at": utc_now(),
        "finished_at": None,
        "params": config["params"],
        "links": dict(links),
    }


def finish_results(doc: Dict[str, Any], interrupted: bool = False) -> Dict[str, Any]:
    """Stamp ``finished_at`` and set ``complete``: every variant complete, no run error."""
    doc["finished_at"] = utc_now()
    variants = doc.get("variants") or []
    doc["complete"] = (
        not interrupted
        and not doc.get("errors")
        and bool(variants)
        and all(v.get("complete") is True for v in variants)
    )
    return doc


def _dotted(path: Iterable[Any]) -> str:
    return ".".join(str(part) for part in path) or "<top>"


def _non_finite(value: Any, path: List[Any]) -> Optional[str]:
    """Dotted path of the first NaN or infinity in ``value``, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return _dotted(path)
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite(item, path + [key])
        if found is not None:
            return found
    return None


def validate_results(doc: Any) -> None:
    """Check ``doc`` against the schema; raise RunError naming the failing path."""
    validator = jsonschema.Draft202012Validator(load_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if error is not None:
        message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
        raise RunError(f"results document invalid at {_dotted(error.absolute_path)}: {message}")
    bad = _non_finite(doc, [])
    if bad is not None:
        raise RunError(f"results document invalid at {bad}: NaN or infinity is not valid JSON")


def write_text_atomic(path: Union[str, Path], text: str) -> Path:
    """Write ``text`` so readers see the old file or the new one, never half.

    A temporary file in the same directory is written, fsync'ed and renamed
    over ``path`` with ``os.replace``; the directory is fsync'ed after.
    """
    target = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise RunError(f"cannot write {target}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException as exc:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise RunError(f"cannot write {target}: {exc.strerror or exc}") from exc
        raise
    _fsync_dir(target.parent)
    return target


def _fsync_dir(directory: Path) -> None:
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename is done
    finally:
        os.close(dir_fd)


def write_json_atomic(path: Union[str, Path], doc: Any) -> Path:
    """Write ``doc`` as indented JSON atomically (see :func:`write_text_atomic`).

    NaN and infinity are refused (they are not JSON): RunError.
    """
    try:
        text = json.dumps(doc, indent=2, allow_nan=False, ensure_ascii=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise RunError(f"cannot write {path}: {exc}") from exc
    return write_text_atomic(path, text)


def save_results(path: Union[str, Path], doc: Dict[str, Any]) -> Path:
    """Validate, then write atomically."""
    validate_results(doc)
    return write_json_atomic(path, doc)


def load_results(path: Union[str, Path]) -> Dict[str, Any]:
    """Read and validate a saved results.json; problems are InputError (user input)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError("results", "file not found", source=source) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("results", f"cannot read: {exc}", source=source) from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"line {exc.lineno} column {exc.colno}", f"invalid JSON: {exc.msg}", source=source) from exc
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_ID:
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise InputError("schema", f"not a {SCHEMA_ID} document (found {found!r})", source=source)
    try:
        validate_results(doc)
    except RunError as exc:
        raise InputError("results", str(exc), source=source) from exc
    return doc


def get_value(doc: Any, dotted: str, default: Any = None) -> Any:
    """``get_value(variant, "ping.rtt_ms.mean")``; ``default`` if any step is missing or null."""
    node = doc
    for part in dotted.split("."):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return default
        if node is None:
            return default
    return node


def overall_verdict(variant: Dict[str, Any]) -> Optional[str]:
    """Worst fidelity verdict of a variant (``fail`` > ``warn`` > ``pass`` > ``skip``), None if unjudged."""
    fidelity = variant.get("fidelity") or {}
    verdicts = [check.get("verdict") for check in fidelity.get("checks") or [] if check.get("verdict") in VERDICTS]
    if fidelity.get("verdict") in VERDICTS:
        verdicts.append(fidelity["verdict"])
    if not verdicts:
        return None
    return max(verdicts, key=VERDICTS.index)
