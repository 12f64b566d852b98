"""``ordo validate`` and ``ordo plan``: definitions checked, nothing run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from ordo import definitions, graph, templating
from ordo.cli.common import parse_pairs, plural, print_json, short
from ordo.errors import EXIT_OK, EXIT_USAGE, DefinitionError, Problem
from ordo.masking import MASK
from ordo.model import Flow


def command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    if args.command == "validate":
        return _validate(args.files, args.json)
    return _plan(args, environ)


def _validate(files: list[str], as_json: bool) -> int:
    status = EXIT_OK
    results: list[dict[str, Any]] = []
    for path in files:
        try:
            flow = definitions.load(path)
        except DefinitionError as exc:
            status = EXIT_USAGE
            results.append(
                {"file": path, "ok": False, "errors": [_problem(p) for p in exc.problems]}
            )
            if not as_json:
                for problem in exc.problems:
                    print(str(problem), file=sys.stderr)
            continue
        results.append({"file": path, "ok": True, "flow": flow.key, "tasks": len(flow.tasks)})
        warnings = shell_warnings(flow, path)
        if as_json:
            results[-1]["warnings"] = warnings
            continue
        print(f"{path}: OK ({flow.key}, {plural(len(flow.tasks), 'task')})")
        for warning in warnings:
            print(warning, file=sys.stderr)
    if as_json:
        print_json(results)
    return status


def _problem(problem: Problem) -> dict[str, Any]:
    return {
        "file": problem.path,
        "line": problem.line,
        "column": problem.column,
        "field": problem.field,
        "message": problem.message,
        "text": str(problem),
    }


def shell_warnings(flow: Flow, path: str) -> list[str]:
    """A warning (not an error) for each template of a shell task's ``command`` text (or
    a check's ``run``) that puts inputs, outputs, fork or event data into the shell text
    without ``| quote``: such a value is read by the shell, so ``; rm -rf ~`` in it runs."""
    risky_vars = templating.data_vars(flow.vars)
    found = []
    for task in flow.tasks:
        texts = [task.spec.get("command")] if task.type == "shell" else []
        texts += [c.fields.get("run") for c in (*task.pre_checks, *task.post_checks)]
        for text in texts:
            if not isinstance(text, str):
                continue
            for expression in templating.unquoted_data(text, risky_vars):
                where = f"{path}:{task.line}" if task.line else path
                found.append(
                    f"{where}: warning: task '{task.id}': {expression} puts "
                    "data into shell text unquoted (a value with ; $( ) or quotes in it runs "
                    "as a command): write it with | quote, or pass it in env: (docs/security.md)"
                )
    return found


def _plan(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    flow = definitions.load(args.file)
    inputs = definitions.coerce_inputs(flow, parse_pairs(args.input, "-i"))
    context = templating.make_context(
        inputs,
        {},
        flow.vars,
        {
            "id": None,
            "flow": flow.id,
            "namespace": flow.namespace,
            "labels": dict(flow.labels),
            "started": None,
            "inputs": inputs,
        },
        environ,
        secret=lambda name: MASK,  # nothing is decrypted to be shown
    )
    waves = graph.waves(flow.tasks)
    if args.json:
        print_json(
            {
                "flow": flow.key,
                "inputs": inputs,
                "waves": [
                    [
                        {
                            "task": task_id,
                            "type": flow.task(task_id).type,
                            "depends_on": list(flow.task(task_id).depends_on),
                            "fields": _preview(
                                flow.task(task_id).spec, flow.task(task_id).with_, context
                            ),
                        }
                        for task_id in wave
                    ]
                    for wave in waves
                ],
                "calls": [_call_dict(t) for t in flow.steps],
            }
        )
        return EXIT_OK
    print(f"plan for {flow.key} ({plural(len(flow.tasks), 'task')}); nothing runs")
    if inputs:
        print("inputs: " + ", ".join(f"{k}={short(v, 40)}" for k, v in inputs.items()))
    for number, wave in enumerate(waves, start=1):
        print(f"wave {number}:")
        for task_id in wave:
            task = flow.task(task_id)
            deps = f" after {', '.join(task.depends_on)}" if task.depends_on else ""
            print(f"  {task_id} [{task.type}]{deps}")
            for key, value in _preview(task.spec, task.with_, context).items():
                print(f"      {key}: {short(value, 90)}")
    if flow.steps:  # a Python flow: the @tasks its function may call, each a task run
        print("tasks it may call (each call a task run):")
        for step in flow.steps:
            shown = _call_dict(step)
            extra = "".join(f", {k} {v}" for k, v in shown.items() if k not in ("task", "function"))
            print(f"  {step.id} [{shown['function']}{extra}]")
    return EXIT_OK


def _call_dict(task: Any) -> dict[str, Any]:
    """A Python flow's ``@task``: its name, function and what differs from the defaults."""
    found: dict[str, Any] = {"task": task.id, "function": task.spec.get("function")}
    if task.retry.attempts > 1:
        found["retry"] = f"{task.retry.attempts} attempts"
    if task.timeout:
        found["timeout"] = f"{task.timeout:g}s"
    return found


def _preview(spec: Mapping[str, Any], with_: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Rendered values where they only need inputs, vars and env; the template text
    where they need outputs not known before the run."""
    shown: dict[str, Any] = {}
    for key, value in {**spec, **{f"with.{k}": v for k, v in with_.items()}}.items():
        if key not in (
            "command",
            "function",
            "script",
            "url",
            "query",
            "method",
        ) and not key.startswith("with."):
            continue
        try:
            shown[key] = templating.render(value, context)
        except templating.TemplateError:
            shown[key] = value
    return shown
