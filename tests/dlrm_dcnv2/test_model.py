"""The DLRM-DCNv2 architecture: parameter count at full size, the cross layer's formula, sharded feature order."""
import math

import torch
from torchrec import KeyedJaggedTensor

from dlrm_dcnv2.config import HOTNESS, TABLE_ROWS
from dlrm_dcnv2.model import CrossNetwork, DLRMDCNv2, ModelShape, feature_names


def linear_params(widths, fan_in):
    total = 0
    for width in widths:
        total += fan_in * width + width
        fan_in = width
    return total


def test_full_model_on_meta_has_the_published_size():
    model = DLRMDCNv2(ModelShape.full(), device="meta")
    embeddings = sum(TABLE_ROWS) * 128
    bottom = linear_params([512, 256, 128], 13)
    interaction = 27 * 128
    cross = 3 * (interaction * 512 + 512 * interaction + interaction)  # V (no bias), U and bias per layer
    top = linear_params([1024, 1024, 512, 256, 1], interaction)
    assert sum(p.numel() for p in model.parameters()) == embeddings + bottom + cross + top
    assert 26.0e9 < embeddings < 26.2e9  # "~26 billion parameters, ~97 GiB in fp32"
    assert math.isclose(embeddings * 4 / 2**30, 97, abs_tol=1)
    assert all(p.device.type == "meta" for p in model.parameters())


def test_cross_layers_match_the_formula_on_a_hand_checked_input():
    # x_{l+1} = x0 * (U (V x_l) + b) + x_l with x0 = [1, 2], V = [[1, 1]], U = [[2], [0.5]], b = [0.1, -1]:
    # layer 1: V x0 = 3, U*3 + b = [6.1, 0.5], x0 * that + x0 = [7.1, 3.0]
    # layer 2: V x1 = 10.1, U*10.1 + b = [20.3, 4.05], x0 * that + x1 = [27.4, 11.1]
    cross = CrossNetwork(dim=2, rank=1, num_layers=2)
    with torch.no_grad():
        for layer in cross.layers:
            layer.down.weight.copy_(torch.tensor([[1.0, 1.0]]))
            layer.up.weight.copy_(torch.tensor([[2.0], [0.5]]))
            layer.up.bias.copy_(torch.tensor([0.1, -1.0]))
    out = cross(torch.tensor([[1.0, 2.0]]))
    torch.testing.assert_close(out, torch.tensor([[27.4, 11.1]]))


def test_small_model_pools_multi_hot_bags_by_sum_and_trains_every_parameter():
    shape = ModelShape.small()
    torch.manual_seed(0)
    model = DLRMDCNv2(shape)
    batch = 3
    ids = [torch.randint(0, rows, (batch * h,)) for rows, h in zip(shape.table_rows, HOTNESS)]
    kjt = KeyedJaggedTensor(keys=feature_names(), values=torch.cat(ids),
                            lengths=torch.tensor(HOTNESS).repeat_interleave(batch).int())
    logits = model(torch.randn(batch, 13), kjt)
    assert logits.shape == (batch,)
    logits.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    # feature 20 has 100 ids per sample: its pooled vector is the sum of their rows
    pooled = model.embeddings(kjt).to_dict()["cat_20"]
    table = model.embeddings.embedding_bags["t_cat_20"].weight
    torch.testing.assert_close(pooled[1], table[ids[20][100:200]].sum(0))
