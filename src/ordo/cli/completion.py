"""``ordo completion bash|zsh|fish``: a completion script generated from the CLI's
argparse parser, so it always knows every command, option and choice.

Each script holds a table from a command path (``ordo``, ``ordo executions``,
``ordo executions list``) to the words allowed after it, and walks the words typed so far
to find the path. After an option with choices (``--state``, ``--revision``) it offers
the choices; where a command takes files, the shell's file completion."""

from __future__ import annotations

import argparse
import shlex

from msgspec import Struct, field


class Level(Struct):
    """What may follow one command path."""

    commands: dict[str, str] = field(default_factory=dict)  # name -> help
    options: dict[str, str] = field(default_factory=dict)  # --flag -> help
    choices: dict[str, list[str]] = field(default_factory=dict)  # --flag -> its choices
    files: bool = False  # a positional argument is a file or folder
    positional_choices: list[str] = field(default_factory=list)


def levels(parser: argparse.ArgumentParser) -> dict[str, Level]:
    """Every command path of ``parser`` (``ordo``, ``ordo executions``, ...) and what
    may follow it."""
    found: dict[str, Level] = {}
    _walk(parser, "ordo", found)
    return found


def _walk(parser: argparse.ArgumentParser, path: str, found: dict[str, Level]) -> None:
    level = found[path] = Level()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                level.commands[name] = helps.get(name, "")
                _walk(sub, f"{path} {name}", found)
        elif action.option_strings:
            for flag in action.option_strings:
                if flag.startswith("--") or len(action.option_strings) == 1:
                    level.options[flag] = (
                        "" if action.help == argparse.SUPPRESS else action.help or ""
                    )
                    if action.choices:
                        level.choices[flag] = [str(c) for c in action.choices]
        elif action.choices:
            level.positional_choices.extend(str(c) for c in action.choices)
        elif action.dest in ("file", "files", "folder", "source", "config", "path"):
            level.files = True


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for ``shell`` (bash, zsh or fish)."""
    table = levels(parser)
    return {"bash": _bash, "zsh": _zsh, "fish": _fish}[shell](table)


def _words(level: Level) -> str:
    return " ".join([*level.commands, *level.positional_choices, *level.options])


def _bash(table: dict[str, Level]) -> str:
    words = "\n".join(
        f"    [{shlex.quote(p)}]={shlex.quote(_words(lv))}" for p, lv in table.items()
    )
    choices = "\n".join(
        f"    [{shlex.quote(f'{p}|{flag}')}]={shlex.quote(' '.join(c))}"
        for p, lv in table.items()
        for flag, c in lv.choices.items()
    )
    files = " ".join(shlex.quote(p) for p, lv in table.items() if lv.files)
    return f"""# bash completion for ordo: eval "$(ordo completion bash)" in ~/.bashrc
_ordo() {{
    local -A words=(
{words}
    )
    local -A choices=(
{choices}
    )
    local -a files=({files})
    local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}} path=ordo w i
    for (( i = 1; i < COMP_CWORD; i++ )); do
        w=${{COMP_WORDS[i]}}
        if [[ -n ${{words["$path $w"]+x}} ]]; then path="$path $w"; fi
    done
    if [[ -n ${{choices["$path|$prev"]+x}} ]]; then
        COMPREPLY=($(compgen -W "${{choices["$path|$prev"]}}" -- "$cur"))
        return
    fi
    COMPREPLY=($(compgen -W "${{words["$path"]}}" -- "$cur"))
    if [[ $cur != -* ]]; then
        for w in "${{files[@]}}"; do
            if [[ $w == "$path" ]]; then COMPREPLY+=($(compgen -f -- "$cur")); fi
        done
    fi
}}
complete -o filenames -F _ordo ordo
"""


def _zsh(table: dict[str, Level]) -> str:
    words = "\n".join(f"    {shlex.quote(p)} {shlex.quote(_words(lv))}" for p, lv in table.items())
    choices = "\n".join(
        f"    {shlex.quote(f'{p}|{flag}')} {shlex.quote(' '.join(c))}"
        for p, lv in table.items()
        for flag, c in lv.choices.items()
    )
    files = " ".join(shlex.quote(p) for p, lv in table.items() if lv.files)
    return f"""#compdef ordo
# zsh completion for ordo: put the output in a file named _ordo in a folder of $fpath,
# or: source <(ordo completion zsh)
_ordo() {{
    local -A table choices
    table=(
{words}
    )
    choices=(
{choices}
    )
    local -a files=({files})
    local cmd=ordo w i prev=${{words[CURRENT-1]}}
    for (( i = 2; i < CURRENT; i++ )); do
        w=${{words[i]}}
        if (( ${{+table[$cmd $w]}} )); then cmd="$cmd $w"; fi
    done
    if (( ${{+choices[$cmd|$prev]}} )); then
        compadd -- ${{=choices[$cmd|$prev]}}
        return
    fi
    compadd -- ${{=table[$cmd]}}
    if [[ ${{words[CURRENT]}} != -* && ${{files[(Ie)$cmd]}} -gt 0 ]]; then
        _files
    fi
}}
if [[ ${{zsh_eval_context[-1]}} == loadautofunc ]]; then
    _ordo "$@"    # autoloaded from $fpath
else
    compdef _ordo ordo    # sourced
fi
"""


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish(table: dict[str, Level]) -> str:
    lines = [
        "# fish completion for ordo: ordo completion fish > ~/.config/fish/completions/ordo.fish",
        "function __ordo_path",
        "    set -l known " + " ".join(_fish_quote(p) for p in table),
        "    set -l path ordo",
        "    for w in (commandline -opc)[2..-1]",
        '        set -l next "$path $w"',
        "        if contains -- $next $known",
        "            set path $next",
        "        end",
        "    end",
        "    echo $path",
        "end",
        "complete -c ordo -f",
    ]
    for path, level in table.items():
        at = f"-n {_fish_quote(f'test (__ordo_path) = {_fish_quote(path)}')}"
        for name, help_text in level.commands.items():
            lines.append(
                f"complete -c ordo {at} -a {_fish_quote(name)} -d {_fish_quote(help_text)}"
            )
        if level.positional_choices:
            lines.append(
                f"complete -c ordo {at} -a {_fish_quote(' '.join(level.positional_choices))}"
            )
        for flag, help_text in level.options.items():
            spec = f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}"
            extra = ""
            if flag in level.choices:
                extra = f" -x -a {_fish_quote(' '.join(level.choices[flag]))}"
            lines.append(f"complete -c ordo {at} {spec}{extra} -d {_fish_quote(help_text)}")
        if level.files:
            lines.append(f"complete -c ordo {at} -F")
    return "\n".join(lines) + "\n"
