"""The public API and its command lines on real runs of the synthetic configs: predictions equal
the runner's own evaluation, evaluating a checkpoint reproduces its run's accuracy, the infer tool
reports discovered ids, per-epoch history and loggers land in the run folder, and every bad input
ends in one clear message with nothing written."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision.transforms.v2.functional import to_pil_image
from werkzeug.test import Client

from avalanche_ext import api
from avalanche_ext.app.server import App
from avalanche_ext.app.server import main as app_main
from avalanche_ext.cli import infer as infer_cli
from avalanche_ext.cli import test as test_cli
from avalanche_ext.metrics.long_tail import confusion_matrix

REPO = Path(__file__).resolve().parents[2]
SYNTHETIC = REPO / "configs" / "synthetic" / "naive_resnet8_1ep_synthetic.py"
DISCOVERY = REPO / "configs" / "ncd" / "dualteacher_resnet8_synthetic-8+4.py"
LOGGERS = [dict(type="TextLogger"), dict(type="TensorboardLogger"), dict(type="CSVLogger")]


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("runs")
    cfg = api.load_config(SYNTHETIC, {"loggers": LOGGERS})
    return api.run(cfg, work_dir=str(work / "synthetic"), config_path=str(SYNTHETIC))


def _raw_test_images(run_dir: str):
    """The test stream's images before any transform (uint8 [3, H, W]) and their labels."""
    from avalanche_ext.runner import Experiment  # noqa: PLC0415

    exp = Experiment(api.load_config(Path(run_dir) / "config.py"))
    images, labels = [], []
    for experience in exp.scenario.benchmark.test_stream:
        raw = experience.dataset.replace_current_transform_group(None)
        for i in range(len(raw)):
            x, y = raw[i][0], raw[i][1]
            images.append(x)
            labels.append(int(y))
    return images, labels


def test_api_predictions_equal_the_runners_evaluation(synthetic_run, tmp_path):
    results = synthetic_run
    predictor = api.load_model(results["run_dir"])
    images, labels = _raw_test_images(results["run_dir"])
    preds = [p.topk[0][0] for p in predictor.predict(images)]
    # the confusion matrix the runner recorded from its own evaluation pass, image for image
    assert confusion_matrix(labels, preds, 6) == results["confusion_matrix"]
    files = []
    for i in range(0, len(images), 7):
        files.append(tmp_path / f"{i}.png")
        to_pil_image(images[i]).save(files[-1])
    from_files = api.predict(results["run_dir"], files)
    assert [p.topk[0][0] for p in from_files] == preds[::7]
    assert all(len(p.topk) == 5 and abs(sum(t[2] for t in p.topk) - 1) < 0.2 for p in from_files)
    assert from_files[0].topk[0][1] == f"class_{preds[0]:02d}"


def test_evaluate_reproduces_the_final_accuracy(synthetic_run, capsys):
    run_dir = synthetic_run["run_dir"]
    assert test_cli.main([str(Path(run_dir) / "config.py"), run_dir]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stream_accuracy"]["test"] == pytest.approx(
        synthetic_run["final"]["stream_accuracy"], abs=1e-9
    )


def test_history_report_and_loggers_in_the_run_folder(synthetic_run):
    run_dir = Path(synthetic_run["run_dir"])
    history = synthetic_run["history"]
    assert [(e["experience"], e["epoch"]) for e in history] == [(0, 1), (1, 1), (2, 1)]
    assert all(e["train_loss"] > 0 and 0 <= e["train_accuracy"] <= 1 for e in history)
    lines = (run_dir / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["train_loss"] for line in lines] == [e["train_loss"] for e in history]
    assert (run_dir / "figures" / "history.png").is_file()
    assert "Training curves" in (run_dir / "report.md").read_text()
    assert list((run_dir / "tb_data").glob("events.out.tfevents.*"))
    assert (run_dir / "csvlogs" / "training_results.csv").stat().st_size > 0


def test_periodic_evaluation_adds_recall_statistics(tmp_path):
    options = {
        "cl_strategy.eval_every": 1,
        "cl_strategy.train_epochs": 2,
        "scenario.num_experiences": 1,
        "model.head.num_classes": 6,
        "metrics": [dict(type="accuracy_metrics", epoch=True, experience=True, stream=True)],
        "loggers": [],
    }
    cfg = api.load_config(SYNTHETIC, options)
    results = api.run(cfg, work_dir=str(tmp_path))
    history = results["history"]
    assert len(history) == 2
    block = history[-1]["eval"]["train"]
    assert block["samples"] == 144  # the experience Avalanche's periodic evaluation scores
    assert {"accuracy", "geometric_mean", "harmonic_mean", "lowest_recall"} <= set(block)
    assert block["lowest_recall"] <= block["harmonic_mean"] <= block["geometric_mean"] + 1e-12


def test_infer_tool_on_a_discovery_run_reports_discovered_ids(tmp_path, capsys):
    results = api.run(DISCOVERY, work_dir=str(tmp_path / "ncd"))
    images, labels = _raw_test_images(results["run_dir"])
    novel = [i for i, y in enumerate(labels) if y >= 8][::10]
    for i in novel:
        to_pil_image(images[i]).save(tmp_path / f"novel_{i:03d}.png")
    assert infer_cli.main([results["run_dir"], str(tmp_path), "--json"]) == 0
    preds = json.loads(capsys.readouterr().out)
    assert len(preds) == len(novel)
    assert all(p["novelty_score"] is not None for p in preds)
    discovered = [p for p in preds if p["discovered_id"] is not None]
    assert len(discovered) >= len(novel) // 2  # the run's novel classes are mostly discovered
    right = sum(p["mapped_class"] == labels[i] for p, i in zip(preds, novel))
    assert right >= len(novel) // 2  # and matched to the right class (chance: 1 in 4)
    assert infer_cli.main([results["run_dir"], str(tmp_path / f"novel_{novel[0]:03d}.png")]) == 0
    assert "discovered id" in capsys.readouterr().out or not discovered
    # the app's Infer tab answers the same for an upload
    client = Client(App([tmp_path / "ncd"]))
    run = client.get("/api/runs").get_json()["runs"][0]
    assert run["discovery"] is True
    first = tmp_path / f"novel_{novel[0]:03d}.png"
    upload = {"run": run["id"], "images": [(io.BytesIO(first.read_bytes()), first.name)]}
    answer = client.post("/api/infer", data=upload).get_json()
    assert answer["discovery"] is True
    assert {k: answer["predictions"][0][k] for k in ("discovered_id", "mapped_class")} == {
        k: preds[0][k] for k in ("discovered_id", "mapped_class")
    }
    table = client.post("/api/compare", json={"runs": [run["id"]]}).get_json()
    assert {"discovery old", "discovery new", "discovery HM"} <= set(table["columns"])
    row = table["rows"][0]
    assert row["discovery old"] == results["discovery"]["old_acc"]


def _png(size=(16, 16)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((*size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "name,data,message",
    [
        ("corrupt.png", _png()[:-16], "broken image"),
        ("notes.png", b"not an image at all", "not an image"),
        ("huge.png", b"\x89PNG" + b"0" * (10 * 2**20 + 10), "over the 10 MiB limit"),
    ],
)
def test_bad_images_get_one_message(synthetic_run, tmp_path, capsys, name, data, message):
    bad = tmp_path / name
    bad.write_bytes(data)
    assert infer_cli.main([synthetic_run["run_dir"], str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_bomb_guard_refuses_an_image_with_too_many_pixels(synthetic_run, tmp_path, capsys):
    bad = tmp_path / "bomb.png"
    Image.new("1", (5000, 5000)).save(bad)  # a few KiB on disk, 25 M pixels decoded
    assert infer_cli.main([synthetic_run["run_dir"], str(bad)]) == 2
    assert "pixel" in capsys.readouterr().err


def test_run_folder_without_checkpoint(tmp_path, capsys):
    (tmp_path / "config.py").write_text("x = 1\n")
    img = tmp_path / "a.png"
    img.write_bytes(_png())
    assert infer_cli.main([str(tmp_path), str(img)]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    with pytest.raises(Exception, match="no checkpoint"):
        api.load_model(tmp_path)


def test_app_refuses_other_hosts_without_authentication(capsys):
    assert app_main(["--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --host 0.0.0.0")


def test_app_bad_uploads_leave_it_up_and_write_nothing(synthetic_run):
    work = Path(synthetic_run["run_dir"]).parent.parent
    before = sorted(p.relative_to(work) for p in work.rglob("*"))
    client = Client(App([work]))
    runs = client.get("/api/runs").get_json()["runs"]
    run_id = runs[0]["id"]

    def files():
        return [
            (io.BytesIO(_png()), "ok.png"),
            (io.BytesIO(_png()[:-16]), "corrupt.png"),
            (io.BytesIO(b"hello"), "text.txt"),
        ]

    answer = client.post("/api/infer", data={"run": run_id, "images": files()})
    preds = answer.get_json()["predictions"]
    assert len(preds[0]["topk"]) == 5
    assert "broken image" in preds[1]["error"] and "not an image" in preds[2]["error"]
    too_big = client.post(
        "/api/infer", data={"run": run_id, "images": [(io.BytesIO(b"0" * (31 * 2**20)), "x.png")]}
    )
    assert too_big.status_code == 413 and "upload too large" in too_big.get_json()["error"]
    unknown = client.post("/api/infer", data={"run": "0:../../etc", "images": files()[:1]})
    assert unknown.status_code == 400 and "unknown" in unknown.get_json()["error"]
    empty = work / "synthetic" / "no_checkpoint"
    empty.mkdir()
    (empty / "config.py").write_text("x = 1\n")
    listed = {r["name"]: r for r in client.get("/api/runs").get_json()["runs"]}
    assert listed["synthetic/no_checkpoint"]["status"] == "incomplete"
    no_checkpoint = listed["synthetic/no_checkpoint"]["id"]
    answer = client.post("/api/infer", data={"run": no_checkpoint, "images": files()[:1]})
    assert answer.status_code == 400 and "no checkpoint" in answer.get_json()["error"]
    empty.joinpath("config.py").unlink()
    empty.rmdir()
    typed = client.post("/api/train", json={"config": "/etc/passwd"})
    assert "not one the app offers" in typed.get_json()["error"]
    assert client.get("/").status_code == 200  # still up
    assert sorted(p.relative_to(work) for p in work.rglob("*")) == before


def _finished(client: Client, job_id: int, timeout: float = 180.0) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        job = next(j for j in client.get("/api/jobs").get_json()["jobs"] if j["id"] == job_id)
        if job["status"] != "running":
            return job
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} still running after {timeout} s")


def test_app_a_failing_run_shows_its_error_line(tmp_path):
    client = Client(App([tmp_path]))
    config = "configs/synthetic/naive_resnet8_1ep_synthetic.py"
    typed = client.post("/api/train", json={"config": config, "values": {"work_dir": "/etc"}})
    assert "not a setting this form offers" in typed.get_json()["error"]
    text = client.post("/api/train", json={"config": config, "values": {"seed": "one"}})
    assert text.status_code == 400 and "not a number" in text.get_json()["error"]
    values = {"cl_strategy.optimizer.lr": "-1"}
    job = client.post("/api/train", json={"config": config, "values": values}).get_json()["job"]
    job = _finished(client, job["id"])
    assert job["status"] == "failed"
    assert job["error"] == "error: cl_strategy.optimizer: SGD: Invalid learning rate: -1.0"
    assert not any(tmp_path.iterdir())  # refused before any run folder
    assert client.get("/api/runs").get_json() == {"runs": []}


def test_test_stream_curves_leave_training_unchanged_and_end_at_the_final_accuracy(tmp_path):
    tiny = {"scenario.images_per_class": 8, "scenario.test_images_per_class": 4, "loggers": []}
    plain = api.run(api.load_config(SYNTHETIC, tiny), work_dir=str(tmp_path / "plain"))
    cfg = api.load_config(SYNTHETIC, {**tiny, "history": {"test_every": 1}})
    scored = api.run(cfg, work_dir=str(tmp_path / "scored"))
    losses = [e["train_loss"] for e in scored["history"]]
    assert losses == [e["train_loss"] for e in plain["history"]]  # same training, bit for bit
    assert "eval" not in plain["history"][-1]
    last = scored["history"][-1]["eval"]["test"]
    assert last["samples"] == 6 * 4  # the whole test stream
    assert last["accuracy"] == pytest.approx(scored["final"]["stream_accuracy"], abs=1e-12)


def test_a_bad_history_key_writes_nothing(tmp_path):
    from avalanche_ext.errors import ConfigError  # noqa: PLC0415

    cfg = api.load_config(SYNTHETIC, {"history": {"test_every": -1}})
    with pytest.raises(ConfigError, match="history.test_every"):
        api.run(cfg, work_dir=str(tmp_path))
    assert not any(tmp_path.iterdir())


def test_old_new_harmonic_mean():
    from avalanche_ext.app.runs import old_new_harmonic_mean  # noqa: PLC0415

    assert old_new_harmonic_mean(0.8, 0.4) == pytest.approx(2 * 0.32 / 1.2)
    assert old_new_harmonic_mean(0.9, 0.0) == 0.0
    assert old_new_harmonic_mean(0.0, 0.0) == 0.0
    assert old_new_harmonic_mean(None, 0.5) is None
