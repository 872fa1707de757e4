"""Small per-meter JSON state files on flash (progress, baselines), read tolerantly and written atomically."""

import json
import os

_MAX_METERS = 32  # a file with more is not ours: the rest is ignored


def load(path, log=None):
    """The dict kept at `path`; {} if there is none or it is unreadable (said in the log)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError:
        return {}
    except (ValueError, MemoryError, RuntimeError) as e:
        if log:
            log.warning("%s unreadable (%s): starting afresh", path, e)
        return {}
    if not isinstance(data, dict):
        return {}
    out = {}
    for k in data:
        if len(out) >= _MAX_METERS:
            break
        if isinstance(k, str):
            out[k] = data[k]
    return out


def save(path, data, log=None):
    """Write `data` as JSON to `path` atomically (temp file, then rename); False if the flash refused."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.rename(tmp, path)
    except OSError as e:
        if log:
            log.error("%s not saved: %s", path, e)
        return False
    return True
