# CPU dry run of the same code on the synthetic dataset (make smoke BENCH=rnnt):
# 1 node x 1 process x 16 utterances; the debug model (encoder LSTMs 1 + 1 layers of 128, prediction LSTM 1 x 64,
# joint 64) with the synthetic set's tokenizer. 2,047 training utterances / 16 = 127 steps per epoch; every epoch the
# EMA weights decode the 2,703 dev-clean utterances (read at the first evaluation, then replayed from memory: ~2 s
# of a ~10 s epoch on 2 cores). Sweep
# (docs/sweeps/rnnt.md, 2026-12-04, a 2-core Intel Xeon): all of seeds 1-20 reached WER <= 0.058, at epochs 7-17,
# median 1.38 min. The sweep of older code on an AMD machine (2026-12-02) had 19 of 20 at epochs 7-13 and seed 10
# left the WER-1.0 plateau late, ending at 0.076 after 20 epochs; in the 2026-12-03 dry run (AMD) it did again.
# Tried and rejected: batch 32 at LR 0.01 held 20 epochs (14 epochs, 6.5 min), batch 32 at LR 0.02 (11 epochs; LR
# 0.03 never left WER 1.0), batch 16 at LR 0.02 (diverged to WER 1.0 after epoch 4). EMA 0.9 (NVIDIA's 0.995 averages
# ~200 steps, about one of their epochs at global batch 1536; 0.99 here was one epoch slower to the target at batch
# 32).

## DL params
export MODEL_SIZE=debug
export BATCHSIZE=16
export EVAL_BATCHSIZE=256
export LR=0.01
export EPOCH=20
export WARMUP=1
export HOLD_EPOCHS=3
export LR_DECAY_POWER=0.8
export EMA=0.9
export DATALOADER_WORKERS=1
export DEVICE=cpu

## System run params
export DGXNNODES=1
export DGXNGPU=1
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=10
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 5 ))
