"""Executioner job configs (``../shared/compat/executioner.md``) as ordo flows.

A config is a JSON document with ``working_dir`` and ``jobs``; each job becomes a shell
task run by ``/bin/sh -c`` in ``working_dir`` (an argv list when ``allow_shell`` is
false), its ``dependencies`` its ``depends_on``, its retry keys a :class:`RetryPolicy`,
its checks pre and post checks, its ``env_variables`` (with the application's and the
command line's) its environment. Where the real engine contradicts its documentation the
documentation wins: a bad value type, a missing dependency and a cycle are validation
errors naming the key and the job; ``strict`` security is enforced. A check the engine
cannot run (an unknown name, wrong parameters) fails its job when it starts, as in the
engine: it becomes a ``command`` check run by ``ordo.cli.executioner_plugins``, which also
runs the checks and dependency types that ``dependency_plugins`` register.
"""

from __future__ import annotations

import base64
import glob
import itertools
import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from json import dumps
from sys import executable
from typing import Any

from msgspec import Struct, field

from ordo.definitions.bounded import LIMITS, load_json
from ordo.definitions.files import Unreadable, read_regular
from ordo.errors import DefinitionError, Problem
from ordo.graph import find_cycle
from ordo.masking import secret_values
from ordo.model import Check, Flow, RetryPolicy, Task

NAMESPACE = "executioner"
DEFAULT_TIMEOUT = 10800.0
#: ``inherit_shell_env: "default"``: the names the real engine passes on.
DEFAULT_ENV = (
    "PATH",
    "LD_LIBRARY_PATH",
    "HOME",
    "USER",
    "SHELL",
    "HOSTNAME",
    "TERM",
    "DISPLAY",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "TEMP",
    "TMP",
    "JAVA_HOME",
    "PYTHON_HOME",
    "NODE_PATH",
)
RETRY_STATUSES = ("ERROR", "FAILED", "TIMEOUT", "POSTCHECK_FAILED")
#: The checks the Executioner has built in, and the one parameter each takes.
BUILT_IN_CHECKS = {
    "check_file_exists": "path",
    "check_no_ora_errors": "log_file",
    "check_no_ora_or_sp2_errors": "log_file",
}
#: Runs a plugin's check or dependency type (``ordo.cli.executioner_plugins``).
PLUGIN_RUNNER = "ordo.cli.executioner_plugins"
#: A plugin dependency: how often it is asked by default (seconds).
DEFAULT_POLL = 5.0
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

#: ``security_policy: strict`` refuses commands matching these (the spec's list). Each
#: check runs in time linear in the command's length (no pattern that backtracks).
_WORDS = re.compile(r"[;&|(`\s]+")
_LINE_WORDS = re.compile(r"\S+")
_PIPE_TO_SHELL = re.compile(r"\s*(sudo\s+)?(ba|z|da)?sh\b")


def _words(command: str) -> list[str]:
    return [w for w in _WORDS.split(command) if w]


def _after(first: str, then: str) -> Callable[[str], bool]:
    """``\bFIRST\b.*THEN`` on one line, in linear time: THEN after the first FIRST."""
    first_re, then_re = re.compile(first), re.compile(then)

    def check(command: str) -> bool:
        for line in command.splitlines():
            found = first_re.search(line)
            if found and then_re.search(line, found.end()):
                return True
        return False

    return check


def _rm_targets(command: str, targets: tuple[str, ...], need_r: bool) -> bool:
    """``rm`` with options (one holding r or R when ``need_r``) then one of ``targets``."""
    for line in command.splitlines():
        words = [w.rstrip(";&|") for w in _LINE_WORDS.findall(line)]
        for i, word in enumerate(words):
            if word != "rm":
                continue
            j, recursive = i + 1, False
            while j < len(words) and words[j].startswith("-") and words[j] != "-":
                recursive = recursive or "r" in words[j].lower()
                j += 1
            if j < len(words) and words[j] in targets and (recursive or not need_r):
                return True
    return False


def _curl_to_shell(command: str) -> bool:
    parts = command.split("|")
    return any(
        re.search(r"\b(curl|wget)\b", left) and _PIPE_TO_SHELL.match(right)
        for left, right in itertools.pairwise(parts)
    )


def _regex(pattern: str) -> Callable[[str], bool]:
    compiled = re.compile(pattern)
    return lambda command: compiled.search(command) is not None


DANGEROUS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("sudo/su/doas", lambda c: not {"sudo", "su", "doas"}.isdisjoint(_words(c))),
    ("rm -rf /", lambda c: _rm_targets(c, ("/", "/*"), need_r=False)),
    ("rm -rf ~ or .", lambda c: _rm_targets(c, ("~", "~/", ".", "./"), need_r=True)),
    ("curl or wget piped to a shell", _curl_to_shell),
    ("write to a raw disk", _regex(r">[ \t]*/dev/(sd|hd|nvme|xvd|vd|mmcblk)")),
    ("dd to a device", _after(r"\bdd\b", r"\bof=/dev/")),
    ("redirect into /etc, /proc or /sys", _regex(r">[ \t]*/(etc|proc|sys)/")),
    (
        "shutdown/reboot/halt/poweroff",
        lambda c: not {"shutdown", "reboot", "halt", "poweroff"}.isdisjoint(_words(c)),
    ),
    ("nc -e", _after(r"\bnc\b", r"\s-e\s")),
    ("eval of a variable", _after(r"\beval\b", r"\$")),
    ("command substitution", _regex(r"`|\$\(")),
    ("mkfs", _regex(r"\bmkfs\b")),
)
#: ``${NAME}`` expansion stops with an error past these sizes (``${A}${A}`` doubling).
MAX_VALUE = 64 * 1024
MAX_EXPANDED = 1024 * 1024
#: ``allow_shell: false``: what only a shell understands.
_SHELL_SYNTAX = re.compile(r"[|&;<>`$(){}*?~]|\[\[")


class Mail(Struct, frozen=True):
    """Where and when the run's report is mailed."""

    to: tuple[str, ...] = ()
    on_success: bool = False
    on_failure: bool = True
    server: str = "localhost"
    port: int = 587
    user: str = ""
    password: str = ""


class Custom(Struct, frozen=True):
    """A check or dependency type a plugin must register (``kind``: ``check`` or
    ``dependency type``), and where the config names it."""

    kind: str
    name: str
    job: str
    where: str


class Config(Struct, frozen=True):
    """A validated config: the flow and what the command needs beside it."""

    flow: Flow
    application: str
    working_dir: str
    log_dir: str
    parallel: bool
    max_workers: int
    mail: Mail
    warnings: tuple[str, ...] = ()
    descriptions: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()  # values of variables named like a password/key/token
    plugins: tuple[tuple[str, str], ...] = ()  # (name, absolute path) of dependency_plugins
    custom: tuple[Custom, ...] = ()  # names that only a plugin can register


def load_config(path: str, cli_env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config at ``path``; ``cli_env`` (``--env``) wins over every
    level. Raises :class:`DefinitionError` listing every problem found."""
    absolute = os.path.abspath(path)
    if not os.path.lexists(absolute):
        raise DefinitionError([Problem("config file not found", absolute)])
    try:  # bounded: at most LIMITS.size bytes, then depth and number length
        data = read_regular(absolute, LIMITS.size, streams=True)
    except Unreadable as exc:
        problem = Problem(f"cannot read the config: {exc.reason}", absolute)
        raise DefinitionError([problem]) from None
    doc = load_json(data, absolute)
    return _Loader(absolute, dict(cli_env or {})).config(doc)


class _Loader:
    def __init__(self, path: str, cli_env: dict[str, str]) -> None:
        self.path = path
        self.cli_env = cli_env
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.plugins: tuple[tuple[str, str], ...] = ()
        self.custom: list[Custom] = []

    def problem(self, where: str, message: str) -> None:
        self.problems.append(Problem(message, self.path, field=where))

    def expect(self, where: str, what: str, value: Any) -> None:
        self.problem(where, f"expected {what}, found {_kind(value)}")

    # -- values --------------------------------------------------------------------------
    def number(self, d: Mapping[str, Any], key: str, where: str, default: float) -> float:
        value = d.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.expect(f"{where}{key}", "a number", value)
            return default
        return float(value)

    def integer(self, d: Mapping[str, Any], key: str, where: str, default: int) -> int:
        value = d.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.expect(f"{where}{key}", "an integer", value)
            return default
        return value

    def boolean(self, d: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
        value = d.get(key, default)
        if not isinstance(value, bool):
            self.expect(f"{where}{key}", "true or false", value)
            return default
        return value

    def string(self, d: Mapping[str, Any], key: str, where: str, default: str) -> str:
        value = d.get(key, default)
        if not isinstance(value, str):
            self.expect(f"{where}{key}", "a string", value)
            return default
        return value

    def int_list(self, d: Mapping[str, Any], key: str, where: str, default: list[int]) -> list[int]:
        value = d.get(key, default)
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            self.expect(f"{where}{key}", "a list of integers", value)
            return default
        return value

    def env(self, d: Mapping[str, Any], where: str) -> dict[str, str]:
        value = d.get("env_variables", {})
        if not isinstance(value, Mapping):
            self.expect(f"{where}env_variables", "an object of NAME: value", value)
            return {}
        out: dict[str, str] = {}
        for name, v in value.items():
            if not ENV_NAME.match(name):
                self.problem(
                    f"{where}env_variables.{name}",
                    "invalid variable name: letters, digits and _, not starting with a digit",
                )
            elif isinstance(v, (dict, list)) or v is None:
                self.expect(f"{where}env_variables.{name}", "a string, number or boolean", v)
            else:
                text = str(v).lower() if isinstance(v, bool) else str(v)
                if "\0" in text or len(text) > 32 * 1024:
                    self.problem(f"{where}env_variables.{name}", "a NUL byte or over 32 KiB")
                else:
                    out[name] = text
        return out

    # -- the document ----------------------------------------------------------------------
    def config(self, doc: Any) -> Config:
        if not isinstance(doc, Mapping):
            self.expect("(top level)", "an object with working_dir and jobs", doc)
            raise DefinitionError(self.problems)
        working_dir = self.working_dir(doc)
        self.plugins = self.dependency_plugins(doc, working_dir or os.path.dirname(self.path))
        app = self.string(doc, "application_name", "", "")
        app = app or os.path.splitext(os.path.basename(self.path))[0]
        log_dir = self.string(doc, "log_dir", "", "") or "logs"
        defaults = self.defaults(doc)
        inherit = self.inherit(doc)
        allow_shell = self.boolean(doc, "allow_shell", "", True)
        policy = self.string(doc, "security_policy", "", "warn")
        if policy not in ("warn", "strict", "block", "off"):
            self.problem("security_policy", f"expected warn, strict or off, found {policy!r}")
        app_env = _resolve(self.env(doc, ""), {}, self.path)  # frozen among themselves at load
        jobs = doc.get("jobs")
        tasks: list[Task] = []
        descriptions: dict[str, str] = {}
        secrets: set[str] = set()
        if not isinstance(jobs, list):
            self.expect("jobs", "a list of job objects", jobs)
        else:
            seen: set[str] = set()
            for i, job in enumerate(jobs):
                task = self.job(job, i, defaults, app_env, inherit, allow_shell, policy, secrets)
                if task is None:
                    continue
                if task.id in seen:
                    self.problem(f"jobs[{i}].id", f"duplicate job id '{task.id}'")
                seen.add(task.id)
                descriptions[task.id] = task.description
                tasks.append(task)
            self.links(tasks)
        mail = self.mail(doc)
        max_workers = self.integer(doc, "max_workers", "", 1)
        parallel = self.boolean(doc, "parallel", "", False)
        if self.problems:
            raise DefinitionError(self.problems)
        flow = Flow(
            id=_flow_id(app),
            namespace=NAMESPACE,
            description=f"Executioner application {app}",
            labels={"application": app},
            tasks=tuple(tasks),
            base_dir=working_dir or ".",
            path=self.path,
        )
        return Config(
            flow=flow,
            application=app,
            working_dir=working_dir or ".",
            log_dir=os.path.join(working_dir or ".", log_dir),
            parallel=parallel,
            max_workers=max(1, max_workers),
            mail=mail,
            warnings=tuple(self.warnings),
            descriptions=descriptions,
            secrets=tuple(sorted(secrets)),
            plugins=self.plugins,
            custom=tuple(self.custom),
        )

    def working_dir(self, doc: Mapping[str, Any]) -> str | None:
        """The folder jobs run in: absolute, or relative to the config file's folder
        (``"."``: that folder, also when the key is left out)."""
        value = doc.get("working_dir", ".")
        if not isinstance(value, str) or not value.strip():
            self.expect("working_dir", "a path to a folder", value)
            return None
        folder = os.path.join(os.path.dirname(self.path), os.path.expanduser(value))
        if not os.path.isdir(folder):
            self.problem("working_dir", f"{folder} is not an existing folder")
            return None
        if not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
            self.problem("working_dir", f"{folder} is not readable and writable")
            return None
        return os.path.realpath(folder)

    def dependency_plugins(self, doc: Mapping[str, Any], base: str) -> tuple[tuple[str, str], ...]:
        """``dependency_plugins``: paths or ``{name, path}``, as (name, absolute path)."""
        value = doc.get("dependency_plugins", [])
        if not isinstance(value, list):
            self.expect("dependency_plugins", "a list of paths or {name, path}", value)
            return ()
        found = []
        for n, entry in enumerate(value):
            at = f"dependency_plugins[{n}]"
            if isinstance(entry, Mapping):
                path, name = entry.get("path"), entry.get("name")
                if not isinstance(name, str) or not ENV_NAME.match(name):
                    self.expect(f"{at}.name", "a name (letters, digits and _)", name)
                    continue
            else:
                path, name = entry, None
            if not isinstance(path, str) or not path.strip():
                self.expect(at if name is None else f"{at}.path", "a path to a .py file", path)
                continue
            full = os.path.normpath(os.path.join(base, os.path.expanduser(path)))
            stem = os.path.splitext(os.path.basename(full))[0]
            found.append((name or re.sub(r"\W", "_", stem), full))
        return tuple(found)

    def defaults(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        timeout = self.number(doc, "default_timeout", "", DEFAULT_TIMEOUT)
        if timeout <= 0:
            self.problem("default_timeout", f"must be above 0, found {timeout:g}")
        return {
            "timeout": timeout,
            "max_retries": self.integer(doc, "default_max_retries", "", 0),
            "retry_delay": self.number(doc, "default_retry_delay", "", 30.0),
            "retry_backoff": self.number(doc, "default_retry_backoff", "", 1.5),
            "retry_jitter": self.number(doc, "default_retry_jitter", "", 0.1),
            "max_retry_time": self.number(doc, "default_max_retry_time", "", 1800.0),
            "retry_on_exit_codes": self.int_list(doc, "default_retry_on_exit_codes", "", [1]),
        }

    def inherit(self, doc: Mapping[str, Any]) -> bool | list[str]:
        value = doc.get("inherit_shell_env", True)
        if value is True:
            return True
        if value is False:
            return []
        if value == "default":
            return list(DEFAULT_ENV)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        self.expect("inherit_shell_env", 'true, false, "default" or a list of names', value)
        return True

    def job(
        self,
        job: Any,
        i: int,
        defaults: Mapping[str, Any],
        app_env: Mapping[str, str],
        inherit: bool | list[str],
        allow_shell: bool,
        policy: str,
        secrets: set[str],
    ) -> Task | None:
        at = f"jobs[{i}]"
        if not isinstance(job, Mapping):
            self.expect(at, "a job object", job)
            return None
        job_id = job.get("id")
        if not isinstance(job_id, str) or not job_id.strip():
            self.expect(f"{at}.id", "a non-empty string", job_id)
            return None
        where = f"jobs[{i}] ({job_id})."
        command = job.get("command")
        if not isinstance(command, str):
            self.expect(f"{where}command", "a string", command)
            return None
        deps = job.get("dependencies", [])
        if not isinstance(deps, list):
            self.expect(f"{where}dependencies", "a list of job ids", deps)
            deps = []
        timeout = self.number(job, "timeout", where, defaults["timeout"])
        if timeout <= 0:
            self.problem(f"{where}timeout", f"must be above 0, found {timeout:g}")
        env = _resolve({**app_env, **self.env(job, where), **self.cli_env}, {}, self.path)
        secrets.update(secret_values(env))
        spec: dict[str, Any] = {"command": command.strip() or "true", "inherit_env": inherit}
        if command.strip():
            self.security(command, job_id, where, policy)
            if not allow_shell:
                spec["command"] = self.argv(command, where)
        return Task(
            id=job_id,
            type="shell",
            spec=spec,
            description=self.string(job, "description", where, ""),
            depends_on=tuple(d for d in deps if isinstance(d, str)),
            env=env,
            retry=self.retry(job, where, defaults),
            timeout=timeout,
            pre_checks=(
                self.plugin_dependencies(deps, job_id, where, timeout)
                + self.checks(job, "pre_checks", where, job_id)
            ),
            post_checks=self.checks(job, "post_checks", where, job_id),
        )

    def plugin_dependencies(
        self, deps: list[Any], job_id: str, where: str, timeout: float
    ) -> tuple[Check, ...]:
        """``{"type": NAME, ...}`` entries of ``dependencies``: checks run first, before
        the job's pre-checks, that wait until the plugin's answer is true."""
        waits = []
        for n, dep in enumerate(deps):
            at = f"{where}dependencies[{n}]"
            if isinstance(dep, str):
                continue
            if not isinstance(dep, Mapping) or not isinstance(dep.get("type"), str):
                self.expect(at, 'a job id or a plugin dependency {"type": NAME, ...}', dep)
                continue
            kind = str(dep["type"])
            poll = self.number(dep, "poll_interval", f"{at}.", DEFAULT_POLL)
            max_wait = self.number(dep, "max_wait", f"{at}.", timeout)
            if poll <= 0 or max_wait < 0:
                self.problem(at, "poll_interval must be above 0 and max_wait 0 or more")
                continue
            params = {
                k: v for k, v in dep.items() if k not in ("type", "poll_interval", "max_wait")
            }
            self.custom.append(Custom("dependency type", kind, job_id, at))
            payload = {"type": kind, "params": params, "poll_interval": poll, "max_wait": max_wait}
            run = self.plugin_command("depend", kind, payload)
            waits.append(Check("command", {"run": run, "timeout": max_wait + 60.0}))
        return tuple(waits)

    def plugin_command(self, verb: str, name: str, payload: dict[str, Any]) -> str:
        """The command check that runs a plugin's check or dependency type: the name is
        there to be read; what runs is the payload (base64 JSON: no quoting, no template
        markers)."""
        from_plugins = {**payload, "plugins": [list(p) for p in self.plugins]}
        word = base64.urlsafe_b64encode(dumps(from_plugins).encode()).decode()
        shown = name if re.fullmatch(r"[\w.-]+", name) else "-"
        return f"{shlex.quote(executable)} -m {PLUGIN_RUNNER} {verb} {shown} {word}"

    def security(self, command: str, job_id: str, where: str, policy: str) -> None:
        for name, matches in DANGEROUS:
            if matches(command):
                message = f"job '{job_id}': the command matches the dangerous pattern {name}"
                if policy in ("strict", "block"):
                    self.problem(f"{where}command", message + " (security_policy: strict)")
                elif policy == "warn":
                    self.warnings.append(message + " (security_policy: warn, so it runs)")
                return

    def argv(self, command: str, where: str) -> list[str]:
        found = _SHELL_SYNTAX.search(command)
        if found:
            self.problem(
                f"{where}command",
                f"uses shell syntax {found.group(0)!r} but allow_shell is false "
                "(commands run without a shell: a program and its arguments)",
            )
            return []
        try:
            return shlex.split(command)
        except ValueError as exc:
            self.problem(f"{where}command", f"cannot split into arguments: {exc}")
            return []

    def retry(self, job: Mapping[str, Any], where: str, defaults: Mapping[str, Any]) -> RetryPolicy:
        retries = self.integer(job, "max_retries", where, defaults["max_retries"])
        if retries < 0:
            self.problem(f"{where}max_retries", f"must be 0 or more, found {retries}")
        codes = self.int_list(job, "retry_on_exit_codes", where, defaults["retry_on_exit_codes"])
        statuses = job.get("retry_on_status")
        if statuses is not None and (
            not isinstance(statuses, list) or not all(s in RETRY_STATUSES for s in statuses)
        ):
            self.expect(
                f"{where}retry_on_status", f"a list of {', '.join(RETRY_STATUSES)}", statuses
            )
            statuses = None
        # retry_on_exit_codes alone decides exit-code retries unless FAILED is listed
        any_exit = statuses is not None and "FAILED" in statuses
        return RetryPolicy(
            attempts=max(0, retries) + 1,
            delay=self.number(job, "retry_delay", where, defaults["retry_delay"]),
            backoff=self.number(job, "retry_backoff", where, defaults["retry_backoff"]),
            jitter=self.number(job, "retry_jitter", where, defaults["retry_jitter"]),
            on_exit_codes=() if any_exit else tuple(codes),
            on_exit=any_exit or bool(codes),
            on_timeout=statuses is None or "TIMEOUT" in statuses,
            on_post_check=(statuses is not None and "POSTCHECK_FAILED" in statuses) or 0 in codes,
            budget=self.number(job, "max_retry_time", where, defaults["max_retry_time"]) or None,
        )

    def checks(
        self, job: Mapping[str, Any], key: str, where: str, job_id: str
    ) -> tuple[Check, ...]:
        items = job.get(key, [])
        if not isinstance(items, list):
            self.expect(f"{where}{key}", "a list of {name, params}", items)
            return ()
        out = []
        for n, item in enumerate(items):
            at = f"{where}{key}[{n}]"
            if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
                self.expect(at, "an object {name, params}", item)
                continue
            params = item.get("params", {})
            if not isinstance(params, Mapping):
                self.expect(f"{at}.params", "an object", params)
                continue
            out.append(self.check(str(item["name"]), params, at, job_id))
        return tuple(out)

    def check(self, name: str, params: Mapping[str, Any], at: str, job_id: str) -> Check:
        """A built-in check with its one parameter becomes ordo's own check; any other
        (a plugin's, an unknown name, wrong parameters) runs through the plugin runner,
        which fails it with the reason, as the engine does, when the job starts."""
        key = BUILT_IN_CHECKS.get(name)
        value = params.get(key) if key else None
        if key is None:
            self.custom.append(Custom("check", name, job_id, at))
        elif set(params) != {key} or not isinstance(value, str) or not value:
            self.warnings.append(
                f"{at}: {name} takes one parameter '{key}' (a path), found "
                f"{', '.join(map(str, params)) or 'none'}: the job will fail this check"
            )
        else:
            return _built_in(name, value)
        return Check(
            "command",
            {"run": self.plugin_command("check", name, {"name": name, "params": dict(params)})},
        )

    def links(self, tasks: Sequence[Task]) -> None:
        ids = {t.id for t in tasks}
        for t in tasks:
            for dep in t.depends_on:
                if dep not in ids:
                    self.problem(
                        f"jobs ({t.id}).dependencies", f"unknown job '{dep}' (no job has that id)"
                    )
        if not self.problems:
            cycle = find_cycle(tasks)
            if cycle:
                self.problem("jobs", "circular dependencies: " + " -> ".join(cycle))

    def mail(self, doc: Mapping[str, Any]) -> Mail:
        to = doc.get("email_address", "")
        if isinstance(to, str):
            addresses = [a.strip() for a in to.split(",") if a.strip()]
        elif isinstance(to, list) and all(isinstance(a, str) for a in to):
            addresses = [a.strip() for a in to if a.strip()]
        else:
            self.expect("email_address", "an address, a comma-separated string or a list", to)
            addresses = []
        return Mail(
            to=tuple(a for a in addresses if "@" in a),
            on_success=self.boolean(doc, "email_on_success", "", False),
            on_failure=self.boolean(doc, "email_on_failure", "", True),
            server=self.string(doc, "smtp_server", "", "localhost"),
            port=self.integer(doc, "smtp_port", "", 587),
            user=self.string(doc, "smtp_user", "", ""),
            password=self.string(doc, "smtp_password", "", ""),
        )


def _resolve(env: Mapping[str, str], outer: Mapping[str, str], path: str = "env") -> dict[str, str]:
    """``${NAME}`` references resolved against ``env`` itself (then ``outer``), each
    value once (depth first, without recursion); unknown names and circular references
    stay as written. DefinitionError when a value would grow past :data:`MAX_VALUE`
    characters or all of them past :data:`MAX_EXPANDED`."""
    done: dict[str, str] = {}
    total = 0
    for start in env:
        if start in done:
            continue
        stack = [(start, _REFERENCE.findall(env[start]), 0)]
        open_names = {start}
        while stack:
            name, refs, index = stack[-1]
            if index < len(refs):
                stack[-1] = (name, refs, index + 1)
                ref = refs[index]
                if ref in env and ref not in done and ref not in open_names:
                    stack.append((ref, _REFERENCE.findall(env[ref]), 0))
                    open_names.add(ref)
                continue
            stack.pop()
            open_names.discard(name)
            done[name] = value = _substitute(name, env, outer, done, path)
            total += len(value)
            if total > MAX_EXPANDED:
                message = f"env: ${{...}} references expand to more than {MAX_EXPANDED} characters"
                raise DefinitionError([Problem(message, path)])
    return done


def _substitute(
    name: str, env: Mapping[str, str], outer: Mapping[str, str], done: Mapping[str, str], path: str
) -> str:
    value = env[name]
    if "${" not in value:
        return value
    size = len(value)

    def sub(m: re.Match[str]) -> str:
        nonlocal size
        ref = m.group(1)
        if ref == name:
            return m.group(0)
        found = done.get(ref) if ref in env else outer.get(ref)
        found = m.group(0) if found is None else found
        size += len(found) - len(m.group(0))
        if size > MAX_VALUE:
            message = f"env: ${{{name}}} expands to more than {MAX_VALUE} characters"
            raise DefinitionError([Problem(message, path)])
        return found

    return _REFERENCE.sub(sub, value)


def _flow_id(app: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", app).strip("-")
    return slug or "application"


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _built_in(name: str, value: str) -> Check:
    if name == "check_file_exists":
        return Check("file_exists", {"path": glob.escape(value), "type": "file"})
    if name == "check_no_ora_errors":
        return Check("no_match", {"path": value, "pattern": "ORA-", "missing": "fail"})
    return Check(
        "no_match", {"path": glob.escape(value), "pattern": "ORA-|SP2-", "missing": "fail"}
    )
