"""A deterministic generator of hostile flow files and Executioner configs: deep nesting,
nested parentheses in templates, integers past Python's digit limit, self-referring merge
keys, alias bombs, huge files, thousands of tasks, commands that make backtracking
regexes quadratic, ``${A}${A}`` doubling, and random damage to valid files."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

VALID = """\
id: fuzz
namespace: fz
vars: {v: 1}
inputs:
  n: {type: int, default: 3}
tasks:
  - id: a
    type: shell
    command: echo {{ inputs.n }}
    retry: {attempts: 2, delay: 1s}
  - id: b
    type: python
    function: 'steps:run'
    depends_on: [a]
    with: {x: '{{ outputs.a.value }}'}
"""


@dataclass(frozen=True)
class Case:
    """One input: ``name`` says what it tries; ``text`` or ``data`` (bytes) is the file."""

    name: str
    suffix: str
    data: bytes


def _flow(tasks: str, top: str = "") -> str:
    return f"id: fuzz\n{top}tasks:\n{tasks}"


def _task(i: int, extra: str = "") -> str:
    return f"  - id: t{i}\n    type: shell\n    command: echo {i}\n{extra}"


def _deep_yaml(rng: random.Random) -> Case:
    depth = rng.choice([101, 250, 400, 1000, 5000, 20000])
    style = rng.choice(["flow-list", "flow-map", "block"])
    if style == "flow-list":
        value = "[" * depth + "1" + "]" * depth
    elif style == "flow-map":
        value = "{a: " * depth + "1" + "}" * depth
    else:
        value = "\n" + "".join("  " * (i + 1) + "k:\n" for i in range(min(depth, 3000)))
    where = rng.choice(["vars: {x: VALUE}\n", "labels: VALUE\n", "description: VALUE\n"])
    top = where.replace("VALUE", value) if style != "block" else "vars:" + value
    return Case(f"deep-{style}-{depth}", ".yaml", _flow(_task(0), top).encode())


def _deep_json(rng: random.Random) -> Case:
    depth = rng.choice([101, 300, 999, 1001, 5000, 50000])
    doc = '{"id": "fuzz", "vars": {"x": ' + "[" * depth + "]" * depth + "}, "
    doc += '"tasks": [{"id": "a", "type": "shell", "command": "echo"}]}'
    return Case(f"deep-json-{depth}", ".json", doc.encode())


def _parentheses(rng: random.Random) -> Case:
    n = rng.choice([50, 100, 200, 1000])
    expression = "(" * n + "1" + ")" * n
    field = rng.choice(["command", "run_if", "with"])
    template = "{{ " + expression + " }}"
    extra = f"    run_if: '{template}'\n" if field == "run_if" else ""
    if field == "with":
        return Case(
            f"parens-with-{n}",
            ".yaml",
            _flow(
                f"  - id: t\n    type: python\n    function: 'm:f'\n    with: {{x: '{template}'}}\n"
            ).encode(),
        )
    command = template if field == "command" else "echo"
    text = _flow(f"  - id: t\n    type: shell\n    command: '{command}'\n{extra}")
    return Case(f"parens-{field}-{n}", ".yaml", text.encode())


def _long_int(rng: random.Random) -> Case:
    digits = "9" * rng.choice([4301, 5000, 20000])
    field = rng.choice(["retry: {attempts: N}", "timeout: N", "concurrency: N", "vars: {x: N}"])
    extra = "    " + field.replace("N", digits) + "\n"
    if field.startswith("vars"):
        return Case(
            "long-int-vars", ".yaml", _flow(_task(0), field.replace("N", digits) + "\n").encode()
        )
    return Case(f"long-int-{field.split(':')[0]}", ".yaml", _flow(_task(0, extra)).encode())


def _long_int_json(rng: random.Random) -> Case:
    digits = "1" * rng.choice([4301, 10000])
    doc = '{"id": "fuzz", "tasks": [{"id": "a", "type": "shell", "command": "echo", '
    doc += f'"timeout": {digits}}}]}}'
    return Case("long-int-json", ".json", doc.encode())


def _merge_keys(rng: random.Random) -> Case:
    forms = [
        "defaults: &d {<<: *d}\n",
        "vars: &v\n  <<: *v\n  x: 1\n",
        "vars: &v [*v]\n",
        "vars: {<<: *nothing}\n",
        "vars: {<<: 5}\n",
        "vars: {<<: [1, 2]}\n",
        "base: &b {timeout: 1s}\n",
    ]
    top = rng.choice(forms)
    tasks = (
        "  - <<: *b\n    id: t\n    type: shell\n    command: echo\n" if "&b" in top else _task(0)
    )
    return Case("merge-" + top.split(":")[0], ".yaml", _flow(tasks, top).encode())


def _alias_bomb(rng: random.Random) -> Case:
    width = rng.choice([3, 5, 9, 10])
    levels = rng.choice([4, 6, 9, 12])
    lines = ["x0: &x0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * width) + "]")
    where = rng.choice(["vars", "labels", "with"])
    body = "\n".join(lines)
    if where == "with":
        task = f"{{id: t, type: python, function: 'm:f', with: {{a: *x{levels - 1}}}}}"
        text = f"{body}\nid: fuzz\ntasks:\n  - {task}\n"
    else:
        text = f"{body}\nid: fuzz\n{where}: {{a: *x{levels - 1}}}\ntasks:\n" + _task(0)
    return Case(f"alias-bomb-{width}x{levels}", ".yaml", text.encode())


def _huge(rng: random.Random) -> Case:
    size = rng.choice([9, 20]) * 1024 * 1024
    kind = rng.choice(["comment", "string"])
    if kind == "comment":
        text = VALID + "#" + "x" * size + "\n"
    else:
        text = VALID.replace("echo {{ inputs.n }}", "echo " + "y" * size)
    return Case(f"huge-{kind}-{size >> 20}MB", ".yaml", text.encode())


def _many_tasks(rng: random.Random) -> Case:
    n = rng.choice([5000, 10000])
    tasks = "".join(_task(i, f"    depends_on: t{i - 1}\n" if i else "") for i in range(n))
    return Case(f"tasks-{n}", ".yaml", _flow(tasks).encode())


def _many_tasks_json(rng: random.Random) -> Case:
    n = rng.choice([5000, 8000])
    doc = {
        "id": "fuzz",
        "tasks": [{"id": f"t{i}", "type": "shell", "command": f"echo {i}"} for i in range(n)],
    }
    return Case(f"tasks-json-{n}", ".json", json.dumps(doc).encode())


def _damaged(rng: random.Random) -> Case:
    data = bytearray(VALID.encode())
    how = rng.choice(["truncate", "flip", "insert", "bytes", "tab", "dup", "tags", "keys"])
    if how == "truncate":
        data = data[: rng.randrange(len(data))]
    elif how == "flip":
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif how == "insert":
        for _ in range(rng.randint(1, 5)):
            pos = rng.randrange(len(data))
            data[pos:pos] = rng.choice(
                [b"{", b"[", b"&a ", b"*a ", b"!!", b"\t", b"- ", b": ", b"%"]
            )
    elif how == "bytes":
        data = bytearray(rng.randbytes(rng.randint(0, 2000)))
    elif how == "tab":
        data = data.replace(b"  ", b"\t", rng.randint(1, 3))
    elif how == "dup":
        data += b"id: again\n"
    elif how == "tags":
        tag = rng.choice(
            [
                "!!python/object:os.system",
                "!!binary",
                "!!set",
                "!!omap",
                "!custom",
                "!!timestamp",
                "!!float",
            ]
        )
        data = data.replace(b"echo {{", f"{tag} echo {{{{".encode(), 1)
    else:
        data += rng.choice(
            [b"? [a, b]\n: 1\n", b"? {a: 1}\n: 2\n", b"1.5: x\n", b"null: y\n", b".nan: z\n"]
        )
    return Case(f"damaged-{how}", ".yaml", bytes(data))


def _weird_values(rng: random.Random) -> Case:
    value = rng.choice(
        [
            ".nan",
            ".inf",
            "-.inf",
            "1e999",
            "-0",
            "0x" + "f" * 100,
            "0o777",
            "2001-02-30",
            "2024-01-01T00:00:00Z",
            "~",
            "'" + "a" * 100000 + "'",
            "[]",
            "{}",
            "!!null ''",
        ]
    )
    field = rng.choice(["timeout", "retry: {attempts", "concurrency", "queue", "run_if", "env: {X"])
    closing = "}" if "{" in field else ""
    extra = f"    {field}: {value}{closing}\n"
    return Case(f"weird-{field.split(':')[0]}", ".yaml", _flow(_task(0, extra)).encode())


FLOW_KINDS: list[tuple[Callable[[random.Random], Case], int]] = [
    (_deep_yaml, 30),
    (_deep_json, 12),
    (_parentheses, 12),
    (_long_int, 16),
    (_long_int_json, 4),
    (_merge_keys, 14),
    (_alias_bomb, 20),
    (_huge, 2),
    (_many_tasks, 2),
    (_many_tasks_json, 1),
    (_damaged, 80),
    (_weird_values, 40),
]


def flow_cases(seed: int = 16) -> Iterator[Case]:
    rng = random.Random(seed)
    for make, count in FLOW_KINDS:
        for _ in range(count):
            yield make(rng)


# -- Executioner configs ----------------------------------------------------------------
def _config(jobs: list[object], **top: object) -> dict[str, object]:
    return {"working_dir": "/tmp", "jobs": jobs, **top}


def _quadratic_command(rng: random.Random) -> Case:
    n = rng.choice([8000, 24000])
    command = rng.choice(
        [
            "rm " + "-r " * (n // 3),
            "rm -" + "r" * n,
            "curl " * (n // 5),
            "dd " * (n // 3),
            "eval " * (n // 5),
            "nc " * (n // 3),
            ">" + " " * n,
            "sudo" * (n // 4),
            "rm " + "-rx " * (n // 4) + "x",
        ]
    )
    policy = rng.choice(["strict", "warn"])
    doc = _config([{"id": "a", "command": command}], security_policy=policy)
    return Case(f"quadratic-{policy}-{command[:6].strip()}", ".json", json.dumps(doc).encode())


def _doubling(rng: random.Random) -> Case:
    levels = rng.choice([20, 30, 40, 64])
    env = {"A0": "xxxxxxxx"}
    for i in range(1, levels):
        env[f"A{i}"] = f"${{A{i - 1}}}${{A{i - 1}}}"
    where = rng.choice(["top", "job"])
    job: dict[str, object] = {"id": "a", "command": f"echo ${{A{levels - 1}}}"}
    if where == "job":
        job["env_variables"] = env
        doc = _config([job])
    else:
        doc = _config([job], env_variables=env)
    return Case(f"doubling-{where}-{levels}", ".json", json.dumps(doc).encode())


def _env_chain(rng: random.Random) -> Case:
    n = rng.choice([1000, 5000])
    env = {f"V{i}": f"${{V{i + 1}}}." for i in range(n)}
    if rng.random() < 0.5:
        env[f"V{n}"] = "${V0}"  # a cycle
    return Case(
        f"env-chain-{n}",
        ".json",
        json.dumps(_config([{"id": "a", "command": "true"}], env_variables=env)).encode(),
    )


def _config_deep(rng: random.Random) -> Case:
    depth = rng.choice([101, 500, 5000, 100000])
    text = '{"working_dir": "/tmp", "jobs": [{"id": "a", "command": "true", "x": '
    text += "[" * depth + "]" * depth + "}]}"
    return Case(f"config-deep-{depth}", ".json", text.encode())


def _config_long_int(rng: random.Random) -> Case:
    digits = "7" * rng.choice([4301, 9000])
    text = (
        '{"working_dir": "/tmp", "jobs": [{"id": "a", "command": "true", "timeout": '
        + digits
        + "}]}"
    )
    return Case("config-long-int", ".json", text.encode())


def _config_many_jobs(rng: random.Random) -> Case:
    n = rng.choice([5000, 6000])
    jobs = [
        {"id": f"j{i}", "command": f"echo {i}", "dependencies": [f"j{i - 1}"] if i else []}
        for i in range(n)
    ]
    return Case(f"config-jobs-{n}", ".json", json.dumps(_config(jobs)).encode())


def _config_damaged(rng: random.Random) -> Case:
    doc = _config(
        [{"id": "a", "command": "echo ${X}", "env_variables": {"X": "1"}, "dependencies": []}],
        env_variables={"Y": "${X}"},
        security_policy="strict",
    )
    data = bytearray(json.dumps(doc).encode())
    how = rng.choice(["truncate", "flip", "types", "bytes", "nan"])
    if how == "truncate":
        data = data[: rng.randrange(len(data))]
    elif how == "flip":
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif how == "types":
        key = rng.choice(
            ["jobs", "env_variables", "working_dir", "security_policy", "max_workers", "retry"]
        )
        value = rng.choice([None, 1, -1, 1e308, "x", [], {}, [None], {"a": [1]}, True])
        data = bytearray(json.dumps({**doc, key: value}).encode())
    elif how == "bytes":
        data = bytearray(rng.randbytes(rng.randint(0, 500)))
    else:
        data = bytearray(json.dumps(doc).replace('"1"', "NaN").encode())
    return Case(f"config-damaged-{how}", ".json", bytes(data))


CONFIG_KINDS: list[tuple[Callable[[random.Random], Case], int]] = [
    (_quadratic_command, 20),
    (_doubling, 12),
    (_env_chain, 4),
    (_config_deep, 8),
    (_config_long_int, 4),
    (_config_many_jobs, 1),
    (_config_damaged, 40),
]


def config_cases(seed: int = 21) -> Iterator[Case]:
    rng = random.Random(seed)
    for make, count in CONFIG_KINDS:
        for _ in range(count):
            yield make(rng)
