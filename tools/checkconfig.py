"""Check a terminal's config file on the host before it reaches a board: every problem, one per line.

Uses the firmware's own rules (firmware/config.py under CPython), so the host
refuses exactly what the terminal would ignore or replace. Secrets are never
shown, only their length.

    python -m tools.checkconfig PATH

Exit status 0 with "PATH: ok", or 2 with every problem (missing file, not JSON,
not an object, unknown key, bad value).
"""

import json
import sys

from firmware import config


def problems(path):
    """Every problem of the config file at `path`, as human-readable lines (no secret in them)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return ["%s: cannot read it (%s)" % (path, e.strerror or e)]
    try:
        doc = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError as e:
        return ["%s: not UTF-8 text (byte %d)" % (path, e.start)]
    except (ValueError, RecursionError) as e:
        return ["%s: not JSON: %s" % (path, _json_error(e))]
    try:
        _, found = config.resolve(doc)
    except config.ConfigError as e:
        return ["%s: %s" % (path, e)]
    return ["%s: %s" % (path, _without_fallback(msg)) for _, _, msg in found]


def _refuse_constant(name):
    # NaN and Infinity are not JSON; Python's parser takes them, the firmware's does not
    raise ValueError("%s is not a JSON number" % name)


def _json_error(e):
    if isinstance(e, json.JSONDecodeError):
        return "%s at line %d column %d" % (e.msg, e.lineno, e.colno)  # the message itself never quotes the text
    return str(e) if not isinstance(e, RecursionError) else "nested too deeply"


def _without_fallback(msg):
    # on the board a bad value falls back ("; using the default"); here it is simply refused
    head, sep, tail = msg.rpartition("; using ")
    return head if sep else msg


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr if len(argv) != 1 else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    path = argv[0]
    found = problems(path)
    if not found:
        print("%s: ok" % path)
        return 0
    for line in found:
        print(line)
    print("%s: %d problem(s); fix them before running or deploying it" % (path, len(found)), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
