"""DLRM-DCNv2 (MLPerf Training v3.0 `dlrm_dcnv2`) on TorchRec.

FBGEMM's CPU kernels bring their own OpenMP runtime next to PyTorch's; with both
pools spin-waiting, each waits out the other's spinning threads, and a training
step on 2 CPU cores measured ~35x slower (1.9 s instead of 0.06 s). Passive
waiting must be chosen before either runtime starts, so it is set here, on
import of the package and before torch; an OMP_WAIT_POLICY already set wins.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
