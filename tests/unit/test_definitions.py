"""Flow files: parsing, normalizing, and every kind of validation error with its place."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from ordo.definitions import coerce_inputs, content_hash, load_flow_file, parse_flow
from ordo.errors import DefinitionError
from ordo.model import Flow, RetryPolicy

FULL = """
id: nightly-report
namespace: analytics
description: Build the nightly report
labels: {team: data}
inputs:
  day:   {type: string, default: "2026-01-01"}
  limit: {type: int, required: true}
vars: {src: "{{ outputs.extract.path }}"}
defaults:
  retry:
    {attempts: 3, delay: 2s, backoff: 2.0, max_delay: 1m, jitter: 0.1, on_exit_codes: [1, 75],
     budget: 10m}
  timeout: 30m
tasks:
  - id: extract
    type: shell
    command: "./extract.sh > data.csv && echo path=data.csv >> $ORDO_OUTPUTS"
  - id: transform
    type: python
    function: etl.steps:transform
    with: {path: "{{ vars.src }}", limit: "{{ inputs.limit }}"}
    depends_on: [extract]
    retry: {attempts: 5}
  - id: load
    type: sql
    url: sqlite:///warehouse.db
    query: "insert into report select * from staging"
    depends_on: [transform]
    timeout: 500ms
  - id: ping
    type: http
    method: POST
    url: http://127.0.0.1:8080/hook
    json: {rows: "{{ outputs.load.rowcount }}"}
    expect_status: [200, 204]
    depends_on: [load]
    allow_failure: true
"""


def parse(text: str, path: str = "/flows/f.yaml") -> Flow:
    return parse_flow(textwrap.dedent(text).lstrip(), path)


def problems(text: str, path: str = "/flows/f.yaml") -> list[str]:
    with pytest.raises(DefinitionError) as info:
        parse(text, path)
    return [str(p) for p in info.value.problems]


def test_the_issue_example_parses_into_a_flow() -> None:
    flow = parse(FULL)
    assert flow.key == "analytics/nightly-report"
    assert flow.labels == {"team": "data"}
    assert [i.name for i in flow.inputs] == ["day", "limit"]
    assert flow.inputs[1].required and flow.inputs[1].type == "int"
    assert [t.id for t in flow.tasks] == ["extract", "transform", "load", "ping"]
    extract, transform, load, ping = flow.tasks
    assert extract.retry == RetryPolicy(3, 2.0, 2.0, 60.0, 0.1, (1, 75), True, 600.0)
    assert transform.retry.attempts == 5 and transform.retry.delay == 2.0  # merged key by key
    assert extract.timeout == 1800.0 and load.timeout == 0.5
    assert transform.spec == {"function": "etl.steps:transform"}
    assert transform.with_ == {"path": "{{ vars.src }}", "limit": "{{ inputs.limit }}"}
    assert ping.allow_failure and ping.spec["expect_status"] == [200, 204]
    assert flow.base_dir == "/flows" and extract.line == 15


def test_normalized_form_round_trips() -> None:
    flow = parse(FULL)
    assert Flow.from_dict(flow.to_dict()) == flow
    assert Flow.from_dict(json.loads(json.dumps(flow.to_dict()))) == flow  # as the store keeps it


def test_json_files_use_the_same_schema() -> None:
    flow = parse_flow(
        '{"id": "j", "tasks": [{"id": "a", "type": "shell", "command": "true"}]}', "/x/f.json"
    )
    assert flow.tasks[0].spec == {"command": "true"}


def test_malformed_json_names_line_and_column() -> None:
    found = problems('{"id": "j",\n "tasks": [}', "/x/f.json")
    assert found[0].startswith("/x/f.json:2:")
    assert "invalid JSON" in found[0]


def test_malformed_yaml_names_line_and_column() -> None:
    found = problems("id: x\ntasks: [a\n  b: c\n")
    assert found[0].startswith("/flows/f.yaml:")
    assert "invalid YAML" in found[0]


def test_unknown_keys_say_did_you_mean() -> None:
    found = problems("""
        id: x
        tasks:
          - id: a
            type: shell
            comand: "true"
    """)
    assert (
        "/flows/f.yaml:5:5: tasks[0].comand: unknown key 'comand' (did you mean 'command'?)"
        in (found[1])
    )


def test_wrong_types_name_field_expected_and_found() -> None:
    found = problems("""
        id: x
        defaults:
          retry: {attempts: many}
        tasks:
          - {id: a, type: shell, command: "true", allow_failure: "yes", timeout: soon}
    """)
    assert found == [
        "/flows/f.yaml:3:21: defaults.retry.attempts: expected a whole number of at least 1, "
        "found string 'many'",
        "/flows/f.yaml:5:58: tasks[0].allow_failure: expected true or false, found string 'yes'",
        "/flows/f.yaml:5:74: tasks[0].timeout: expected a duration like 500ms, 2s, 1m, 1h, "
        "found 'soon'",
    ]


def test_unknown_task_type_lists_the_known_ones() -> None:
    (found,) = problems("""
        id: x
        tasks:
          - {id: a, type: bash, command: "true"}
    """)
    assert "unknown task type string 'bash'" in found
    assert "expected one of shell, python, sql, http" in found


def test_cycle_is_reported_as_its_path() -> None:
    (found,) = problems("""
        id: x
        tasks:
          - {id: a, type: shell, command: "true", depends_on: [c]}
          - {id: b, type: shell, command: "true", depends_on: [a]}
          - {id: c, type: shell, command: "true", depends_on: [b]}
    """)
    assert "dependency cycle: a -> c -> b -> a" in found


def test_unknown_dependency_names_both_tasks() -> None:
    (found,) = problems("""
        id: x
        tasks:
          - {id: transform, type: shell, command: "true"}
          - {id: load, type: shell, command: "true", depends_on: [transfrom]}
    """)
    assert "task 'load' depends on unknown task 'transfrom' (did you mean 'transform'?)" in found
    assert found.startswith("/flows/f.yaml:4:")


def test_duplicate_task_ids_are_errors() -> None:
    (found,) = problems("""
        id: x
        tasks:
          - {id: a, type: shell, command: "true"}
          - {id: a, type: shell, command: "false"}
    """)
    assert "duplicate task id 'a' (first defined at line 3)" in found


def test_type_fields_are_checked() -> None:
    found = problems("""
        id: x
        tasks:
          - {id: a, type: python}
          - {id: b, type: python, function: "no_colon"}
          - {id: c, type: sql, url: "sqlite:///x.db", query: q, script: s.sql}
          - {id: d, type: http}
          - {id: e, type: shell, command: []}
    """)
    assert found == [
        "/flows/f.yaml:3:5: tasks[0]: a python task needs exactly one of function, script or "
        "handler, found none",
        "/flows/f.yaml:4:37: tasks[1].function: expected module:function "
        "(like etl.steps:transform), found 'no_colon'",
        "/flows/f.yaml:5:5: tasks[2]: a sql task needs exactly one of query or script, found both",
        "/flows/f.yaml:6:5: tasks[3].url: missing required key 'url' for an http task",
        "/flows/f.yaml:7:35: tasks[4].command: expected a command string or a non-empty list "
        "of strings, found an empty list",
    ]


def test_template_syntax_errors_are_definition_errors() -> None:
    (found,) = problems("""
        id: x
        tasks:
          - {id: a, type: shell, command: "echo {{ inputs.x"}
    """)
    assert "tasks[0].command: template syntax error" in found


def test_sequential_chains_tasks_in_listed_order() -> None:
    flow = parse("""
        id: x
        sequential: true
        tasks:
          - {id: one, type: shell, command: "true"}
          - {id: two, type: shell, command: "true"}
          - {id: three, type: shell, command: "true"}
    """)
    assert [t.depends_on for t in flow.tasks] == [(), ("one",), ("two",)]


def test_missing_file_is_a_definition_error(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="cannot read flow file: No such file"):
        load_flow_file(tmp_path / "nope.yaml")


def test_content_hash_changes_with_content() -> None:
    assert content_hash(b"a") != content_hash(b"b")
    assert content_hash(b"a") == content_hash(b"a")


def test_inputs_are_converted_and_defaulted() -> None:
    flow = parse("""
        id: x
        inputs:
          n: {type: int, required: true}
          f: {type: float, default: 1.5}
          b: {type: bool, default: false}
          j: {type: json, default: {a: 1}}
          s: {type: string, default: hi}
        tasks:
          - {id: a, type: shell, command: "true"}
    """)
    values = coerce_inputs(flow, {"n": "5", "b": "yes", "j": "[1, 2]"})
    assert values == {"n": 5, "f": 1.5, "b": True, "j": [1, 2], "s": "hi"}


def test_bad_inputs_name_the_input() -> None:
    flow = parse("""
        id: x
        inputs:
          limit: {type: int, required: true}
        tasks:
          - {id: a, type: shell, command: "true"}
    """)
    with pytest.raises(DefinitionError) as info:
        coerce_inputs(flow, {"limti": "3"})
    text = str(info.value)
    assert "inputs.limti: unknown input 'limti' (did you mean 'limit'?)" in text
    assert "inputs.limit: input 'limit' is required (int)" in text
    with pytest.raises(DefinitionError, match=r"inputs\.limit: expected an int, found string 'x'"):
        coerce_inputs(flow, {"limit": "x"})


def test_wrong_list_element_is_named_with_its_index() -> None:
    found = problems("""
        id: x
        tasks:
          - {id: a, type: shell, command: "true", depends_on: [b, 7]}
          - id: b
            type: http
            url: http://h
            expect_status: [200, "204"]
            headers: {X-Token: [abc]}
    """)
    assert found == [
        "/flows/f.yaml:3:59: tasks[0].depends_on[1]: expected a task id (a string), found number 7",
        "/flows/f.yaml:7:26: tasks[1].expect_status[1]: expected a status code "
        "(a whole number), found string '204'",
        "/flows/f.yaml:8:24: tasks[1].headers.X-Token: expected a string, found a list",
    ]


def test_graph_problems_point_at_the_file_index_even_after_a_broken_task() -> None:
    found = problems("""
        id: x
        tasks:
          - {id: broken, type: bash}
          - {id: a, type: shell, command: "true", depends_on: [b]}
          - {id: b, type: shell, command: "true", depends_on: a}
          - {id: b, type: shell, command: "true"}
    """)
    assert found[1:] == [
        "/flows/f.yaml:4:55: tasks[1].depends_on: dependency cycle: a -> b -> a",
        "/flows/f.yaml:6:10: tasks[3].id: duplicate task id 'b' (first defined at line 5)",
    ]


def test_sequential_with_depends_on_is_an_error_at_that_task() -> None:
    (found,) = problems("""
        id: x
        sequential: true
        tasks:
          - {id: broken, type: bash}
          - {id: one, type: shell, command: "true"}
          - {id: two, type: shell, command: "true", depends_on: one}
    """)[1:]
    assert found == (
        "/flows/f.yaml:6:57: tasks[2].depends_on: depends_on is not allowed when the flow "
        "is sequential: true"
    )


def test_dependency_listed_twice_counts_once() -> None:
    flow = parse("""
        id: x
        tasks:
          - {id: a, type: shell, command: "true"}
          - {id: b, type: shell, command: "true", depends_on: [a, a]}
    """)
    assert flow.tasks[1].depends_on == ("a",)


def test_unquoted_date_says_to_quote_it() -> None:
    (found,) = problems("""
        id: x
        description: 2026-01-01
        tasks:
          - {id: a, type: shell, command: "true"}
    """)
    assert found == (
        "/flows/f.yaml:2:14: description: expected a string, found date 2026-01-01 "
        "(quote it to make it a string)"
    )


def test_every_problem_is_reported_not_just_the_first() -> None:
    found = problems("""
        id: bad id
        timeout: 5 minutes
        inputs:
          limit: {type: integer}
        vars: {src: "{{ outputs.x"}
        tasks:
          - {id: a, type: shell, command: "true", retry: {atempts: 3}}
    """)
    assert found == [
        "/flows/f.yaml:1:5: id: expected an id of letters, digits, '_', '.' or '-', "
        "found string 'bad id'",
        "/flows/f.yaml:2:10: timeout: expected a duration like 500ms, 2s, 1m, 1h, "
        "found '5 minutes'",
        "/flows/f.yaml:4:17: inputs.limit.type: expected one of string, int, float, bool, json, "
        "found 'integer'",
        "/flows/f.yaml:5:13: vars.src: template syntax error in '{{ outputs.x': unexpected end "
        "of template, expected 'end of print statement'.",
        "/flows/f.yaml:7:51: tasks[0].retry.atempts: unknown key 'atempts' "
        "(did you mean 'attempts'?); allowed: attempts, delay, backoff, max_delay, jitter, "
        "on_exit_codes, on_timeout, budget, on_post_check, on_exit",
    ]


def test_json_with_tabs_and_a_byte_order_mark_parses_with_positions() -> None:
    text = '\ufeff{\n\t"id": "j",\n\t"tasks": [{"id": "a", "type": "shel", "command": "x"}]\n}'
    with pytest.raises(DefinitionError) as info:
        parse_flow(text, "/x/f.json")
    (problem,) = info.value.problems
    assert (problem.line, problem.column, problem.field) == (3, 32, "tasks[0].type")
    assert "(did you mean 'shell'?)" in problem.message


def test_duplicate_keys_are_reported_at_the_second_one() -> None:
    (found,) = problems("id: x\nid: y\ntasks: [{id: a, type: shell, command: x}]\n")
    assert found.startswith("/flows/f.yaml:2:1: invalid YAML: ")
    assert 'found duplicate key "id"' in found


def test_flow_file_paths_are_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "f.yaml").write_text("id: x\ntasks: [{id: a, type: shell, command: x}]\n")
    monkeypatch.chdir(tmp_path)
    flow = load_flow_file("f.yaml")
    assert flow.path == str(tmp_path / "f.yaml") and flow.base_dir == str(tmp_path)
    assert flow.tasks[0].line == 2


def test_file_that_is_not_utf8_is_a_definition_error(tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_bytes(b"id: \xff\n")
    with pytest.raises(DefinitionError, match=r"f\.yaml: file is not UTF-8 text \(byte 4\)"):
        load_flow_file(tmp_path / "f.yaml")


def test_composition_fields_parse() -> None:
    flow = parse("""
        id: parent
        outputs: {total: "{{ outputs.sum.value }}"}
        run_if: "{{ inputs.go }}"
        inputs:
          go: {type: bool, default: true}
        tasks:
          - {id: list, type: python, function: "steps:listing"}
          - id: each
            type: flow
            flow: etl/child
            revision: 2
            wait: false
            for_each: "{{ outputs.list.files }}"
            concurrency: 3
            run_if: {function: "checks:ready"}
            with: {file: "{{ fork.value }}"}
            depends_on: list
          - {id: sum, type: python, handler: "handlers:sum", run_if: "SKIP: later"}
          - {id: q, type: sql, connection: warehouse, query: "SELECT 1"}
          - {id: h, type: http, connection: api, url: /items}
    """)
    assert flow.outputs == {"total": "{{ outputs.sum.value }}"}
    assert flow.run_if == "{{ inputs.go }}"
    each = flow.task("each")
    assert each.spec == {"flow": "etl/child", "revision": 2, "wait": False}
    assert each.for_each == "{{ outputs.list.files }}" and each.concurrency == 3
    assert each.run_if == {"function": "checks:ready"}
    assert flow.task("sum").spec == {"handler": "handlers:sum"}
    assert Flow.from_dict(json.loads(json.dumps(flow.to_dict()))) == flow


def test_composition_fields_are_checked() -> None:
    found = problems("""
        id: bad
        outputs: {"9x": "{{ outputs.a.b }}"}
        tasks:
          - {id: a, type: flow}
          - {id: b, type: flow, flow: "a/b/c"}
          - {id: c, type: shell, command: "true", for_each: {a: 1}}
          - {id: d, type: shell, command: "true", concurrency: 2}
          - {id: e, type: shell, command: "true", run_if: maybe}
          - {id: f, type: shell, command: "true", run_if: {function: nocolon}}
          - {id: g, type: sql, query: "SELECT 1"}
          - {id: h, type: python, function: "m:f", handler: "m:h"}
    """)
    assert found == [
        "/flows/f.yaml:2:11: outputs.9x: an output name must match "
        "^[A-Za-z_][A-Za-z0-9_]*$, found '9x'",
        "/flows/f.yaml:4:5: tasks[0].flow: missing required key 'flow' for a flow task",
        "/flows/f.yaml:5:31: tasks[1].flow: expected a flow id or namespace/id "
        "(like etl/daily), found 'a/b/c'",
        "/flows/f.yaml:6:53: tasks[2].for_each: expected a list, or a template producing "
        'one (like "{{ outputs.list_files.files }}"), found a mapping',
        "/flows/f.yaml:7:56: tasks[3].concurrency: concurrency limits for_each items: "
        "give for_each too",
        "/flows/f.yaml:8:51: tasks[4].run_if: expected true, false, RUN, SKIP, STOP, a "
        "template answering one of them, or {function: module:function}, found string 'maybe'",
        "/flows/f.yaml:9:62: tasks[5].run_if.function: expected module:function "
        "(like checks:ready), found string 'nocolon'",
        "/flows/f.yaml:10:5: tasks[6]: a sql task needs exactly one of url or connection, "
        "found neither",
        "/flows/f.yaml:11:5: tasks[7]: a python task needs exactly one of function, script or "
        "handler, found function and handler",
    ]


def test_concurrency_limits_parse_and_round_trip() -> None:
    flow = parse(
        textwrap.dedent("""
        id: limited
        concurrency: {limit: 2, behavior: cancel}
        tasks:
          - {id: a, type: shell, command: "true", concurrency_key: warehouse}
          - {id: b, type: shell, command: "true", concurrency_key: db, concurrency_limit: 3}
        """)
    )
    assert flow.concurrency is not None
    assert (flow.concurrency.limit, flow.concurrency.behavior) == (2, "cancel")
    assert (flow.task("a").concurrency_key, flow.task("a").concurrency_limit) == ("warehouse", 1)
    assert flow.task("b").concurrency_limit == 3
    assert Flow.from_dict(json.loads(json.dumps(flow.to_dict()))) == flow


def test_bad_concurrency_limits_are_named() -> None:
    found = problems(
        textwrap.dedent("""
        id: limited
        concurrency: {limit: 0, behaviour: queue}
        tasks:
          - {id: a, type: shell, command: "true", concurrency_limit: 2}
          - {id: b, type: shell, command: "true", concurrency_key: "a b"}
        """)
    )
    assert any(
        "concurrency.behaviour: unknown key 'behaviour' (did you mean 'behavior'?)" in p
        for p in found
    )
    assert any("concurrency.limit: expected a whole number of at least 1" in p for p in found)
    assert any(
        "tasks[0].concurrency_limit: concurrency_limit limits the task runs sharing a "
        "concurrency_key: give concurrency_key too" in p
        for p in found
    )
    assert any("tasks[1].concurrency_key" in p for p in found)
    (wrong,) = problems(
        "id: x\nconcurrency: {limit: 1, behavior: drop}\n"
        "tasks:\n  - {id: a, type: shell, command: 'true'}\n"
    )
    assert "concurrency.behavior: expected one of queue, cancel, fail, found string 'drop'" in wrong


def test_checks_parse_with_shorthands_and_defaults() -> None:
    flow = parse("""
        id: checked
        inputs: {day: {type: string}}
        defaults:
          retry: {on_post_check: false, on_exit: false}
          post_checks:
            - no_match: {path: "logs/*.log", pattern: "ORA-[0-9]+"}
        tasks:
          - id: load
            type: shell
            command: "true"
            pre_checks:
              - file_exists: data/in.csv
              - file_exists: {path: "in/{{ inputs.day }}.csv"}
              - command: "test -s data/in.csv"
              - command: {run: "true", timeout: 30s}
              - function: checks:ready
          - {id: quiet, type: shell, command: "true", post_checks: []}
          - {id: child, type: flow, flow: other}
    """)
    load, quiet, child = flow.tasks
    assert [c.to_dict() for c in load.pre_checks] == [
        {"kind": "file_exists", "path": "data/in.csv"},
        {"kind": "file_exists", "path": "in/{{ inputs.day }}.csv"},
        {"kind": "command", "run": "test -s data/in.csv"},
        {"kind": "command", "run": "true", "timeout": 30.0},
        {"kind": "function", "function": "checks:ready"},
    ]
    assert [c.to_dict() for c in load.post_checks] == [
        {"kind": "no_match", "path": "logs/*.log", "pattern": "ORA-[0-9]+"}
    ]
    assert load.retry.on_post_check is False and RetryPolicy().on_post_check is True
    assert load.retry.on_exit is False and RetryPolicy().on_exit is True
    assert quiet.post_checks == ()  # its own empty list wins over the defaults'
    assert child.pre_checks == child.post_checks == ()  # flow tasks run no checks
    assert Flow.from_dict(json.loads(json.dumps(flow.to_dict()))) == flow


def test_check_problems_are_located_and_named() -> None:
    found = problems("""
        id: x
        tasks:
          - id: a
            type: shell
            command: "true"
            retry: {on_post_check: maybe}
            pre_checks:
              - file_exist: data/in.csv
              - {file_exists: a, command: b}
              - just-a-string
              - file_exists: {path: a, size: 3}
              - file_exists: {}
              - no_match: "ORA-"
              - no_match: {path: "*.log", pattern: "ORA-("}
              - no_match: {path: "*.log", pattern: "{{ inputs.p }"}
              - command: {run: "true", timeout: soon}
              - function: nocolon
            post_checks: {file_exists: x}
          - id: b
            type: flow
            flow: other
            pre_checks: [{file_exists: x}]
    """)
    kinds = "file_exists, no_match, command, function"
    one_key = f"expected a check: a mapping with one key, its kind ({kinds}), like "
    one_key += "{file_exists: {path: data/in.csv}}, found"
    assert found == [
        "/flows/f.yaml:6:28: tasks[0].retry.on_post_check: expected true or false, "
        "found string 'maybe'",
        "/flows/f.yaml:8:9: tasks[0].pre_checks[0].file_exist: unknown check kind "
        f"'file_exist' (did you mean 'file_exists'?): expected one of {kinds}",
        f"/flows/f.yaml:9:9: tasks[0].pre_checks[1]: {one_key} keys file_exists, command",
        f"/flows/f.yaml:10:9: tasks[0].pre_checks[2]: {one_key} string 'just-a-string'",
        "/flows/f.yaml:11:32: tasks[0].pre_checks[3].file_exists.size: unknown key 'size'; "
        "allowed: path, type",
        "/flows/f.yaml:12:22: tasks[0].pre_checks[4].file_exists: missing required key "
        "'path' for a file_exists check",
        "/flows/f.yaml:13:19: tasks[0].pre_checks[5].no_match: expected a mapping "
        "{path: ..., pattern: ...}, found string 'ORA-'",
        "/flows/f.yaml:14:44: tasks[0].pre_checks[6].no_match.pattern: invalid regular "
        "expression 'ORA-(': missing ), unterminated subpattern at position 4",
        "/flows/f.yaml:15:44: tasks[0].pre_checks[7].no_match.pattern: template syntax "
        "error in '{{ inputs.p }': unexpected '}'",
        "/flows/f.yaml:16:41: tasks[0].pre_checks[8].command.timeout: expected a duration "
        "like 500ms, 2s, 1m, 1h, found 'soon'",
        "/flows/f.yaml:17:19: tasks[0].pre_checks[9].function: expected module:function "
        "(like checks:rows_loaded), found string 'nocolon'",
        "/flows/f.yaml:18:18: tasks[0].post_checks: expected a list of checks like "
        "[{file_exists: {path: data/in.csv}}], found a mapping",
        "/flows/f.yaml:22:5: tasks[1].pre_checks: pre_checks are not supported on flow "
        "tasks: give them to the tasks of the child flow",
    ]


def test_default_checks_are_checked_too() -> None:
    (found,) = problems("""
        id: x
        defaults:
          pre_checks:
            - comand: "true"
        tasks:
          - {id: a, type: shell, command: "true"}
    """)
    assert found == (
        "/flows/f.yaml:4:7: defaults.pre_checks[0].comand: unknown check kind 'comand' "
        "(did you mean 'command'?): expected one of file_exists, no_match, command, function"
    )


def test_a_package_gives_its_default_checks_to_every_script(tmp_path: Path) -> None:
    from ordo.definitions import load_package

    (tmp_path / "10_a.sh").write_text("true\n")
    (tmp_path / "20_b.py").write_text("pass\n")
    (tmp_path / "flow.yaml").write_text(
        "defaults:\n  post_checks:\n    - no_match: {path: '*.log', pattern: ERROR}\n"
    )
    flow = load_package(tmp_path)
    assert [[c.to_dict() for c in t.post_checks] for t in flow.tasks] == [
        [{"kind": "no_match", "path": "*.log", "pattern": "ERROR"}]
    ] * 2


def test_undeclared_inputs_are_placed_with_a_did_you_mean() -> None:
    found = problems("""
        id: refs
        inputs: {day: {type: string}, limit: {type: int}}
        vars: {dir: "out/{{ inputs.dya }}"}
        tasks:
          - id: a
            type: shell
            command: "echo {{ inputs.dy }} {{ inputs['limit'] }}"
            env: {N: "{{ inputs.lmit + 1 }}"}
            pre_checks:
              - file_exists: "in/{{ inputs.nope }}.csv"
    """)
    assert found == [
        "/flows/f.yaml:3:13: vars.dir: undeclared input 'inputs.dya' in 'out/{{ inputs.dya }}' "
        "(did you mean 'inputs.day'?); declared inputs: day, limit",
        "/flows/f.yaml:7:14: tasks[0].command: undeclared input 'inputs.dy' in "
        "\"echo {{ inputs.dy }} {{ inputs['limit'] }}\" (did you mean 'inputs.day'?); "
        "declared inputs: day, limit",
        "/flows/f.yaml:8:14: tasks[0].env.N: undeclared input 'inputs.lmit' in "
        "'{{ inputs.lmit + 1 }}' (did you mean 'inputs.limit'?); declared inputs: day, limit",
        "/flows/f.yaml:10:22: tasks[0].pre_checks[0].file_exists: undeclared input "
        "'inputs.nope' in 'in/{{ inputs.nope }}.csv'; declared inputs: day, limit",
    ]


def test_outputs_of_tasks_not_upstream_are_errors() -> None:
    found = problems("""
        id: refs
        vars: {csv: "{{ outputs.c.path }}"}
        outputs: {total: "{{ outputs.lod.n }}"}
        tasks:
          - {id: a, type: shell, command: "true"}
          - id: b
            type: shell
            depends_on: [a]
            command: "echo {{ outputs.c.x }} {{ outputs.a.x }}"
            env: {CSV: "{{ vars.csv }}"}
          - id: c
            type: shell
            command: "echo {{ outputs.aa.x }}"
            post_checks:
              - file_exists: "{{ outputs.c.path }}"
          - id: load
            type: shell
            depends_on: [b, c]
            command: "echo {{ outputs.a.x }} {{ vars.csv }}"
    """)
    assert found == [
        "/flows/f.yaml:3:18: outputs.total: 'outputs.lod' in '{{ outputs.lod.n }}': "
        "no task 'lod' (did you mean 'load'?)",
        "/flows/f.yaml:9:14: tasks[1].command: 'outputs.c' in "
        "'echo {{ outputs.c.x }} {{ outputs.a.x }}': task 'c' is not upstream of 'b', so it "
        "may not have run yet; add 'c' to depends_on of 'b'",
        "/flows/f.yaml:10:16: tasks[1].env.CSV: 'outputs.c' (through vars.csv) in "
        "'{{ vars.csv }}': task 'c' is not upstream of 'b', so it may not have run yet; "
        "add 'c' to depends_on of 'b'",
        "/flows/f.yaml:13:14: tasks[2].command: 'outputs.aa' in 'echo {{ outputs.aa.x }}': "
        "no task 'aa' (did you mean 'a'?)",
    ]


def test_references_read_at_run_time_are_left_to_the_run() -> None:
    flow = parse("""
        id: dynamic
        inputs: {which: {type: string, default: a}}
        tasks:
          - {id: a, type: shell, command: "true"}
          - id: b
            type: shell
            depends_on: [a]
            command: "echo {{ outputs[inputs.which] }} {{ execution.inputs.which }}"
    """)
    assert [t.id for t in flow.tasks] == ["a", "b"]


def test_inputs_a_trigger_passes_count_as_declared() -> None:
    flow = parse("""
        id: hooked
        triggers:
          - {type: event, event: file.arrived}
          - {type: webhook, key: 7f3a9c1e55d0}
        tasks:
          - {id: a, type: shell, command: "echo {{ inputs.event.data }} {{ inputs.body }}"}
    """)
    assert flow.tasks[0].id == "a"
    assert problems("""
        id: plain
        tasks:
          - {id: a, type: shell, command: "echo {{ inputs.schedule.time }}"}
    """) == [
        "/flows/f.yaml:3:35: tasks[0].command: undeclared input 'inputs.schedule' in "
        "'echo {{ inputs.schedule.time }}'; declared inputs: none"
    ]
