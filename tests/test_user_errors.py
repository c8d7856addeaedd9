"""Malformed input, class by class: what the user sees. Every class prints exactly one line on stderr — the value
or file, what is wrong and the fix — exits non-zero, and never prints a traceback. Each row below is one case of
`test_user_error_is_one_line` (real commands, in-process, before anything starts).

| malformed input | example | what the user sees (stderr, one line; exit 2) |
|---|---|---|
| unknown table / search | `sweep --table 9.9` | `srprior sweep: error: --table: unknown table '9.9' …` |
| identity through --set | `sweep --set seed=3` (also `row=`, `table=`) | `… --set 'seed=3': expected KEY=VALUE with KEY one of … (seeds come from --seeds)` |
| science value out of its range | `sweep --set learning_rate=1e30` | `… OptimConfig.learning_rate=1e+30: must be a finite number in (0, 1]` |
| science value of the wrong type | `sweep --set n_ssr=two` | `… ExtractorConfig.n_ssr='two': must be an integer >= 1` |
| numeric option out of range | `--seeds 0`, `--workers 0`, `--max-concurrent -1`, `--max-failures -1`, `--num-cpus 0`, `--steps 0`, `--fuse 0`, `--gpus-per-trial -1`, `ui --port 70000`, `smoke --steps 0` | `… argument --seeds: 0 is out of range: must be an integer >= 1 and <= 1000 (see … --help)` |
| numeric option not a number | `--seeds two`, `--gpus-per-trial nan` | `… argument --seeds: 'two' is not an integer …` |
| incompatible options | `--fuse 2 --workers 2` | `… --fuse K > 1 trains K trials in one worker: it cannot be combined with --workers > 1` |
| sweep name too long or unsafe | `--name <300 chars>`, `--resume <300 chars>`, `--name a/b`, `--name ..`, a newline or an escape in the name | `… --name '..': use 1-120 letters, digits and . _ + = @ -, starting with a letter or digit (no quotes, slashes, spaces or control characters)` |
| science values impossible on the crop | `--set n_ssr=1000000000`, `--set select_n=1000000000`, `--set eval_crop=2`, `--set patch=25 --set poi_size=25`, `--set scenario=global --set suppress_window=61` | `… ExtractorConfig.n_ssr=1000000000: the local scenario allows at most 35 SSR positions for some PoI of a 24x24 LR patch (lr_patch=24); use n_ssr <= 35 or a larger lr_patch` |
| nothing to resume | `sweep --resume` in a fresh folder | `… --resume: no sweep to resume under DIR/ray` |
| storage that is neither folder nor URI | `--storage s3:/x` | `… --storage s3:/x: not a URI (scheme://...) nor a folder; did you mean s3://x?` |
| Ray address malformed | `--address nonsense` | `… argument --address: 'nonsense' is not 'local', 'auto' or HOST:PORT …` |
| missing data folder | `sweep --data-root /nonexistent`, `eval bicubic --data /nonexistent` | `… --data-root /nonexistent: no such folder` / `… DIR: data root does not exist; download with …` |
| corrupt or absent data, `--plan` too | a truncated `Set5/HR/*.png`; a data root without `Set5/` (sweep and `--plan`: found before Ray) | `… data check before training: FILE: not a readable PNG/… image or truncated/corrupt (…); re-download or re-export the file` |
| not an image file named like one | a directory or FIFO `Set5/HR/x.png`, a broken link | `… data check before training: FILE: a named pipe (FIFO), not an image file; replace it with the image or remove it` |
| training image smaller than the patch | an 8×8 image in `--train-root` | `… data check before training: FILE: LR 4x4 is smaller than the 16x16 training patch; use a smaller patch …` |
| download root unwritable | `data download benchmarks --root /proc/nope` (before any byte is fetched) | `srprior data download: error: --root /proc/nope: cannot write there (No such file or directory); choose a folder you can write to` |
| no data given | `eval bicubic` without `--data` / SRPRIOR_DATA | `srprior eval bicubic: error: pass --data DIR (the folder holding Set5/, Set14/, ...) or set SRPRIOR_DATA` |
| unknown model preset | `smoke --preset nope` | `srprior smoke: error: argument --preset: invalid choice: 'nope' (choose from …) (see srprior smoke --help)` |
| disk full at start | `--output-dir` on a 1 MiB file system | `… DIR: only 1.0 MiB free on its disk (a sweep needs 200 MiB: SRPRIOR_MIN_FREE_MB); free space or …` |
| tracking URI: bad scheme | `report --tracking-uri foo://x` | `srprior report: error: tracking URI 'foo://x': unsupported scheme; use sqlite:////ABS/PATH/mlflow.db or http://HOST:PORT` |
| tracking URI: nothing listening | `report --tracking-uri http://127.0.0.1:PORT` | `… tracking URI http://127.0.0.1:PORT: not reachable ([Errno 111] Connection refused; timeout 10 s); start the server or fix the URI` |
| tracking URI: server that never answers | a socket that accepts and stays silent | `… not reachable (timed out; timeout 10 s) …` after 10 s (MLflow's client retries for minutes) |
| no store yet | `report --table 4.2` in a fresh folder | `srprior report: error: no MLflow store at sqlite:///DIR/mlflow.db (file missing): run `srprior sweep --table 4.2` first, …` |
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from srprior.cli import main

DATA = Path(os.environ.get("SRPRIOR_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")  # as CI lays it


def _sweep(*args: str) -> list[str]:
    return ["sweep", "--table", "smoke", "--address", "local", *args]


def _corrupt_set5(tmp: Path) -> Path:
    root = tmp / "data"
    shutil.copytree(DATA / "Set5", root / "Set5")
    good = (root / "Set5" / "HR" / "baby.png").read_bytes()
    (root / "Set5" / "HR" / "aaa.png").write_bytes(good[: len(good) // 3])  # sorts first: the one read
    return root


def _tiny_train_root(tmp: Path) -> Path:
    from PIL import Image

    root = tmp / "train"
    root.mkdir()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(root / "big.png")
    Image.new("RGB", (8, 8), (10, 20, 30)).save(root / "small.png")
    return root


@pytest.fixture
def tiny_fs(tmp_path):
    """A 1 MiB file system (tmpfs; needs root, as on CI), unmounted afterwards."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                      capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture
def silent_server():
    """A TCP port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CASES = {
    "unknown-table": (["sweep", "--table", "9.9", "--address", "local"], "unknown table '9.9'"),
    "set-seed": (_sweep("--set", "seed=3"), "(seeds come from --seeds)"),
    "set-row": (_sweep("--set", "row=x"), "--set 'row=x': expected KEY=VALUE"),
    "set-table": (_sweep("--set", "table=4.2"), "--set 'table=4.2': expected KEY=VALUE"),
    "science-range": (_sweep("--set", "learning_rate=1e30"),
                      "OptimConfig.learning_rate=1e+30: must be a finite number in (0, 1]"),
    "science-type": (_sweep("--set", "n_ssr=two"), "ExtractorConfig.n_ssr='two': must be an integer >= 1"),
    "seeds-0": (_sweep("--seeds", "0"), "argument --seeds: 0 is out of range: must be an integer >= 1 and <= 1000"),
    "workers-0": (_sweep("--workers", "0"), "argument --workers: 0 is out of range: must be an integer >= 1"),
    "max-concurrent-neg": (_sweep("--max-concurrent", "-1"), "argument --max-concurrent: -1 is out of range"),
    "max-failures-neg": (_sweep("--max-failures", "-1"),
                         "argument --max-failures: -1 is out of range: must be an integer >= 0 and <= 100"),
    "num-cpus-0": (_sweep("--num-cpus", "0"), "argument --num-cpus: 0 is out of range"),
    "steps-0": (_sweep("--steps", "0"), "argument --steps: 0 is out of range"),
    "fuse-0": (_sweep("--fuse", "0"), "argument --fuse: 0 is out of range"),
    "gpus-neg": (_sweep("--gpus-per-trial", "-1"), "argument --gpus-per-trial: -1 is out of range"),
    "gpus-nan": (_sweep("--gpus-per-trial", "nan"), "argument --gpus-per-trial: nan is not a finite number"),
    "seeds-text": (_sweep("--seeds", "two"), "argument --seeds: 'two' is not an integer"),
    "ui-port": (["ui", "--port", "70000"], "argument --port: 70000 is out of range: must be an integer >= 1"),
    "smoke-steps": (["smoke", "--steps", "0"], "argument --steps: 0 is out of range"),
    "fuse-workers": (_sweep("--fuse", "2", "--workers", "2"), "--fuse K > 1 trains K trials in one worker"),
    "name-long": (_sweep("--name", "a" * 300), "use 1-120 letters, digits and . _ + = @ -, starting with a letter"),
    "resume-long": (["sweep", "--resume", "a" * 300, "--address", "local"], "--resume 'aaaa"),
    "name-slash": (_sweep("--name", "a/b"), "--name 'a/b': use 1-120 letters, digits"),
    "name-dotdot": (_sweep("--name", ".."), "--name '..': use 1-120 letters, digits and . _ + = @ -, starting with a "
                                            "letter or digit (no quotes, slashes, spaces or control characters)"),
    "name-newline": (_sweep("--name", "a\nb"), "--name 'a\\nb': use 1-120 letters"),
    "name-escape": (_sweep("--name", "a\x1b[2Jb", "--plan"), "--name 'a\\x1b[2Jb': use 1-120 letters"),
    "resume-dash": (["sweep", "--resume=-x", "--address", "local"], "--resume '-x': use 1-120 letters"),
    "n-ssr-huge": (_sweep("--set", "n_ssr=1000000000", "--plan"),
                   "ExtractorConfig.n_ssr=1000000000: the local scenario allows at most 15 SSR positions for some PoI "
                   "of a 16x16 LR patch (lr_patch=16); use n_ssr <= 15 or a larger lr_patch"),
    "select-n-huge": (_sweep("--set", "select_n=1000000000", "--plan"),
                      "ExtractorConfig.select_n=1000000000: the local scenario allows at most 48 peaks per template"),
    "eval-crop-tiny": (_sweep("--set", "eval_crop=2", "--plan"),
                       "DataConfig.eval_crop=2: at x2 with 2 px shaved per border it leaves no room for SSIM's 11x11 "
                       "window or the 16x16 LAM window; use eval_crop >= 8 or 0 (whole images)"),
    "patch-over-crop": (_sweep("--set", "patch=33", "--set", "poi_size=33", "--plan"),
                        "ExtractorConfig.patch=33, poi_size=33: LR crop 16x16 is too small for 33x33 templates"),
    "global-no-room": (_sweep("--set", "scenario=global", "--set", "suppress_window=61", "--plan"),
                       "ExtractorConfig.scenario=global: some PoI of a 16x16 LR patch (lr_patch=16) has no allowed "
                       "SSR position; use a larger lr_patch or smaller local_window/suppress_window"),
    "storage": (_sweep("--storage", "s3:/x"), "--storage s3:/x: not a URI (scheme://...) nor a folder; did you "
                                              "mean s3://x?"),
    "address": (_sweep("--address", "nonsense"), "argument --address: 'nonsense' is not 'local', 'auto' or HOST:PORT"),
    "data-root-missing": (_sweep("--data-root", "/nonexistent"), "--data-root /nonexistent: no such folder"),
    "bicubic-missing": (["eval", "bicubic", "--data", "/nonexistent"], "/nonexistent: data root does not exist"),
    "bicubic-no-data": (["eval", "bicubic"], "pass --data DIR (the folder holding Set5/, Set14/, ...) or set "
                                             "SRPRIOR_DATA"),
    "download-root": (["data", "download", "benchmarks", "--root", "/proc/nope"],
                      "srprior data download: error: --root /proc/nope: cannot write there (No such file or "
                      "directory); choose a folder you can write to"),
    "smoke-preset": (["smoke", "--preset", "nope"], "argument --preset: invalid choice: 'nope' (choose from"),
    "report-scheme": (["report", "--table", "4.2", "--tracking-uri", "foo://x"],
                      "tracking URI 'foo://x': unsupported scheme"),
    "report-refused": (lambda tmp: ["report", "--table", "4.2", "--tracking-uri", f"http://127.0.0.1:{_closed_port()}"],
                       "Connection refused; timeout 10 s); start the server or fix the URI"),
}


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line(code: int, out: str, err: str, expected: str, exit_code: int = 2) -> None:
    assert code == exit_code, err
    assert "Traceback" not in err and out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert expected in err, err


@pytest.mark.parametrize("case", sorted(CASES))
def test_user_error_is_one_line(case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # defaults (./outputs) land in the test's folder
    monkeypatch.delenv("SRPRIOR_DATA", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    argv, expected = CASES[case]
    argv = argv(tmp_path) if callable(argv) else argv
    _assert_one_line(*_run(argv, capsys), expected)
    assert not (tmp_path / "outputs").exists() or case == "resume-long"  # nothing written before the error


def test_nothing_to_resume_and_no_store_yet(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _assert_one_line(*_run(["sweep", "--resume", "--output-dir", str(tmp_path), "--address", "local"], capsys),
                     f"--resume: no sweep to resume under {tmp_path / 'ray'}")
    _assert_one_line(*_run(["report", "--table", "4.2", "--output-dir", str(tmp_path)], capsys),
                     f"no MLflow store at sqlite:///{tmp_path / 'mlflow.db'} (file missing): run `srprior sweep")


@pytest.mark.skipif(not (DATA / "Set5").is_dir(), reason="needs the shared benchmark data")
def test_bad_data_is_one_line_before_ray(tmp_path, capsys):
    import ray

    root = _corrupt_set5(tmp_path)
    bad = root / "Set5" / "HR" / "aaa.png"
    args = _sweep("--data-root", str(root), "--benchmarks", "set5", "--no-di", "--output-dir", str(tmp_path / "o"))
    _assert_one_line(*_run(args, capsys), f"data check before training: {bad}: not a readable")
    _assert_one_line(*_run(["eval", "bicubic", "--data", str(root), "--datasets", "Set5"], capsys),
                     f"{bad}: not a readable")
    train = _tiny_train_root(tmp_path)
    args = _sweep("--train-root", str(train), "--output-dir", str(tmp_path / "o"))
    _assert_one_line(*_run(args, capsys), f"{train / 'small.png'}: LR 4x4 is smaller than the 16x16 training patch")
    assert not ray.is_initialized() and not (tmp_path / "o").exists()


def _not_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    """Data roots whose Set5/HR/aaa.png is no image file (a directory, a FIFO, a broken link): root, what it is."""
    made = {}
    for name, make, what in (("dir", Path.mkdir, "a directory"), ("fifo", os.mkfifo, "a named pipe (FIFO)"),
                             ("link", lambda p: p.symlink_to(tmp / "gone.png"),
                              f"a broken symbolic link (to {tmp / 'gone.png'})")):
        root = tmp / name
        shutil.copytree(DATA / "Set5", root / "Set5")
        make(root / "Set5" / "HR" / "aaa.png")
        made[name] = (root, what)
    return made


@pytest.mark.skipif(not (DATA / "Set5").is_dir(), reason="needs the shared benchmark data")
def test_plan_runs_the_data_preflight(tmp_path, capsys):
    """`--plan` says it validates everything: corrupt, absent and non-file data are refused there too, in one line
    naming the file and what it is, before anything is written."""
    import ray

    def plan(root: Path) -> list[str]:
        return _sweep("--data-root", str(root), "--benchmarks", "set5", "--no-di", "--output-dir", str(tmp_path / "o"),
                      "--plan")

    root = _corrupt_set5(tmp_path)
    _assert_one_line(*_run(plan(root), capsys), f"data check before training: {root / 'Set5/HR/aaa.png'}: not a "
                                                "readable PNG/JPEG/BMP/TIFF/PPM image or truncated/corrupt")
    empty = tmp_path / "empty"
    empty.mkdir()
    _assert_one_line(*_run(plan(empty), capsys), f"data check before training: {empty}: no dataset folder 'Set5' "
                                                 "(found: []); download with `srprior data download benchmarks")
    for root, what in _not_files(tmp_path).values():
        end = "" if "link" in what else ", not an image file"
        _assert_one_line(*_run(plan(root), capsys), f"data check before training: {root / 'Set5/HR/aaa.png'}: "
                                                    f"{what}{end}; replace it with the image or remove it")
    code, out, _ = _run(plan(DATA), capsys)  # intact data: the plan prints
    assert code == 0 and out.startswith("Plan: table smoke")
    assert not ray.is_initialized() and not (tmp_path / "o").exists()


def test_read_image_says_what_a_non_file_is(tmp_path):
    from srprior.data.io import ImageError, read_image

    (tmp_path / "d.png").mkdir()
    os.mkfifo(tmp_path / "f.png")  # opening it would block forever
    with pytest.raises(ImageError, match=r"d\.png: a directory, not an image file; replace it"):
        read_image(tmp_path / "d.png")
    with pytest.raises(ImageError, match=r"f\.png: a named pipe \(FIFO\), not an image file"):
        read_image(tmp_path / "f.png")
    with pytest.raises(FileNotFoundError, match="nope.png: no such image file"):
        read_image(tmp_path / "nope.png")


def test_disk_full_at_start_is_one_line(tiny_fs, capsys):
    _assert_one_line(*_run(_sweep("--output-dir", str(tiny_fs / "out")), capsys),
                     f"{tiny_fs / 'out'}: only 1.0 MiB free on its disk")
    assert list(tiny_fs.iterdir()) == []


@pytest.mark.slow
def test_a_silent_tracking_server_times_out_in_seconds(silent_server, capsys):
    start = time.monotonic()
    _assert_one_line(*_run(["report", "--table", "4.2", "--tracking-uri", silent_server], capsys),
                     f"tracking URI {silent_server}: not reachable (timed out; timeout 10 s)")
    assert time.monotonic() - start < 20
