"""Files are never overwritten, leaked or half-written: train and predict refuse what is not theirs, temporary files of
killed writes go away, a full disk or Ctrl-C is one line naming the file and the fix, and nothing the user had
changes (checksums before and after)."""

from __future__ import annotations

import csv
import errno
import hashlib
import itertools
import os
import subprocess
import sys
from collections import namedtuple
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import rgbxseg
from conftest import MODEL
from rgbxseg import io as rgbxseg_io
from rgbxseg.cli import main
from rgbxseg.engine.checkpoint import load_training_checkpoint
from rgbxseg.io import WriteError, atomic_write_path
from toy_models import TOY_NAME, register_toy

STALE = ".last.pt.0123456789ab.tmp"  # what a kill during a checkpoint write leaves (atomic_write_path's pattern)


def checksums(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def temporaries(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.name.endswith(".tmp")]


def one_line(text: str) -> str:
    assert text.count("\n") == 1, text
    return text.strip()


def train_argv(root: Path, run: Path, *overrides: str) -> list[str]:
    return ["train", "--config", "synthetic_quick", "--quiet", "--output-dir", str(run), "--set",
            f"data.root={root}", f"model.name={TOY_NAME}", "data.crop_size=[64,96]", "checkpoint_every=1",
            *overrides]  # fmt: skip


def metrics_rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


class FailingFile:
    """A file whose write stops after ``room`` bytes with ``error``, having written what fit (as a full disk does)."""

    def __init__(self, stream: Any, room: int, error: BaseException) -> None:
        self.stream, self.room, self.error = stream, room, error

    def write(self, data: Any) -> int:
        data = memoryview(data).cast("B")
        if len(data) > self.room:
            self.stream.write(data[: self.room])
            self.room = 0
            raise self.error
        self.room -= len(data)
        return self.stream.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def __enter__(self) -> FailingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.close()


def fail_checkpoint_writes(monkeypatch: pytest.MonkeyPatch, error: BaseException, from_write: int) -> None:
    """The ``from_write``-th and later checkpoint writes stop 4 KiB in with ``error``."""
    real_open, count = Path.open, itertools.count(1)

    def open_(path: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        stream = real_open(path, mode, *args, **kwargs)
        if "w" in mode and path.name.startswith(".last.pt.") and next(count) >= from_write:
            return FailingFile(stream, 4096, error)
        return stream

    monkeypatch.setattr(Path, "open", open_)


def train_on_a_full_disk(
    argv: list[str], from_write: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> str:
    """``rgbxseg train`` whose ``from_write``-th checkpoint write finds the disk full: its exit code 2 checked, its
    one-line error returned; the disk is fine again afterwards."""
    with monkeypatch.context() as patch:
        fail_checkpoint_writes(patch, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), from_write=from_write)
        assert main(argv) == 2
    return one_line(capsys.readouterr().err)


# --- train ---------------------------------------------------------------------------------------------------------


def test_train_refuses_a_folder_of_the_users_files(
    synthetic_scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    register_toy(monkeypatch)
    user = tmp_path / "mine"
    user.mkdir()
    for name, text in {"config.yaml": "lr: 1", "model.safetensors": "my weights", "metrics.csv": "a,b\n1,2\n"}.items():
        (user / name).write_text(text)
    before = checksums(user)

    assert main(train_argv(synthetic_scenes, user, "epochs=1")) == 2
    message = one_line(capsys.readouterr().err)
    assert f"{user} is not empty (config.yaml, metrics.csv, model.safetensors)" in message
    assert "choose a new or empty output_dir" in message
    assert main([*train_argv(synthetic_scenes, user, "epochs=1"), "--resume"]) == 2
    assert f"no checkpoint to resume from: {user / 'last.pt'} does not exist" in one_line(capsys.readouterr().err)
    assert checksums(user) == before and sorted(p.name for p in user.iterdir()) == sorted(before)


def test_temporaries_of_killed_writes_are_removed_on_the_next_start(
    synthetic_scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_toy(monkeypatch)
    run = tmp_path / "run"
    run.mkdir()
    (run / ".config.yaml.0123456789ab.tmp").write_text("killed while writing the config")  # the folder counts as empty
    assert main(train_argv(synthetic_scenes, run, "epochs=1")) == 0
    assert not temporaries(run)

    (run / STALE).write_bytes(bytes(2**20))  # a kill during a checkpoint write
    (run / ".notes.tmp").write_text("not ours")  # other names are left alone
    assert main([*train_argv(synthetic_scenes, run, "epochs=2"), "--resume"]) == 0
    assert [p.name for p in temporaries(run)] == [".notes.tmp"]
    assert load_training_checkpoint(run / "last.pt")["epoch"] == 2


def test_a_full_disk_during_a_checkpoint_is_one_line_and_changes_nothing(
    synthetic_scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    register_toy(monkeypatch)
    run = tmp_path / "run"
    argv = train_argv(synthetic_scenes, run, "epochs=2")
    assert train_on_a_full_disk(argv, 2, monkeypatch, capsys) == (
        f"rgbxseg train: error: cannot write {run / 'last.pt'}: No space left on device; free space on its disk or "
        "write elsewhere, then continue the run with --resume (last.pt was left as it was)"
    )
    state = load_training_checkpoint(run / "last.pt")
    assert state["epoch"] == 1
    assert [int(row["epoch"]) for row in metrics_rows(run)] == [1], "metrics.csv must not run ahead of last.pt"
    assert not temporaries(run)

    before = checksums(run)
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(rgbxseg_io.shutil, "disk_usage", lambda path: Usage(2**30, 2**30 - 4096, 4096))
    assert main([*argv, "--resume"]) == 2  # the disk is still full: refused before writing
    message = one_line(capsys.readouterr().err)
    assert f"cannot write {run / 'last.pt'}: it needs " in message and "its disk has 4.0 KiB free" in message
    assert "free space on its disk" in message and "--resume" in message
    assert checksums(run) == before and not temporaries(run)

    monkeypatch.undo()
    register_toy(monkeypatch)
    assert main([*argv, "--resume"]) == 0
    assert [int(row["epoch"]) for row in metrics_rows(run)] == [1, 2]


def test_ctrl_c_during_a_checkpoint_write_is_one_line_and_leaves_no_temporary(
    synthetic_scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    register_toy(monkeypatch)
    run = tmp_path / "run"
    fail_checkpoint_writes(monkeypatch, KeyboardInterrupt(), from_write=2)
    assert main(train_argv(synthetic_scenes, run, "epochs=2")) == 130
    assert one_line(capsys.readouterr().err) == (
        f"rgbxseg train: interrupted; continue from {run / 'last.pt'} with the same command and --resume"
    )
    assert load_training_checkpoint(run / "last.pt")["epoch"] == 1 and not temporaries(run)


def test_ctrl_c_in_any_command_is_one_line(
    two_weights: tuple[Path, Path], frames: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("rgbxseg.cli.predict.predict_frames", interrupted)
    assert main(predict_argv(two_weights[0], frames, tmp_path / "pred")) == 130
    assert one_line(capsys.readouterr().err) == (
        "rgbxseg predict: interrupted; every file was either completed or not written"
    )


def test_a_run_stopped_before_its_first_checkpoint_starts_over_with_the_same_command(
    synthetic_scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    register_toy(monkeypatch)
    run = tmp_path / "run"
    argv = train_argv(synthetic_scenes, run, "epochs=1")
    assert train_on_a_full_disk(argv, 1, monkeypatch, capsys) == (
        f"rgbxseg train: error: cannot write {run / 'last.pt'}: No space left on device; free space on its disk or "
        "write elsewhere, then run the same command again (no checkpoint yet) (no last.pt was written)"
    )
    assert sorted(p.name for p in run.iterdir()) == [".rgbxseg.lock", "config.yaml"] and not temporaries(run)

    monkeypatch.undo()
    register_toy(monkeypatch)
    fail_checkpoint_writes(monkeypatch, KeyboardInterrupt(), from_write=1)
    assert main(argv) == 130  # the same command: the folder holds only what this run wrote
    assert one_line(capsys.readouterr().err) == (
        "rgbxseg train: interrupted; there was no checkpoint yet; run the same command again to start over"
    )
    monkeypatch.undo()
    register_toy(monkeypatch)
    assert main(argv) == 0
    assert load_training_checkpoint(run / "last.pt")["epoch"] == 1

    mine = tmp_path / "mine"  # a config.yaml of the user's, even one that reads like a run's, is never replaced
    mine.mkdir()
    (mine / "config.yaml").write_text((run / "config.yaml").read_text().split("\n", 1)[1])
    before = checksums(mine)
    assert main(train_argv(synthetic_scenes, mine, "epochs=1")) == 2
    assert "is not empty (config.yaml)" in one_line(capsys.readouterr().err) and checksums(mine) == before


def test_a_second_train_into_a_folder_in_use_fails_at_once(
    synthetic_scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    register_toy(monkeypatch)
    run = tmp_path / "run"
    with rgbxseg_io.lock_directory(run):  # held in this process: flock locks of two open files conflict
        assert main(train_argv(synthetic_scenes, run, "epochs=1")) == 2
    assert one_line(capsys.readouterr().err) == (
        f"rgbxseg train: error: {run} is in use by another rgbxseg run (it holds the lock {run / '.rgbxseg.lock'}); "
        "wait for that run to end, or choose another output folder"
    )
    assert sorted(p.name for p in run.iterdir()) == [".rgbxseg.lock"]


def test_outputs_get_the_umask_mode(tmp_path: Path) -> None:
    model = rgbxseg.create_model(MODEL)
    previous = os.umask(0o027)
    try:
        rgbxseg.save_weights(model, tmp_path / "model.safetensors")
        (tmp_path / "plain.txt").write_text("")
    finally:
        os.umask(previous)
    modes = {path.name: path.stat().st_mode & 0o777 for path in tmp_path.iterdir()}
    assert modes == {"model.safetensors": 0o640, "plain.txt": 0o640}


def test_only_failures_to_write_the_target_become_write_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), atomic_write_path(tmp_path / "out.txt"):
        (tmp_path / "missing-input.txt").read_text()  # reading an input is not writing the target
    quota = r"cannot write .*out\.txt: Disk quota exceeded; free space within your disk quota or write elsewhere"
    with pytest.raises(WriteError, match=quota), atomic_write_path(tmp_path / "out.txt"):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
    assert not list(tmp_path.iterdir())


# --- predict -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Weights of the same model from two seeds: their predictions differ."""
    folder = tmp_path_factory.mktemp("weights")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(rgbxseg.save_weights(rgbxseg.create_model(MODEL), folder / f"seed{seed}.safetensors"))
    return paths[0], paths[1]


def predict_argv(weights: Path, frames: Path, out: Path) -> list[str]:
    return ["predict", "--weights", str(weights), "--rgb-dir", str(frames / "rgb"), "--depth-dir",
            str(frames / "depth"), "--out", str(out), "--no-progress"]  # fmt: skip


@pytest.fixture
def frames(tmp_path: Path) -> Path:
    """Two RGB-D frames (a.png, b.png) with depth in millimetres."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        for folder in ("rgb", "depth"):
            (tmp_path / "frames" / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "frames/rgb" / f"{name}.png")
        depth = np.linspace(800, 4000, 64 * 64).reshape(64, 64).astype(np.uint16)
        Image.fromarray(depth).save(tmp_path / "frames/depth" / f"{name}.png")
    return tmp_path / "frames"


def test_predict_refuses_earlier_outputs_unless_overwrite(
    two_weights: tuple[Path, Path], frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = two_weights
    out = tmp_path / "pred"
    assert main(predict_argv(first, frames, out)) == 0
    before = checksums(out)
    capsys.readouterr()

    assert main(predict_argv(second, frames, out)) == 2
    assert one_line(capsys.readouterr().err) == (
        f"rgbxseg predict: error: {out} already holds outputs (labels/a.png and 5 more); pass --overwrite "
        "(overwrite=True) to replace them, or choose another output folder"
    )
    assert checksums(out) == before and not temporaries(out)

    assert main([*predict_argv(second, frames, out), "--overwrite"]) == 0
    after = checksums(out)
    assert after.keys() == before.keys() and after["labels/a.png"] != before["labels/a.png"]


def test_a_second_predict_into_a_folder_in_use_fails_at_once(
    two_weights: tuple[Path, Path], frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pred"
    (out / "labels").mkdir(parents=True)
    (out / "labels" / ".a.png.0123456789ab.tmp").write_bytes(b"half a PNG")  # a killed run's
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom rgbxseg.io import lock_directory\nwith lock_directory(sys.argv[1]):\n"
         "    print('holding', flush=True)\n    sys.stdin.read()", str(out)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "holding\n"
        before = checksums(out)
        assert main(predict_argv(two_weights[0], frames, out)) == 2
        assert one_line(capsys.readouterr().err) == (
            f"rgbxseg predict: error: {out} is in use by another rgbxseg run (it holds the lock {out / '.rgbxseg.lock'}"
            "); wait for that run to end, or choose another output folder"
        )
        assert checksums(out) == before
    finally:
        holder.communicate("")
    assert main(predict_argv(two_weights[0], frames, out)) == 0  # its lock ended with it
    assert sorted(checksums(out)) == [".rgbxseg.lock", "labels/a.png", "labels/b.png", "overlay/a.jpg",
                                      "overlay/b.jpg", "panel/a.jpg", "panel/b.jpg"]  # fmt: skip


@pytest.mark.parametrize(
    "command",
    [
        ["eval", "--data", "{data}", "--json", "{existing}"],
        ["eval", "--data", "{data}", "--confusion", "{existing}"],
        ["export", "onnx", "--out", "{existing}"],
        ["bench", "--model", MODEL, "--json", "{existing}"],
    ],
    ids=["eval-json", "eval-confusion", "export-onnx", "bench-json"],
)
def test_commands_refuse_to_replace_a_file_unless_overwrite(
    command: list[str], two_weights: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    existing = tmp_path / "mine.out"
    existing.write_text("the user's file")
    argv = [part.format(data=tmp_path / "data", existing=existing) for part in command]
    if command[0] != "bench":
        argv += ["--weights", str(two_weights[0])]
    assert main(argv) == 2  # refused before any work: the dataset does not even exist
    assert one_line(capsys.readouterr().err) == (
        f"rgbxseg {command[0]}: error: {existing} already exists; pass "
        "--overwrite (overwrite=True) to replace it, or choose another path"
    )
    assert existing.read_text() == "the user's file"
