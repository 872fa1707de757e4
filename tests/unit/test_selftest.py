"""The self-test's verdict on the LED and in the checklist: the first failing line is the one shown."""

from firmware.selftest import FAIL, OK, SKIP, WARN, checklist, led_pattern, led_text


def _lines(*verdicts):
    return [["line%d" % i, v, "detail %d" % i] for i, v in enumerate(verdicts)]


def test_all_ok_is_a_steady_light():
    lines = _lines(OK, OK, OK)
    assert led_pattern(lines) == [(3000, 0)]
    assert led_text(lines) == "steady on: all ok"


def test_first_failure_is_blinked_by_its_number():
    lines = _lines(OK, OK, FAIL, SKIP, FAIL)
    pattern = led_pattern(lines, reps=2)
    blinks = [step for step in pattern if step[0]]
    assert len(blinks) == 2 * 3 and pattern.count((0, 1250)) == 2  # three blinks, a pause, twice
    assert led_text(lines) == "3 short blinks, repeated: line 3 (line2) failed"


def test_warnings_alone_blink_slowly():
    lines = _lines(OK, WARN, SKIP)
    assert set(led_pattern(lines)) == {(1000, 1000)}
    assert led_text(lines) == "slow blinks: warnings only"


def test_checklist_numbers_lines_and_names_the_failures():
    lines = _lines(OK, FAIL)
    text = checklist({"ok": False, "fail": ["line1"], "lines": lines, "s": 12, "led": led_text(lines)},
                     "861234567890123", "esp32s3-ec800m")
    rows = text.splitlines()
    assert rows[0] == "bdmeter self-test: terminal 861234567890123, board esp32s3-ec800m"
    assert rows[2].split() == ["2", "line1", "FAIL", "detail", "1"]
    assert rows[-1].startswith("verdict: FAIL: line1 in 12 s; LED: 2 short blinks")
