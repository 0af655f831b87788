"""Rank/world/master detection from torchrun and SLURM variables, node list parsing, config switch."""

from __future__ import annotations

from types import SimpleNamespace

from mlip.train.distributed import detect_env, expand_nodelist, launched_by_torchrun, wants_distributed


def test_torchrun_variables():
    env = detect_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "n1", "MASTER_PORT": "1234"})
    assert (env.rank, env.world_size, env.local_rank, env.master_addr, env.master_port, env.source) == (
        3, 8, 1, "n1", 1234, "torchrun")


def test_torchrun_wins_over_slurm():
    env = detect_env({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "SLURM_PROCID": "5", "SLURM_NTASKS": "9"})
    assert (env.rank, env.world_size, env.source) == (0, 2, "torchrun")


def test_slurm_variables_and_first_host():
    env = detect_env({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1",
                      "SLURM_NODELIST": "gpu[07-08],cpu1"})
    assert (env.rank, env.world_size, env.local_rank, env.source) == (5, 8, 1, "slurm")
    assert env.master_addr == "gpu07"
    assert env.master_port == 29500


def test_slurm_master_addr_override():
    env = detect_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_NODELIST": "a[1-2]", "MASTER_ADDR": "x",
                      "MASTER_PORT": "4000"})
    assert (env.master_addr, env.master_port) == ("x", 4000)


def test_no_variables_is_single_process():
    env = detect_env({})
    assert (env.rank, env.world_size, env.source) == (0, 1, "single")


def test_expand_nodelist():
    assert expand_nodelist("node1") == ["node1"]
    assert expand_nodelist("gpu[01-03,07]") == ["gpu01", "gpu02", "gpu03", "gpu07"]
    assert expand_nodelist("a[9-11],b2,c[1,3]") == ["a9", "a10", "a11", "b2", "c1", "c3"]


def test_wants_distributed():
    cfg = SimpleNamespace(distributed=False)
    assert not wants_distributed(cfg, {})
    assert wants_distributed(SimpleNamespace(distributed=True), {})
    torchrun = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}
    assert launched_by_torchrun(torchrun) and wants_distributed(cfg, torchrun)
    assert not launched_by_torchrun({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"})


def test_slurm_task_runs_cli_with_distributed_true(tmp_path, monkeypatch):
    """`mlip-train ... distributed=true` as one SLURM task (no torchrun variables): gloo group of size 1
    from SLURM_PROCID/SLURM_NTASKS/SLURM_NODELIST, training runs, the group is destroyed afterwards."""
    import torch.distributed as dist

    from dist_support import acac_files, free_port, tiny_config, write_config
    from mlip.cli.train import main

    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_LOCALID", "0")
    monkeypatch.setenv("SLURM_NODELIST", "localhost")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    files = acac_files(tmp_path, n_train=6, n_valid=2)
    cfg = tiny_config(files, tmp_path / "run", train={"max_epochs": 1, "batch_size": 3, "progress": False,
                                                      "plot": False})
    assert main(["--config", str(write_config(cfg, tmp_path / "c.yaml")), "distributed=true"]) == 0
    assert (tmp_path / "run" / "model.pt").is_file()
    assert not dist.is_initialized()
