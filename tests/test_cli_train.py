"""``fedshield train``: help, error paths (one line, exit 2, no traceback), a tiny real run."""
import json
import os
import subprocess
import sys

import pytest

from fedshield import cli

OPTIONS = ["--dataset", "--model", "--rounds", "--clients", "--per-round", "--seed", "--json",
           "--local-epochs", "--lr", "--batch-size", "--data-dir", "--no-progress", "--partition",
           "--max-per-class", "--test-samples", "--eval-every", "--server-lr", "--loop", "--no-cache",
           "--defense", "--attack", "--root-size", "--device", "--init", "--n-conv", "--risk-every"]


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for opt in OPTIONS:
        assert opt in out, opt
    assert "FedAvg" in out
    # every option has a help text (argparse prints the default next to it)
    assert out.count("(default:") >= 10


@pytest.mark.parametrize("argv,needle", [
    (["--dataset", "imagenet"], "unknown dataset"),
    (["--clients", "5", "--per-round", "10"], "per_round"),
    (["--rounds", "0"], "rounds"),
    (["--rounds", "-3"], "rounds"),
    (["--model", "resnet"], "unknown model"),
    (["--lr", "0"], "local_lr"),
    (["--partition", "dirichlet"], "partition"),
    (["--defense", "bogus"], "unknown defense"),
    (["--defense", "gc", "--attack", "xyz"], "unknown attack"),
])
def test_bad_input_one_line_exit_2(argv, needle, capsys):
    assert cli.main(["train", "--no-progress", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedshield train: error:") and needle in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_missing_data_one_line_exit_2(tmp_path, capsys):
    empty = tmp_path / "nodata"
    empty.mkdir()
    rc = cli.main(["train", "--data-dir", str(empty), "--rounds", "1", "--no-progress", "--no-cache"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "mnist" in err.lower() and str(empty) in err


def test_subprocess_no_traceback(tmp_path):
    env = {**os.environ, "FEDSHIELD_CACHE": str(tmp_path / "cache")}
    p = subprocess.run([sys.executable, "-m", "fedshield", "train", "--per-round", "200", "--clients", "100"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and p.stderr.strip().count("\n") == 0
    assert "per_round" in p.stderr


def test_tiny_run_writes_json(data_root, tmp_path, capsys):
    out = tmp_path / "sub" / "out.json"
    argv = ["train", "--dataset", "mnist", "--model", "lenet", "--rounds", "2", "--clients", "10",
            "--per-round", "3", "--seed", "1", "--local-epochs", "1", "--lr", "0.1", "--batch-size", "5",
            "--test-samples", "100", "--eval-every", "1", "--data-dir", str(data_root), "--no-progress",
            "--json", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "final test accuracy" in printed
    res = json.loads(out.read_text())
    assert res["config"]["rounds"] == 2 and res["config"]["n_clients"] == 10 and res["config"]["seed"] == 1
    assert res["config"]["local_batch_size"] == 5 and res["config"]["local_lr"] == 0.1
    assert len(res["round_time"]) == 2 and res["eval_rounds"] == [1, 2]
    assert 0.0 <= res["final_accuracy"] <= 1.0
    assert all(len(c) == 3 for c in res["clients"])
    # the second call is served from the cache and gives the same numbers
    out2 = tmp_path / "out2.json"
    assert cli.main(argv[:-1] + [str(out2)]) == 0
    assert json.loads(out2.read_text())["accuracy"] == res["accuracy"]


@pytest.mark.parametrize("defense", ["gc", "ours"])
def test_defense_option_runs(defense, data_root, tmp_path, capsys):
    out = tmp_path / "d.json"
    argv = ["train", "--rounds", "1", "--clients", "10", "--per-round", "2", "--lr", "0.1", "--batch-size", "5",
            "--test-samples", "50", "--data-dir", str(data_root), "--no-progress", "--no-cache",
            "--defense", defense, "--root-size", "10", "--json", str(out)]
    assert cli.main(argv) == 0
    res = json.loads(out.read_text())
    assert res["defense"].startswith({"gc": "GradientCompression", "ours": "PaperDefense"}[defense])
    assert f"with {defense}" in capsys.readouterr().out


def test_defaults_are_the_calibrated_setting(data_root, tmp_path):
    """Without options the run is the book's calibrated setting: DLG init, 4-conv LeNet, local
    batch 1, SGD 1e-2, 2 epochs; ``--batch-size full`` and ``--init default`` give the literal one."""
    out = tmp_path / "c.json"
    base = ["train", "--rounds", "1", "--clients", "10", "--per-round", "2", "--test-samples", "20",
            "--data-dir", str(data_root), "--no-progress", "--no-cache"]
    assert cli.main(base + ["--json", str(out)]) == 0
    c = json.loads(out.read_text())["config"]
    assert c["local_batch_size"] == 1 and c["local_lr"] == 0.01 and c["local_epochs"] == 2
    assert [list(kv) for kv in c["model_kwargs"]] == [["dlg_init", True]]
    assert cli.main(base + ["--batch-size", "full", "--init", "default", "--n-conv", "3", "--json", str(out)]) == 0
    c = json.loads(out.read_text())["config"]
    assert c["local_batch_size"] is None and [list(kv) for kv in c["model_kwargs"]] == [["n_conv", 3]]


def test_risk_every(data_root, tmp_path, capsys):
    out = tmp_path / "r.json"
    base = ["train", "--rounds", "1", "--clients", "10", "--per-round", "2", "--test-samples", "20",
            "--root-size", "10", "--data-dir", str(data_root), "--no-progress", "--no-cache"]
    assert cli.main(base + ["--defense", "ours", "--risk-every", "7", "--json", str(out)]) == 0
    assert "risk_every=7" in json.loads(out.read_text())["defense"]
    assert cli.main(base + ["--defense", "gc", "--risk-every", "7"]) == 2
    assert "--risk-every applies to --defense ours only" in capsys.readouterr().err
