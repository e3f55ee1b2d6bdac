"""Suite-wide settings.

One intra-op thread: CI and developer machines have 2 shared cores, and PyTorch's
OpenMP pool spin-waits; with two threads a busy neighbour slows small ops 20-fold.
"""

import torch

torch.set_num_threads(1)
