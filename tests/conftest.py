import os

import torch
from hypothesis import settings

settings.register_profile('ci', max_examples=200, deadline=None, derandomize=True)
settings.register_profile('dev', max_examples=60, deadline=None)
settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'ci'))

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
