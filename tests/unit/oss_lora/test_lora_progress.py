"""The LoRA trainer reports step, loss, tokens/s and ETA as progress lines the CLI turns into a bar."""

from __future__ import annotations

from tuneloop import progress
from tuneloop.providers.oss_lora.config import LoraConfig
from tuneloop.providers.oss_lora.trainer import train


def test_training_prints_parseable_progress_with_loss_rate_and_eta(tiny_base, topic_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(progress.INTERVAL_ENV, "0")  # every step (the default throttles to one line per 5 s)
    cfg = LoraConfig(rank=4, alpha=8, batch_size=8, max_steps=12, max_seq_len=128, log_interval=4,
                     eval_interval=0, checkpoint_interval=0)
    train(cfg, topic_data.train[:80], [], base_model=tiny_base, run_dir=tmp_path / "run", log=lambda _: None)
    events = [e for e in map(progress.parse, capsys.readouterr().out.splitlines()) if e and e.label == "lora"]
    assert [e.done for e in events] == list(range(1, 13)) and {e.total for e in events} == {12}
    logged = [e for e in events if "loss" in e.values]
    assert logged[0].done == 4  # the first log window's numbers, then carried until the next
    assert all(e.values["loss"] > 0 and e.values["tokens_per_s"] > 0 for e in logged)
    assert all("eta_s" in e.values for e in events[1:]) and events[-1].values["eta_s"] == 0
    assert "ETA" in progress.render_bar(events[5]) and "tok/s" in progress.render_bar(events[5])
