import os

# Triton decides when it is first imported whether its kernels are compiled
# or interpreted; tests/test_triton.py runs them on the CPU in the
# interpreter, so this must precede every import of triton (the engine only
# uses the kernels on the CPU where HSA_GEO_TRITON_ON_CPU=1 asks for it).
os.environ.setdefault('TRITON_INTERPRET', '1')

import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

settings.register_profile('ci', max_examples=200, deadline=None, derandomize=True)
settings.register_profile('dev', max_examples=60, deadline=None)
settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'ci'))

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
