"""An attempt's ``$ORDO_OUTPUTS`` and ``$ORDO_METRICS`` files: read, then removed."""

from __future__ import annotations

import os
import shutil

import pytest

from ordo.runners.process import AttemptFiles, OutputFileError


def test_files_read_are_removed_and_missing_ones_are_nothing() -> None:
    files = AttemptFiles(1)
    with open(files.outputs, "w") as f:
        f.write('n=21\nname="x"\n')
    with open(files.metrics, "w") as f:
        f.write("rows=3\n")
    outputs, metrics = files.read()
    files.remove()
    assert outputs == {"n": 21, "name": "x"}
    assert [(m.name, m.value) for m in metrics] == [("rows", 3.0)]
    assert not os.path.exists(files.outputs) and not os.path.exists(files.metrics)
    nothing = AttemptFiles(2)
    assert nothing.read() == ({}, ())
    nothing.remove()


def test_a_bad_outputs_file_names_its_line_and_both_files_are_still_removed() -> None:
    files = AttemptFiles(3)
    with open(files.outputs, "w") as f:
        f.write("no equals sign\n")
    with open(files.metrics, "w") as f:
        f.write("rows=3\n")
    with pytest.raises(OutputFileError, match=r"\$ORDO_OUTPUTS line 1: expected key=value"):
        files.read()
    files.remove()
    assert not os.path.exists(files.outputs) and not os.path.exists(files.metrics)


def test_an_outputs_path_made_a_folder_is_a_clear_error() -> None:
    files = AttemptFiles(4)
    os.mkdir(files.outputs)
    with pytest.raises(OutputFileError, match=r"^\$ORDO_OUTPUTS cannot be read: Is a directory$"):
        files.read()
    files.remove()  # (a folder is left to the temporary folder's own removal)
    os.rmdir(files.outputs)


def test_only_the_files_a_host_saw_written_are_read() -> None:
    files = AttemptFiles(5)
    with open(files.outputs, "w") as f:
        f.write("n=1\n")
    with open(files.metrics, "w") as f:
        f.write("rows=3\n")
    assert files.read(["ORDO_METRICS"])[0] == {}  # (its outputs file is not looked for)
    assert files.found == [files.metrics]
    files.remove()
    assert os.path.exists(files.outputs) and not os.path.exists(files.metrics)
    os.unlink(files.outputs)


def test_the_folder_of_attempt_files_comes_back_when_removed() -> None:
    first = AttemptFiles(6)
    shutil.rmtree(os.path.dirname(first.outputs))  # (as a cleaner of old files may)
    AttemptFiles._seen_at = 0.0  # (it is looked for at most once a second)
    again = AttemptFiles(7)
    assert os.path.isdir(os.path.dirname(again.outputs))
    with open(again.outputs, "w") as f:
        f.write("n=2\n")
    assert again.read()[0] == {"n": 2}
    again.remove()
