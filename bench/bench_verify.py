"""Ed25519 verification on the device: time per signature and the resident memory its import
costs, PyNaCl (what the agent uses, edgewise_wire/public_keys.py) against cryptography (OpenSSL,
what the controller signs with), measured in the same run.

Usage: python bench/bench_verify.py [--signatures N] [--no-doc]

Each verifier checks the same N distinct signatures (distinct messages, so no verifier can
answer from a cache), three rounds, best round kept. Import cost: a fresh interpreter's VmRSS
before and after importing the verifier's module (the ``edgewise_wire`` package imported before, in both), median
of five interpreters. When the former
pure-Python verifier (edgewise_wire/ed25519.py) is present in the checkout it is measured too.
Results: bench/results/verify.json and a section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the repo importable

from bench.common import REPO_ROOT, fmt, machine, machine_line, measurement, publish, table  # noqa: E402

_IMPORT_RSS = """
import sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
import edgewise_wire  # the package every verifier here sits beside: not the verifier's cost
before = rss()
__import__(sys.argv[1])
print(rss() - before)
"""

# (label, module whose import is the verifier's cost)
VERIFIERS = [
    ("PyNaCl (libsodium), the agent's", "edgewise_wire.public_keys"),
    ("cryptography (OpenSSL), the controller's", "cryptography.hazmat.primitives.asymmetric.ed25519"),
    ("pure Python (edgewise_wire/ed25519.py, removed)", "edgewise_wire.ed25519"),
]


# what the pure-Python verifier the agent used before PyNaCl measured, in the last run that
# still had it (this script, 300 signatures, same machine)
REMOVED_VERIFIER = (
    "The agent's former pure-Python verifier (edgewise_wire/ed25519.py, removed) measured "
    "1.925 ms per signature (13.9x cryptography's time in that run) and +0.6 MiB on import, "
    "in the run of 2026-12-07 11:36 UTC (load average 2.71) that replaced it.")


def _verify_functions() -> dict[str, Callable[[bytes, bytes, bytes], bool]]:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from edgewise_wire import public_keys

    def with_cryptography(key: bytes, sig: bytes, msg: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(key).verify(sig, msg)
        except InvalidSignature:
            return False
        return True

    out = {VERIFIERS[0][1]: public_keys.verify, VERIFIERS[1][1]: with_cryptography}
    if importlib.util.find_spec(VERIFIERS[2][1]) is not None:
        old = importlib.import_module(VERIFIERS[2][1])
        out[VERIFIERS[2][1]] = old.verify
    return out


def time_per_signature(verify: Callable[[bytes, bytes, bytes], bool], key: bytes,
                       signed: list[tuple[bytes, bytes]], rounds: int = 3) -> float:
    """Milliseconds per verification, best of ``rounds``."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for msg, sig in signed:
            if not verify(key, sig, msg):
                raise AssertionError("a valid signature did not verify")
        best = min(best, (time.perf_counter() - start) / len(signed) * 1000)
    return best


def import_cost_mib(module: str, runs: int = 5) -> float:
    costs = [float(subprocess.run([sys.executable, "-c", _IMPORT_RSS, module], cwd=REPO_ROOT,
                                  capture_output=True, text=True, check=True,
                                  timeout=60).stdout) for _ in range(runs)]
    return statistics.median(costs)


def run(signatures: int) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private = Ed25519PrivateKey.generate()
    key = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    messages = [f"manifest {i}".encode() * 20 for i in range(signatures)]
    signed = [(m, private.sign(m)) for m in messages]
    functions = _verify_functions()
    rows = []
    for label, module in VERIFIERS:
        if module not in functions:
            continue
        rows.append({"verifier": label, "module": module,
                     "ms_per_signature": round(time_per_signature(functions[module], key,
                                                                  signed), 4),
                     "import_rss_mib": round(import_cost_mib(module), 2)})
    baseline = rows[1]["ms_per_signature"]
    for row in rows:
        row["time_vs_cryptography"] = round(row["ms_per_signature"] / baseline, 2)
    return {"signatures": signatures, "rows": rows}


def markdown(data: dict[str, Any]) -> str:
    rows = [[r["verifier"], f"`{r['module']}`", fmt(r["ms_per_signature"], 3),
             fmt(r["time_vs_cryptography"]), fmt(r["import_rss_mib"], 1)] for r in data["rows"]]
    return "\n".join([
        "## Ed25519 verification on the device",
        "",
        f"{machine_line(data['machine'])}; measured {data['measured_at']}, load average after "
        f"{data['load_average_after']} (a shared, loaded machine: the times are noisy, the ratios "
        f"less so). `python bench/bench_verify.py`: {data['signatures']} distinct signatures per "
        "verifier, best of three rounds; import cost = VmRSS of a fresh interpreter after "
        "importing the module minus before (with `edgewise_wire` imported first), median of "
        "five.",
        "",
        table(["verifier", "module", "ms per signature", "time vs cryptography",
               "import +MiB RSS"], rows),
        "",
        "The pure-Python row was measured in the checkout that replaced it, in the same run as "
        "the others, before the module was deleted; a later run of this script leaves it out."
        if len(rows) > 2 else REMOVED_VERIFIER,
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--signatures", type=int, default=300)
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args(argv)
    info = machine()
    data = measurement(info, **run(args.signatures))
    print(json.dumps(data["rows"], indent=2))
    publish("verify", data, markdown, doc=not args.no_doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
