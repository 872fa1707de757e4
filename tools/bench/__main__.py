"""Run every benchmark module, print its figures and write them all to build/bench.json.

    python -m tools.bench [name ...]      (names without the bench_ prefix)
"""

import importlib
import json
import pkgutil
import sys
import time
import traceback
from pathlib import Path

import tools.bench as pkg

OUT = Path(__file__).resolve().parents[2] / "build" / "bench.json"


def main(names):
    found = sorted(m.name[6:] for m in pkgutil.iter_modules(pkg.__path__) if m.name.startswith("bench_"))
    chosen = [n for n in found if not names or n in names]
    results, failed = {}, []
    for name in chosen:
        t0 = time.monotonic()
        print("== bench %s" % name, flush=True)
        try:
            figures = importlib.import_module("tools.bench.bench_" + name).run()
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        figures["bench_seconds"] = round(time.monotonic() - t0, 2)
        results[name] = figures
        for k, v in figures.items():
            print("   %-44s %s" % (k, v))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(OUT.read_text()) if OUT.exists() and names else {}
    old.update(results)
    OUT.write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")
    print("wrote %s" % OUT)
    if failed:
        sys.exit("bench: failed: %s" % ", ".join(failed))


if __name__ == "__main__":
    main(sys.argv[1:])
