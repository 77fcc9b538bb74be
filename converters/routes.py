"""Routes: several converters for one artifact, tried in order; the first with parity wins.

One converter failing is common and rarely final: skl2onnx of one release emits a tree op that
the installed onnx cannot build, where the same converter at an older ``ai.onnx.ml`` opset, or
hummingbird-ml's tensor rewrite, gives a verified artifact. So each plan offers an ordered list
of routes per format; every route's candidate is verified like any artifact, and every attempt
(its error, or its parity figures) is kept in the manifest's ``source.attempts`` and the report,
so an operator sees what was tried and why the chosen route won.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from converters.errors import ConversionError, ParityError, UnsupportedModelError
from converters.result import ConversionResult

Say = Callable[[str], None]


@dataclass(frozen=True)
class Route:
    """One way to make a candidate artifact: a name for people and the function that makes it."""

    name: str  # "" names the route after the converter its candidate reports
    make: Callable[[], Any]  # () -> converters.artifact.Candidate


@dataclass(frozen=True)
class Attempt:
    """What came of one route: the parity figures of a verified artifact, or the error."""

    route: str
    ok: bool
    seconds: float
    error: str | None = None
    parity: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"route": self.route, "ok": self.ok, "seconds": round(self.seconds, 3)}
        if self.error is not None:
            d["error"] = self.error
        if self.parity:
            d["parity"] = {k: self.parity[k] for k in ("n", "max_abs_diff", "label_agreement")
                           if k in self.parity}
        return d


def first_with_parity(routes: Sequence[Route], check: Callable[[Any], ConversionResult],
                      say: Say, where: str) -> ConversionResult:
    """Verify each route's candidate with ``check`` in order and return the first that passes.

    The result's manifest ``source`` gains ``route`` (the winner) and ``attempts`` (every route
    tried, winner last); its report the same. When every route fails the error says what each
    one did (see :func:`combined_error`); it carries ``attempts`` too.
    """
    attempts: list[Attempt] = []
    errors: list[ConversionError] = []
    for route in routes:
        started = time.perf_counter()
        name = route.name
        try:
            candidate = route.make()
            name = name or str(candidate.converter.get("converter", "converter"))
            result = check(candidate)
        except ConversionError as exc:
            name = name or "converter"
            attempts.append(Attempt(name, False, time.perf_counter() - started,
                                    error=_one_line(exc)))
            errors.append(exc)
            if len(routes) > 1:
                say(f"{where}: route {name} failed: {_one_line(exc)}")
            continue
        attempts.append(Attempt(name, True, time.perf_counter() - started,
                                parity=dict(result.manifest.parity)))
        if len(attempts) > 1:
            say(f"{where}: route {name} verified after {len(attempts) - 1} failed")
        return with_attempts(result, name, attempts)
    raise combined_error(errors, attempts)


def with_attempts(result: ConversionResult, route: str,
                  attempts: Sequence[Attempt]) -> ConversionResult:
    listed = [a.to_dict() for a in attempts]
    manifest = replace(result.manifest,
                       source={**result.manifest.source, "route": route, "attempts": listed})
    return replace(result, manifest=manifest,
                   report={**result.report, "route": route, "attempts": listed})


def combined_error(errors: Sequence[ConversionError],
                   attempts: Sequence[Attempt]) -> ConversionError:
    """One error for a set of failed routes, of the most telling kind.

    A single route's error is returned as it is. Otherwise: a ParityError when some route made
    an artifact that disagreed (the model converts, just not faithfully); an
    UnsupportedModelError when no route could convert it; each names every route's outcome.
    """
    if not errors:
        raise ValueError("no routes were tried")
    if len(errors) == 1:
        error = errors[0]
    else:
        tried = "; ".join(f"{a.route}: {a.error}" for a in attempts)
        parity = [e for e in errors if isinstance(e, ParityError)]
        unsupported = [e for e in errors if isinstance(e, UnsupportedModelError)]
        if parity:
            first = parity[0]
            error = ParityError(first.max_abs_diff, first.label_agreement, first.tolerance,
                                first.n, hint=f"Routes tried: {tried}",
                                min_label_agreement=first.min_label_agreement,
                                precision=first.precision)
        elif unsupported:
            error = UnsupportedModelError(unsupported[0].estimator,
                                          f"no route converts it ({tried})",
                                          supported=unsupported[0].supported)
        else:
            error = ConversionError(f"every route failed: {tried}")
    error.attempts = [a.to_dict() for a in attempts]  # type: ignore[attr-defined]
    return error


def _one_line(exc: BaseException) -> str:
    reason = exc.reason if isinstance(exc, UnsupportedModelError) and exc.reason else str(exc)
    text = " ".join(reason.split())
    return text if len(text) <= 400 else text[:397] + "..."
