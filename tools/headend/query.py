"""Send one signed command to a terminal and wait, bounded, for its answer on `resp`."""

import json
import os
import re
import threading

from tools.headend import sign
from tools.headend.mqttconn import as_broker, diagnose

QUERY_WHAT = ("address", "position", "energy")
PLAIN_OPS = ("status", "read", "sync_time", "reboot")
_CONFIG_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
USAGE = ("any of address/position/energy, exactly one of status/read/sync_time/reboot, "
         "config.get [KEY...] or config.set KEY=VALUE...")


def _config_value(text):
    # JSON where it parses (60, 2.5, true, ["v","i"], "text"), otherwise the text itself
    try:
        return json.loads(text)
    except ValueError:
        return text


def op_for(words):
    """Command words of the CLI to (op, args): address/position/energy are one `query`;
    `config.get [KEY...]` and `config.set KEY=VALUE...` read and change settings."""
    words = list(words) or list(QUERY_WHAT)
    if all(w in QUERY_WHAT for w in words):
        return "query", {"what": words}
    if len(words) == 1 and words[0] in PLAIN_OPS:
        return words[0], {}
    op, rest = words[0], words[1:]
    if op == "config.get":
        bad = [k for k in rest if not _CONFIG_KEY.match(k)]
        if bad:
            raise ValueError("config.get: %r is not a config key" % bad[0][:40])
        return op, {"keys": rest}
    if op == "config.set":
        if not rest:
            raise ValueError("config.set needs at least one KEY=VALUE")
        changes = {}
        for w in rest:
            key, sep, value = w.partition("=")
            if not sep or not _CONFIG_KEY.match(key):
                raise ValueError("config.set: %r is not KEY=VALUE" % w[:40])
            if key in changes:
                raise ValueError("config.set: %s given twice" % key)
            changes[key] = _config_value(value)
        return op, {"set": changes}
    raise ValueError("ask for " + USAGE)


def send_command(broker, tid, key, op, args=None, prefix="bdmeter", timeout_s=20.0, req_id=None):
    """Publish a signed command and return the terminal's answer (dict); raise TimeoutError without one."""
    broker = as_broker(broker)  # 'host:port' or a Broker with account and TLS
    req_id, envelope = sign.command(key, tid, op, args, req_id=req_id)
    resp_topic = "%s/%s/resp" % (prefix, tid)
    got = {}
    subscribed, answered = threading.Event(), threading.Event()

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        subscribed.set()

    def on_message(client, userdata, msg):
        try:
            obj = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(obj, dict) and obj.get("id") == req_id:
            got["resp"] = obj
            answered.set()

    refused = []

    def on_connect(client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            refused.append(str(reason_code))
        else:
            client.subscribe(resp_topic, qos=1)

    client = broker.client("bdmeter-query-%s" % os.urandom(4).hex())
    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    client.connect_async(broker.host, broker.port, keepalive=30)
    client.loop_start()
    try:
        # the answer can only be caught if we listen before the command goes out
        if not subscribed.wait(min(timeout_s, 10.0)):
            why = "the broker refused the connection: %s" % refused[-1] if refused else diagnose(broker)
            raise TimeoutError("no connection to the broker at %s%s" % (broker, " (%s)" % why if why else ""))
        client.publish("%s/%s/cmd" % (prefix, tid), envelope, qos=1)
        if not answered.wait(timeout_s):
            raise TimeoutError("no answer from %s to request %s within %.0f s" % (tid, req_id, timeout_s))
        return got["resp"]
    finally:
        client.disconnect()
        client.loop_stop()
