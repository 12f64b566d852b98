"""Masking: secrets in their encodings, in outputs, metrics and items, and in log lines
also when split across lines."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

from ordo.masking import MASK, LineMask, forms, mask, mask_value, masked, secret_values
from ordo.model import CheckResult, Metric, Outcome, State

VALUE = 'say "hi" C:\\tmp é/&'


def test_a_value_is_masked_as_it_is_and_in_the_encodings_a_task_prints_it_in() -> None:
    hidden = forms([VALUE])
    for shown in (
        VALUE,
        json.dumps(VALUE),
        json.dumps(VALUE, ensure_ascii=False),
        repr(VALUE),
        repr({"k": VALUE}),
        quote(VALUE, safe=""),
        quote_plus(VALUE),
        base64.b64encode(VALUE.encode()).decode(),
        base64.urlsafe_b64encode(VALUE.encode()).decode(),
    ):
        text = mask(f"before {shown} after", hidden)
        assert MASK in text and "before" in text and "after" in text, shown
        assert "hi" not in text and "tmp" not in text, (shown, text)


def test_short_values_are_not_url_or_base64_encoded_and_empty_ones_are_ignored() -> None:
    assert forms(["abc", ""]) == ("abc",)
    assert mask("xabcx", forms(["abc"])) == f"x{MASK}x"


def test_the_longest_secret_wins_where_two_overlap() -> None:
    assert mask("the password-long one", forms(["password", "password-long"])) == (
        f"the {MASK} one"
    )


def test_outputs_keys_values_numbers_metrics_items_and_checks_are_masked() -> None:
    hidden = forms(["s3cr3t-v", "424242"])
    outcome = Outcome(
        State.FAILED,
        error="failed: s3cr3t-v",
        outputs={"key_s3cr3t-v": {"list": ["s3cr3t-v", 424242, 7]}},
        metrics=(Metric("m_s3cr3t-v", 1.0, tags={"t": "s3cr3t-v"}),),
        forks=("s3cr3t-v", 1),
        checks=(CheckResult("post", 1, "command", False, "said s3cr3t-v", 0, 1, "s3cr3t-v"),),
    )
    shown = masked(outcome, hidden)
    assert shown.error == f"failed: {MASK}"
    assert shown.outputs == {f"key_{MASK}": {"list": [MASK, MASK, 7]}}
    assert shown.metrics[0].name == f"m_{MASK}" and shown.metrics[0].tags == {"t": MASK}
    assert shown.forks == (MASK, 1)
    assert shown.checks[0].message == f"said {MASK}" and shown.checks[0].output == MASK
    assert mask_value({"n": 5}, hidden) == {"n": 5}


def feed(masker: LineMask, lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        out += masker.feed(line)
    return out + masker.flush()


def test_a_value_printed_in_pieces_on_consecutive_lines_is_masked_on_each() -> None:
    masker = LineMask(forms(["abcdefgh"]))
    assert feed(masker, ["x abc", "defgh y", "plain"]) == [f"x {MASK}", f"{MASK} y", "plain"]


def test_a_value_with_newlines_is_masked_line_by_line_also_split_elsewhere() -> None:
    value = "first line\nsecond line"
    assert feed(LineMask(forms([value])), ["> first line", "second line <"]) == [
        f"> {MASK}",
        f"{MASK} <",
    ]
    # split inside the first line as well: the break it prints is not the value's
    assert feed(LineMask(forms([value])), ["fir", "st line", "second line"]) == [MASK] * 3


def test_a_line_that_may_start_a_secret_waits_for_the_next_and_others_pass_at_once() -> None:
    masker = LineMask(forms(["abcdefgh"]))
    assert masker.feed("nothing here") == ["nothing here"]
    assert masker.feed("ends with ab") == []  # it may go on
    assert masker.holding
    assert masker.feed("but not this") == ["ends with ab", "but not this"]
    assert masker.feed("again abc") == []
    assert masker.flush() == ["again abc"]  # the attempt ended: let go as it is
    assert not masker.holding


def test_a_value_in_one_line_per_character_is_masked() -> None:
    value = "k3y-v4lue"
    assert feed(LineMask(forms([value])), [*value, "after"]) == [MASK] * len(value) + ["after"]


def test_without_secrets_lines_pass_unchanged() -> None:
    assert LineMask(()).feed("any line") == ["any line"]


def test_the_process_log_is_masked_messages_arguments_and_tracebacks() -> None:
    import io
    import logging

    from ordo.masking import MaskingFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(MaskingFilter(lambda: ("tok-abcdef", "pa ss")))
    log = logging.getLogger("test.masking.filter")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("GET http://x/?k=%s and %s", "tok-abcdef", "pa%20ss")
        try:
            raise ValueError("bad tok-abcdef")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "tok-abcdef" not in text and "pa%20ss" not in text
    assert "k=**** and ****" in text and "ValueError: bad ****" in text


def test_inherited_names_like_a_secret_are_found_with_a_configurable_list() -> None:
    from ordo.masking import secret_name_pattern

    env = {"FOO_TOKEN": "t-1234", "GCP_CREDENTIALS": "c-1234", "DSN": "d-1234", "X": "x-1234"}
    assert set(secret_values(env)) == {"t-1234", "c-1234"}
    assert secret_values(env, secret_name_pattern(["dsn", " "])) == ("d-1234",)
    assert secret_values(env, secret_name_pattern([])) == ()


def test_the_keys_withheld_from_tasks_are_those_the_cli_removes() -> None:
    from ordo.cli.main import WITHHELD as CLI_WITHHELD
    from ordo.masking import WITHHELD, passed_environ
    from ordo.runners.process import child_env

    assert set(CLI_WITHHELD) == WITHHELD
    base = {"PATH": "/bin", "ORDO_SECRET_KEY": "k", "ORDO_SESSION_KEY": "s", "A": "1"}
    assert passed_environ(base) == {"PATH": "/bin", "A": "1"}
    for inherit in (True, False, ["ORDO_SECRET_KEY", "A"]):
        assert "ORDO_SECRET_KEY" not in child_env(inherit, base, {})
