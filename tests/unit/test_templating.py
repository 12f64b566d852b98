"""Templates: native values, lazy vars, and errors that name the reference."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from ordo import templating
from ordo.templating import (
    TemplateError,
    check_syntax,
    has_template,
    make_context,
    referenced_tasks,
    render,
)


def ctx(**vars_: Any) -> dict[str, Any]:
    return make_context(
        {"limit": 5, "day": "2026-01-01"},
        {"extract": {"path": "a.csv", "rows": [1, 2]}},
        vars_ or {"src": "{{ outputs.extract.path }}"},
        {"id": 7, "flow": "f"},
        {"HOME": "/home/x"},
    )


def test_single_expression_keeps_its_native_type() -> None:
    assert render("{{ inputs.limit }}", ctx()) == 5
    assert render("{{ outputs.extract.rows }}", ctx()) == [1, 2]
    assert render("n={{ inputs.limit }}", ctx()) == "n=5"


def test_render_walks_nested_values() -> None:
    value = {"a": ["{{ vars.src }}", 3], "b": {"c": "{{ execution.id }}-{{ env.HOME }}"}}
    assert render(value, ctx()) == {"a": ["a.csv", 3], "b": {"c": "7-/home/x"}}


def test_missing_output_names_reference_and_what_exists() -> None:
    with pytest.raises(TemplateError) as info:
        render("{{ outputs.extract.size }}", ctx())
    assert info.value.reference == "outputs.extract.size"
    assert str(info.value) == (
        "undefined reference 'outputs.extract.size': task 'extract' has no output 'size' "
        "(it has: path, rows)"
    )


def test_misspelled_input_suggests_the_right_one() -> None:
    with pytest.raises(TemplateError, match=r"'inputs.dya' \(did you mean 'inputs.day'\?\)"):
        render("{{ inputs.dya }}", ctx())


def test_unknown_task_in_outputs_is_named() -> None:
    with pytest.raises(TemplateError, match="task 'load' has no outputs"):
        render("x {{ outputs.load.rowcount }}", ctx())


def test_vars_are_lazy_and_loops_are_reported() -> None:
    context = ctx(
        ok="{{ inputs.day }}", later="{{ outputs.nothing.x }}", a="{{ vars.b }}", b="{{ vars.a }}"
    )
    assert render("{{ vars.ok }}", context) == "2026-01-01"
    with pytest.raises(TemplateError, match=r"vars\.a -> vars\.b -> vars\.a"):
        render("{{ vars.a }}", context)


def test_sandbox_blocks_unsafe_attributes() -> None:
    with pytest.raises(TemplateError):
        render("{{ inputs.__class__.__mro__ }}", ctx())


def test_syntax_errors_are_found_without_rendering() -> None:
    assert check_syntax({"a": "{{ ok }}", "b": ["{{ a b }}"]}) == [
        "template syntax error in '{{ a b }}': expected token 'end of print statement', got 'b'"
    ]


def test_referenced_tasks_follow_vars() -> None:
    found = referenced_tasks(
        {"a": "{{ vars.src }}", "b": "{{ outputs['flaky-check'].x }}"},
        {"src": "{{ outputs.extract.path }}"},
    )
    assert found == {"extract", "flaky-check"}
    assert not has_template({"a": ["plain", 1]})


def test_rendering_without_templates_never_imports_jinja2() -> None:
    code = (
        "import sys, ordo.templating as t; "
        "assert t.render({'a': ['x', 1]}, {}) == {'a': ['x', 1]}; "
        "assert 'jinja2' not in sys.modules, 'jinja2 imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_nested_outputs_name_their_full_path() -> None:
    context = make_context({}, {"q": {"meta": {"size": 3}}}, {}, {}, {})
    assert render("{{ outputs.q.meta.size }}", context) == 3
    with pytest.raises(TemplateError) as info:
        render("{{ outputs.q.meta.sise }}", context)
    assert str(info.value) == (
        "undefined reference 'outputs.q.meta.sise' (did you mean 'outputs.q.meta.size'?)"
    )


def test_outputs_named_like_dict_methods_are_the_outputs() -> None:
    context = make_context({}, {"q": {"items": [1, 2], "keys": "k"}}, {}, {}, {})
    assert render("{{ outputs.q.items }}", context) == [1, 2]
    assert render("{{ outputs.q.keys }}", context) == "k"


def test_error_inside_a_var_says_which_var() -> None:
    with pytest.raises(TemplateError) as info:
        render("{{ vars.later }}", ctx(later="{{ inputs.dya }}"))
    assert str(info.value) == (
        "undefined reference 'inputs.dya' (did you mean 'inputs.day'?) (in vars.later)"
    )
    assert info.value.reference == "inputs.dya" and info.value.var == "vars.later"


def test_attribute_of_a_plain_value_names_the_value() -> None:
    with pytest.raises(TemplateError, match=r"the int value 5 has no attribute or item 'x'"):
        render("{{ inputs.limit.x }}", ctx())


def test_render_syntax_error_shows_the_template_text() -> None:
    with pytest.raises(TemplateError, match=r"cannot render '\{\{ inputs\.limit ': unexpected"):
        render("{{ inputs.limit ", ctx())


def test_referenced_tasks_follow_only_the_vars_used_and_read_only_template_code() -> None:
    vars_ = {"a": "{{ vars.b }}", "b": "{{ outputs.t1.x }}", "c": "{{ outputs.t2.x }}"}
    assert referenced_tasks({"cmd": "echo outputs {{ vars.a }}"}, vars_) == {"t1"}


def test_referenced_tasks_take_every_task_when_the_reference_is_dynamic() -> None:
    values = {"x": "{{ outputs[inputs.name].path }}"}
    assert referenced_tasks(values, {}, every=["a", "b"]) == {"a", "b"}
    assert referenced_tasks({"x": "{{ vars[inputs.v] }}"}, {"v": "{{ outputs.c.y }}"}) == {"c"}


@pytest.mark.parametrize(
    ("value", "answer"),
    [
        (True, ("RUN", None)),
        (False, ("SKIP", "run_if is false")),
        ("run", ("RUN", None)),
        ("SKIP: not today", ("SKIP", "not today")),
        ("STOP", ("STOP", None)),
        ("False", ("SKIP", "run_if is false")),
    ],
)
def test_run_if_answers(value: object, answer: tuple[str, str | None]) -> None:
    assert templating.run_if_answer(value) == answer


def test_run_if_answer_that_is_none_of_them() -> None:
    with pytest.raises(ValueError, match="run_if answered 'maybe': expected RUN, SKIP, STOP"):
        templating.run_if_answer("maybe")


def test_fork_and_list_outputs_in_templates() -> None:
    context = templating.make_context(
        {}, {"each": [{"n": 1}, {"n": 2}]}, {}, {}, {}, {"index": 0, "value": "a.csv"}
    )
    assert templating.render("{{ fork.index }}:{{ fork.value }}", context) == "0:a.csv"
    assert templating.render("{{ outputs.each | map(attribute='n') | sum }}", context) == 3


def _secrets(name: str) -> str:
    from ordo.secrets import Revealed

    return Revealed({"DB_PW": 'p"w\\1'}, {"OLD": "secret 'OLD' cannot be decrypted"}).get(name)


def test_secret_function_gives_the_value_in_any_template() -> None:
    context = make_context({}, {}, {}, {}, {}, secret=_secrets)
    assert render("{{ secret('DB_PW') }}", context) == 'p"w\\1'
    assert render({"env": ["x={{ secret('DB_PW') }}"]}, context) == {"env": ['x=p"w\\1']}


def test_an_unknown_or_unreadable_secret_fails_naming_it() -> None:
    context = make_context({}, {}, {}, {}, {}, secret=_secrets)
    with pytest.raises(TemplateError, match=r"unknown secret 'NOPE' \(secrets: DB_PW, OLD"):
        render("{{ secret('NOPE') }}", context)
    with pytest.raises(TemplateError, match="'OLD' cannot be decrypted"):
        render("a {{ secret('OLD') }}", context)
    with pytest.raises(TemplateError, match="takes a secret's name as a string"):
        render("{{ secret(1) }}", context)


def test_secret_where_there_are_none_says_where_secrets_can_be_read() -> None:
    with pytest.raises(TemplateError, match=r"secret\(\) is not available here"):
        render("{{ secret('DB_PW') }}", make_context({}, {}, {}, {}, {}))


@pytest.mark.parametrize(
    "text",
    ["{{ joiner().x }}", "{{ lipsum.x }}", "{{ cycler(1).next.__self__ }}", "{{ inputs.clear() }}"],
)
def test_template_errors_show_no_object_address(text: str) -> None:
    context = make_context({"a": 1}, {}, {}, {}, {})
    with pytest.raises(TemplateError) as caught:
        render(text, context)
    assert " at 0x" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{{ 'x'|truncate(-1) }}", "AssertionError: expected length >= 3"),
        ("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "recursion or nesting too deep"),
        ("{{ cycler() + 1 }}", "RuntimeError: at least one item"),
        ("{{ 'ab' * 10**9 }}", "repeating a value of 2 items 1,000,000,000 times"),
        ("{{ [1, 2] * 10**9 }}", "repeating a value"),
        ("{{ (10**99) * (10**99) * (9 ** 30000) }}", "more than 100,000 bits"),
        ("{{ 'x' + 'y' * 999999 + 'zz' }}", "longer than 1,000,000"),
        ("{{ 'x'.ljust(10**9) }}", "wider than"),
        ("{{ 'x'|center(10**9) }}", "wider than"),
        ("{{ 'x'|indent(10**9, true) }}", "wider than"),
        ("{{ lipsum(10**5) }}", "lipsum() asks for more"),
        ("{% for i in range(10**6) %}{{ range(10) }}{% endfor %}", "range() would give more"),
        ("{% for i in range(10**5) %}{{ 'y' * 100 }}{% endfor %}", "text would be longer"),
    ],
)
def test_every_failure_inside_a_template_is_a_template_error(text: str, words: str) -> None:
    context = make_context({"a": 1}, {}, {}, {}, {})
    with pytest.raises(TemplateError) as caught:
        render(text, context)
    assert words in str(caught.value)


def test_bounded_templates_still_render_big_but_reasonable_values() -> None:
    context = make_context({"n": 3}, {}, {}, {}, {})
    assert render("{{ 'ab' * 1000 }}", context) == "ab" * 1000
    assert render("{{ 2 ** 64 }}", context) == 2**64
    assert render("{{ range(inputs.n)|list }}", context) == [0, 1, 2]
    assert render("{{ 1e308 * 10 }}", context) == float("inf")


def test_a_template_too_deep_to_parse_is_a_syntax_message() -> None:
    deep = "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}"
    (message,) = check_syntax(deep)
    assert "cannot be parsed" in message


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("2026-01-01", "2026-01-01"),
        ("a b", "'a b'"),
        ("x'; rm -rf ~; echo '", "'x'\"'\"'; rm -rf ~; echo '\"'\"''"),
        ("", "''"),
        (None, "''"),
        (12, "12"),
        (True, "true"),
        (["a b", "c"], "'a b' c"),
    ],
)
def test_the_quote_filter_makes_one_word_of_shell_text(value: Any, shown: str) -> None:
    context = make_context({"v": value}, {}, {}, {}, {})
    assert render("echo {{ inputs.v | quote }}", context) == f"echo {shown}"
    if not isinstance(value, list):
        import shlex

        word = shlex.split("x " + render("{{ inputs.v | quote }}", context))[1:]
        assert word == [("" if value is None else "true" if value is True else str(value))]


@pytest.mark.parametrize(
    ("command", "flagged"),
    [
        ('echo "hello {{ inputs.who }}"', ["{{ inputs.who }}"]),
        ("echo hello {{ inputs.who | quote }}", []),
        ("head -n {{ inputs.n | int }} f", []),
        ("{% for f in inputs.files %}rm -- {{ f }};{% endfor %}", ["{{ f }}"]),
        ("echo {{ fork.index }}-{{ fork.value }}", ["{{ fork.value }}"]),
        ("echo {{ execution.id }} {{ execution.labels.team }}", ["{{ execution.labels.team }}"]),
        ("echo {{ outputs.a.b | default('x') }}", ["{{ outputs.a.b | default('x') }}"]),
        ("cat {{ vars.path }} {{ vars.fixed }}", ["{{ vars.path }}"]),
        ("echo {{ env.HOME }} {{ secret('X') }}", []),
    ],
)
def test_unquoted_data_in_shell_text_is_found(command: str, flagged: list[str]) -> None:
    risky = templating.data_vars({"path": "in/{{ inputs.day }}.csv", "fixed": "a.csv"})
    assert templating.unquoted_data(command, risky) == flagged
