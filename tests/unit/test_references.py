import math

import torch

from forecast.evaluation.references import score_references
from forecast.models.baselines import Persistence, SeasonalNaive
from forecast.runs.summary import chosen_leads


class Windows(torch.utils.data.Dataset):
    def __init__(self, n=6, t=4, horizon=2, grid=(3, 5)):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, t, 1, *grid, generator=g)
        self.y = torch.randn(n, horizon, 1, *grid, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i], "start": torch.tensor(i)}


def test_references_scored_on_every_window_in_physical_units_and_latitude_weighted():
    data = Windows()
    nets = {"persistence2": Persistence(2, grid=(3, 5)), "daily": SeasonalNaive(2, 2, 4)}
    w = [0.5, 1.0, 1.5]
    out = score_references(nets, data, 4, 2, gridded=True, lat_weights=w, scale=[10.0])
    err = data.x[:, -1:] - data.y  # persistence, every window (two batches, the last short)
    assert math.isclose(out["test/persistence2_rmse_lead1"], float(err[:, 0].pow(2).mean().sqrt()),
                        rel_tol=1e-5)  # fmt: skip
    wmse = (err.pow(2) * torch.tensor(w)[:, None]).mean()  # weights have mean 1
    assert math.isclose(out["test/persistence2_rmse_lat_phys"], 10 * float(wmse.sqrt()),
                        rel_tol=1e-5)  # fmt: skip
    assert "test/daily_mae_lead2" in out
    assert not any("skill" in k or k.startswith("test/persistence2_persistence") for k in out)


def test_references_stop_at_the_runs_test_batch_limit():
    data = Windows()
    one = score_references({"p": Persistence(2)}, data, 2, 2, gridded=True, max_batches=1)
    err = data.x[:2, -1:] - data.y[:2]
    assert math.isclose(one["test/p_mse"], float(err.pow(2).mean()), rel_tol=1e-5)


def test_chosen_leads_every_lead_up_to_24_then_a_few():
    assert chosen_leads(12) == list(range(1, 13))
    assert chosen_leads(96) == [1, 2, 4, 8, 16, 32, 64, 96]


def test_summary_table_gives_leads_in_hours_beside_every_reference():
    from rich.console import Console

    from forecast.runs.summary import print_references
    from forecast.runs.train import TrainResult

    m = {}
    for k in (1, 2):
        for name, v in (("", 1.0), ("persistence_", 2.0), ("climatology_", 4.0)):
            m[f"test/{name}rmse_lat_phys_lead{k}"] = v * k
    console = Console(record=True, width=200)
    print_references(TrainResult(0.0, m, horizon=2, step_hours=6.0), console)
    text = console.export_text()
    assert "rmse_lat_phys" in text and "climatology" in text and "persistence" in text
    rows = [line.split("│")[1:-1] for line in text.splitlines() if line.startswith("│")]
    assert [r[0].strip() for r in rows] == ["6", "12"] and rows[1][-1].strip() == "0.500"


def test_skill_table_of_a_long_horizon_shows_the_chosen_leads_only():
    from rich.console import Console

    from forecast.runs.summary import print_summary
    from forecast.runs.train import TrainResult

    m = {"test/skill": 0.1, "test/mse": 0.4567, "test/mae": 0.4321}
    for k in range(1, 721):
        m |= {f"test/mse_lead{k}": 1.0, f"test/persistence_mse_lead{k}": 2.0,
              f"test/skill_lead{k}": 0.5}  # fmt: skip
    console = Console(record=True, width=200)
    print_summary(TrainResult(0.0, m, horizon=720), console)
    text = console.export_text()
    rows = [line.split("│")[1] for line in text.splitlines() if line.startswith("│")]
    assert [int(r) for r in rows] == chosen_leads(720) and len(rows) == 11
    assert "test MSE 0.4567   test MAE 0.4321" in text  # the figures papers report
