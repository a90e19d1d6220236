"""benchmarks/bench.py runs and reports every figure (speed itself is never tested by timing)."""
import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_reports_ratios_memory_and_json(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench", os.path.join(ROOT, "benchmarks", "bench.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out_file = tmp_path / "bench.json"
    switch = os.environ.get("LSTM1997_GENERIC")
    bench.main(["--shape", "5", "2", "3", "4", "--json", str(out_file)])
    printed = capsys.readouterr().out
    assert "nn.LSTM time / lstm1997 time" in printed and "     5    2    3     4 |" in printed
    (result,) = json.loads(out_file.read_text())["results"]
    for key in ("ratio forward", "ratio train truncated", "ratio train exact",
                "ours / bare GEMMs forward", "ours / bare GEMMs train truncated"):
        assert result[key] > 0
    # The 1997 cell saves less than torch.nn.LSTM: 3 gate blocks and no second cell-state copy.
    assert 0 < result["saved bytes ours"] < result["saved bytes nn.LSTM"]
    (online,) = json.loads(out_file.read_text())["online"]
    assert "online learning (OnlineLSTM" in printed
    assert online["online 1 / truncated"] > 0 and online["online 10 / truncated"] > 0
    assert online["online 1 sliced in the loop / truncated"] > 0
    B, I, H = 2, 3, 4
    assert online["trace bytes"] == 4 * B * 2 * H * (I + H + 1)
    (feedback,) = json.loads(out_file.read_text())["gate_feedback"]
    assert "gate feedback: the same layer" in printed
    for key in ("forward with / without", "train truncated with / without",
                "train exact with / without"):
        assert feedback[key] > 0
    (generic,) = json.loads(out_file.read_text())["generic"]
    assert "the device-generic implementation" in printed
    for key in ("forward generic / kernels", "train truncated generic / kernels",
                "train exact generic / kernels"):
        assert generic[key] > 0
    assert os.environ.get("LSTM1997_GENERIC") == switch  # the generic table restores the switch


def test_paper_layers_table(tmp_path, capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench", os.path.join(ROOT, "benchmarks", "bench.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "PAPER_LAYERS", [(5, 1, 2, 4, 2)])
    switch = os.environ.get("LSTM1997_TINY_LAYER")
    out_file = tmp_path / "paper.json"
    bench.main(["--paper-layers", "--json", str(out_file)])
    printed = capsys.readouterr().out
    assert "the paper's layers (gate feedback" in printed and "     5    1    2     4  2 |" in printed
    (result,) = json.loads(out_file.read_text())["paper_layers"]
    for key in ("ratio forward", "ratio train truncated", "ratio train exact",
                "before / tiny train truncated"):
        assert result[key] > 0
    assert os.environ.get("LSTM1997_TINY_LAYER") == switch  # the table restores the switch


def test_cuda_table(tmp_path, capsys, monkeypatch):
    """--cuda: refused without a GPU; with one, a row per shape with its three ratios."""
    import pytest
    import torch

    spec = importlib.util.spec_from_file_location("bench", os.path.join(ROOT, "benchmarks", "bench.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            bench.main(["--cuda"])
        assert "--cuda needs a CUDA device" in capsys.readouterr().err
        return
    monkeypatch.setattr(bench, "CUDA_SHAPES", [(5, 2, 3, 4)])
    out_file = tmp_path / "cuda.json"
    bench.main(["--cuda", "--json", str(out_file)])
    assert "     5    2    3     4 |" in capsys.readouterr().out
    (result,) = json.loads(out_file.read_text())["cuda"]
    assert all(result[f"ratio {p}"] > 0 for p in ("forward", "train truncated", "train exact"))


def test_sequence_costs_table(capsys, monkeypatch):
    """benchmarks/sequence_costs.py: where a training sequence's time goes, one row per setting
    (short sequences here; the recorded run uses the paper's)."""
    import torch
    spec = importlib.util.spec_from_file_location(
        "sequence_costs", os.path.join(ROOT, "benchmarks", "sequence_costs.py"))
    costs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(costs)
    monkeypatch.setattr(costs, "SETTINGS", [("adding", {"T": 10}), ("long-lag", {"q": 5, "p": 5}),
                                            ("temporal-order", {"variant": "a"})])
    threads = torch.get_num_threads()
    costs.main(["--repeats", "3"])
    printed = capsys.readouterr().out
    assert torch.get_num_threads() == threads
    for label in ("adding T=10", "long-lag q=5 p=5", "temporal-order variant=a"):
        (row,) = [line for line in printed.splitlines() if line.startswith(label)]
        numbers = [float(v.rstrip("%")) for v in row[34:].replace("|", " ").split()]
        assert len(numbers) == 7 and all(n > 0 for n in numbers)


def test_online_step_parts_tables(capsys, monkeypatch):
    """benchmarks/online_step_parts.py: the one-step path's two ops and the chunk op, timed alone,
    a row per shape (small shapes and few calls here)."""
    spec = importlib.util.spec_from_file_location(
        "online_step_parts", os.path.join(ROOT, "benchmarks", "online_step_parts.py"))
    parts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(parts)
    monkeypatch.setattr(parts, "SHAPES", [(1, 3, 4), (2, 5, 3)])
    monkeypatch.setattr(parts, "CHUNK_STEPS", (1, 3))
    timed = parts.best_time
    monkeypatch.setattr(parts, "best_time", lambda call, calls=200: timed(call, 2))
    parts.main([])
    lines = capsys.readouterr().out.splitlines()
    one_step = [line for line in lines if line.startswith(("  1    3    4 |", "  2    5    3 |"))]
    chunks = [line for line in lines
              if line.startswith(("  1    3    4   1 |", "  1    3    4   3 |", "  2    5    3   1 |",
                                  "  2    5    3   3 |"))]
    assert len(one_step) == 2 and len(chunks) == 4
    for row in one_step + chunks:
        numbers = [float(v) for v in row.split("|", 1)[1].replace("|", " ").split()]
        times = numbers[:3] if row in one_step else numbers  # (the traces' MB rounds to 0.00 here)
        assert len(times) in (2, 3) and all(n > 0 for n in times)


def test_loading_the_benchmarks_leaves_the_import_path_alone():
    """Spawned processes (DistributedDataParallel's tests) inherit sys.path: a benchmark loaded
    by a test must not put the source tree, without its built extension, in front."""
    import sys
    before = list(sys.path)
    for name in ("bench", "sequence_costs", "online_step_parts"):
        spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "benchmarks", name + ".py"))
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert sys.path == before
