"""RNN-T's size on `meta`, its initialisation, time stacking, the transducer loss against a float64 forward
recursion, and batched greedy decoding against the reference's one-utterance loop."""
import math

import numpy as np
import pytest
import torch

from rnnt.model import RNNTShape, build_rnnt, greedy_decode, rnnt_loss, stack_time


def lstm(inputs, hidden, layers):  # weights ih, hh and two biases of 4 gates per layer
    return sum(4 * hidden * ((inputs if i == 0 else hidden) + hidden) + 8 * hidden for i in range(layers))


def test_full_model_on_meta_has_the_references_parameter_count():
    with torch.device("meta"):
        model = build_rnnt()
    expected = (lstm(240, 1024, 2) + lstm(2048, 1024, 3) + 1023 * 512 + lstm(512, 512, 2)
                + (1024 * 512 + 512) + (512 * 512 + 512) + (512 * 1024 + 1024))
    assert sum(p.numel() for p in model.parameters()) == expected == 49_006_080
    assert model.joint_net[-1].out_features == 1024 and model.shape.blank == 1023
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.1, 0.1, 0.3, 0.3]
    assert (model.pre_rnn.lstm.dropout, model.post_rnn.lstm.dropout, model.dec_rnn.lstm.dropout) == (0.1, 0.1, 0.3)


def test_lstm_init_is_scaled_after_the_forget_bias_is_set():
    torch.manual_seed(0)
    model = build_rnnt(RNNTShape.debug(num_labels=30), init_scale=0.5)
    h = model.shape.enc_hidden
    lstm_ = model.pre_rnn.lstm
    assert torch.all(lstm_.bias_ih_l0[h:2 * h] == 0.5) and torch.all(lstm_.bias_hh_l0[h:2 * h] == 0)
    bound = 0.5 / math.sqrt(h)
    assert lstm_.weight_hh_l0.abs().max() <= bound and lstm_.weight_hh_l0.abs().max() > 0.9 * bound
    assert model.joint_enc.weight.abs().max() <= 1 / math.sqrt(h)  # linear layers keep PyTorch's default


def test_stack_time_joins_each_frame_with_the_next_and_keeps_every_other():
    x = torch.arange(5.0).view(5, 1, 1)
    y, lengths = stack_time(x, torch.tensor([5]), 2)
    assert y[:, 0].tolist() == [[0, 1], [2, 3], [4, 0]] and lengths.tolist() == [3]


def forward_recursion(logits, labels, blank):
    """-log P(labels | x) by the transducer's alpha recursion, float64 (Graves 2012)."""
    logp = torch.log_softmax(logits.double(), -1).numpy()
    T, U1 = logp.shape[:2]
    alpha = np.full((T, U1), -np.inf)
    alpha[0, 0] = 0.0
    for t in range(T):
        for u in range(U1):
            if t > 0:
                alpha[t, u] = np.logaddexp(alpha[t, u], alpha[t - 1, u] + logp[t - 1, u, blank])
            if u > 0:
                alpha[t, u] = np.logaddexp(alpha[t, u], alpha[t, u - 1] + logp[t, u - 1, labels[u - 1]])
    return -(alpha[T - 1, U1 - 1] + logp[T - 1, U1 - 1, blank])


def test_loss_is_the_mean_over_the_batch_of_each_utterances_negative_log_likelihood():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 4, 5)  # B, T, U + 1, labels + blank (blank = 4)
    labels = torch.tensor([[1, 2, 3], [0, 2, 0]])
    lengths, label_lengths = torch.tensor([6, 4]), torch.tensor([3, 2])
    expected = np.mean([forward_recursion(logits[0, :6, :4], [1, 2, 3], 4),
                        forward_recursion(logits[1, :4, :3], [0, 2], 4)])
    assert rnnt_loss(logits, lengths, labels, label_lengths, blank=4).item() == pytest.approx(expected, rel=1e-5)


def apex_importable() -> bool:
    try:
        import apex.contrib.transducer  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def loss_case():
    torch.manual_seed(0)
    return torch.randn(2, 6, 4, 5), torch.tensor([6, 4]), torch.tensor([[1, 2, 3], [0, 2, 0]]), torch.tensor([3, 2])


@pytest.mark.skipif(apex_importable(), reason="apex.contrib.transducer is installed here")
def test_the_apex_loss_without_apex_names_the_variable():
    logits, lengths, labels, label_lengths = loss_case()
    with pytest.raises(RuntimeError, match="TRANSDUCER_LOSS=apex: apex.contrib.transducer is not importable"):
        rnnt_loss(logits, lengths, labels, label_lengths, blank=4, implementation="apex")


@pytest.mark.skipif(not apex_importable(), reason="needs apex.contrib.transducer and a GPU (NVIDIA's container)")
def test_the_apex_loss_equals_torchaudios():
    logits, lengths, labels, label_lengths = (t.cuda() for t in loss_case())
    expected = rnnt_loss(logits, lengths, labels, label_lengths, blank=4)
    assert rnnt_loss(logits, lengths, labels, label_lengths, blank=4, implementation="apex").item() == \
        pytest.approx(expected.item(), rel=1e-5)


def reference_greedy(model, f, length, max_symbols=300, max_per_step=30):
    """The reference's decoder (rnnt/decoder.py), one utterance at a time, with NVIDIA's cap: it stops at
    `max_symbols` labels exactly (the reference checks its cap only when a frame starts)."""
    hidden, label = None, []
    for t in range(length):
        if len(label) >= max_symbols:
            break
        for _ in range(max_per_step):
            if label:
                g, new_hidden = model.predict(torch.tensor([[label[-1]]]), hidden, start=False)
            else:
                g, new_hidden = model.predict(None, hidden)
            k = int(model.joint(f[None, t:t + 1], g)[0, 0, 0].argmax())
            if k == model.shape.blank:
                break
            label.append(k)
            hidden = new_hidden
            if len(label) >= max_symbols:
                break
    return label


@pytest.mark.parametrize("max_symbols", [300, 3])
def test_batched_greedy_decoding_equals_the_one_utterance_loop(max_symbols):
    torch.manual_seed(1)
    model = build_rnnt(RNNTShape.debug(num_labels=6)).eval()
    with torch.no_grad():  # a bias towards labels, so that hypotheses are long and the symbol cap matters
        model.joint_net[-1].bias[:6] += 2.0
    features = torch.randn(40, 3, 240)
    lengths = torch.tensor([40, 25, 9])
    hypotheses = greedy_decode(model, features, lengths, max_symbols=max_symbols)
    f, f_lengths = model.encode(features, lengths)
    with torch.no_grad():
        expected = [reference_greedy(model, f[i], int(f_lengths[i]), max_symbols) for i in range(3)]
    assert hypotheses == expected
    assert max(map(len, hypotheses)) == (3 if max_symbols == 3 else max(map(len, expected))) > 0


def test_loss_gradients_equal_the_recursions():
    torch.manual_seed(1)
    logits = torch.randn(2, 5, 3, 4, dtype=torch.float64)  # blank = 3
    labels, lengths, label_lengths = torch.tensor([[0, 2], [1, 0]]), torch.tensor([5, 3]), torch.tensor([2, 1])
    ours = logits.clone().float().requires_grad_()
    rnnt_loss(ours, lengths, labels, label_lengths, blank=3).backward()
    expected = torch.zeros_like(logits)
    for b, (t, u) in enumerate([(5, 2), (3, 1)]):
        for index in np.ndindex(t, u + 1, 4):  # central differences of the float64 recursion
            step = torch.zeros(t, u + 1, 4, dtype=torch.float64)
            step[index] = 1e-6
            case = logits[b, :t, :u + 1]
            target = labels[b, :u].tolist()
            expected[(b, *index)] = (forward_recursion(case + step, target, 3) -
                                     forward_recursion(case - step, target, 3)) / 2e-6 / 2  # mean over 2
    assert torch.allclose(ours.grad.double(), expected, atol=1e-5)


class ScriptedModel:
    """A stand-in for RNNT in greedy decoding: encoder frame t asks for `due[b][t]` labels emitted by its end,
    the prediction network counts the labels fed to it, and the joint emits `script[b][count]` while the count
    is short of the frame's due, blank otherwise."""

    def __init__(self, script, due, labels=6):
        self.script, self.due = script, torch.tensor(due, dtype=torch.float32)
        self.shape = RNNTShape(num_labels=labels)

    def encode(self, features, lengths):
        return self.due[:, :, None], lengths

    def predict(self, labels, state=None, start=True):
        if labels is None:
            return torch.zeros(1, 1, 1), (torch.zeros(1, 1, 1),)
        count = state[0] + 1  # (1, B, 1)
        return count.transpose(0, 1), (count,)

    def joint(self, f, g):
        out = torch.full((f.shape[0], 1, 1, self.shape.num_labels + 1), -10.0)
        for b in range(f.shape[0]):
            count = int(g[b, 0, 0])
            k = self.script[b][count] if count < float(f[b, 0, 0]) else self.shape.blank
            out[b, 0, 0, k] = 10.0
        return out


def test_greedy_decoding_emits_a_scripted_sequence_within_the_per_frame_and_total_caps():
    script = [[1, 4, 4, 2], [3] * 40, [0, 5]]
    due = [[1, 1, 3, 4], [40, 40, 40, 40], [0, 0, 0, 2]]  # utterance 1 wants 40 labels at its first frame
    lengths = torch.tensor([4, 4, 3])  # utterance 2's last frame is padding: its labels never come
    got = greedy_decode(ScriptedModel(script, due), None, lengths)
    assert got == [[1, 4, 4, 2], [3] * 40, []]  # 30 in frame 0 (the per-frame cap), the other 10 in frame 1
    assert greedy_decode(ScriptedModel(script, due), None, lengths, max_symbols=5) == [[1, 4, 4, 2], [3] * 5, []]
