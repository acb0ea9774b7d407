"""A synthetic Criteo 1TB in the reference's numpy layout, from a planted click model.

    python3 -m dlrm_dcnv2.synthetic DIR [--rows-per-day N] [--eval-rows N]

Days 0-22 (training) and day 23 (validation) are drawn from
`PlantedClickModel` and written with `dlrm_dcnv2.data.write_day`, so the
readers real runs use are the ones exercised; ids fit the debug model's tables.
`SYNTHETIC.json` (common.synthetic) records the Bayes-optimal validation AUC:
the ceiling any model can reach on this data.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from common import synthetic
from dlrm_dcnv2.config import HOTNESS, RULES
from dlrm_dcnv2.data import Rows, write_day
from dlrm_dcnv2.model import ModelShape


@dataclass(frozen=True)
class SyntheticSpec:
    """Sizes and strength of the planted model; ids fit the small model's tables (<= 1,000 rows)."""

    rows_per_day: int = 16_384
    eval_rows: int = 65_536
    seed: int = 0
    id_effect_std: float = 1.6  # std of one id's logit contribution, averaged over a feature's bag
    dense_effect_std: float = 0.5
    cross_effect_std: float = 0.8  # dense feature 0 x feature 2's id: a term only an interaction can fit
    bias: float = -1.0  # base rate ~30% clicks


class PlantedClickModel:
    """logit = bias + sum_j mean_k a_j[id_jk] + w . z + z_0 * c[id_{2,0}], z = standardised dense.

    Counts are log-normal (heavy-tailed like Criteo's), so log(x + 3) spreads them out.
    Feature j's per-id effects have std s * sqrt(hotness_j): every feature's bag mean
    contributes about s = id_effect_std / sqrt(26) to the logit.
    """

    def __init__(self, spec: SyntheticSpec, table_rows: Sequence[int]):
        rng = np.random.default_rng(spec.seed)
        self.spec, self.table_rows = spec, tuple(table_rows)
        per_feature = spec.id_effect_std / math.sqrt(len(table_rows))
        self.id_effects = [rng.normal(0, per_feature * math.sqrt(h), n) for n, h in zip(table_rows, HOTNESS)]
        self.dense_weights = rng.normal(0, spec.dense_effect_std, RULES.num_dense)
        self.cross = rng.normal(0, spec.cross_effect_std, table_rows[2])
        self.log_count_mean = rng.uniform(0.0, 4.0, RULES.num_dense)
        self.log_count_std = rng.uniform(0.5, 1.5, RULES.num_dense)
        reference = self._dense(rng, 100_000)
        self.dense_mean, self.dense_std = reference.mean(axis=0), reference.std(axis=0)

    def _dense(self, rng: np.random.Generator, n: int) -> np.ndarray:
        counts = np.floor(np.exp(rng.normal(self.log_count_mean, self.log_count_std, size=(n, RULES.num_dense))))
        return np.log(counts + 3.0).astype(np.float32)  # the reference's dense transform

    def sample(self, rng: np.random.Generator, n: int) -> tuple[Rows, np.ndarray]:
        dense = self._dense(rng, n)
        z = (dense - self.dense_mean) / self.dense_std
        sparse = [rng.integers(0, rows, size=(n, h), dtype=np.int32) for rows, h in zip(self.table_rows, HOTNESS)]
        logit = self.spec.bias + z @ self.dense_weights + z[:, 0] * self.cross[sparse[2][:, 0]]
        for ids, effects in zip(sparse, self.id_effects):
            logit += effects[ids].mean(axis=1)
        labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int32)
        return Rows(labels, dense, sparse), logit


def synthesize(root: Path, spec: SyntheticSpec = SyntheticSpec()) -> dict:
    """Days 0-22 (training) and day 23 (validation) from the planted model; returns the marker's content."""
    from torchmetrics.functional.classification import binary_auroc

    root = Path(root)
    model = PlantedClickModel(spec, ModelShape.small().table_rows)
    for day in (*RULES.train_days, RULES.eval_day):
        rng = np.random.default_rng([spec.seed, day])
        rows, logit = model.sample(rng, spec.eval_rows if day == RULES.eval_day else spec.rows_per_day)
        write_day(root, day, rows)
    # The best AUC any model can reach on this validation set: the planted probabilities' own.
    bayes_auc = float(binary_auroc(torch.from_numpy(logit), torch.from_numpy(rows.labels)))
    content = synthetic.write_marker(root, asdict(spec), train_rows=spec.rows_per_day * len(RULES.train_days),
                                     eval_rows=spec.eval_rows, click_rate=float(rows.labels.mean()),
                                     bayes_auc=bayes_auc, table_rows=list(ModelShape.small().table_rows))
    print(f"wrote synthetic DLRM data to {root}: {content['train_rows']} training rows, "
          f"{spec.eval_rows} validation rows, Bayes-optimal validation AUC {bayes_auc:.5f}")
    return content


def main(argv=None) -> int:
    return synthetic.command(__doc__, SyntheticSpec, synthesize, argv)


if __name__ == "__main__":
    raise SystemExit(main())
