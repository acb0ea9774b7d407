# CPU dry run of the same code on the synthetic dataset (make smoke BENCH=rnnt):
# 1 node x 1 process x 32 utterances; the debug model (encoder LSTM 128, prediction and joint 64) with the
# synthetic set's tokenizer. 2,047 training utterances / 32 = 63 steps per epoch; every epoch the EMA weights
# decode the 2,703 dev-clean utterances. Seed 1 reached WER 0.0555 at epoch 14 (6.5 min, ~15 s of training and
# ~12 s of evaluation an epoch on 2 cores); LR 0.004 left the WER at 1.0 for 3 epochs, LR 0.02 held diverged after
# epoch 9, LR 0.02 decayed x0.8 from epoch 7 was no faster (0.0631 at 13). Not yet swept over seeds.

## DL params
export MODEL_SIZE=debug
export BATCHSIZE=32
export EVAL_BATCHSIZE=256
export LR=0.01
export EPOCH=30
export WARMUP=1
export HOLD_EPOCHS=20
export LR_DECAY_POWER=0.9
export EMA=0.99
export DATALOADER_WORKERS=1
export DEVICE=cpu

## System run params
export DGXNNODES=1
export DGXNGPU=1
export DGXSYSTEM=$(basename "$(readlink -f "${BASH_SOURCE[0]}")" | sed 's/^config_//; s/\.sh$//')
export WALLTIME_MINUTES=20
export WALLTIME=$(( ${NEXP:-1} * WALLTIME_MINUTES + 5 ))
