r"""Result files, and the facts of the machine and versions that made
them."""
from __future__ import annotations

import json
import os
import os.path as osp
import platform
import shlex
import sys

import torch

__all__ = ['save_json', 'device_name', 'provenance']


def save_json(obj, path: str) -> None:
    r"""Writes :obj:`obj` to :obj:`path` as indented JSON, creating the
    folders on the way; scripts call it after every run, so an interrupted
    experiment keeps the runs it finished.

    Args:
        obj (dict or list): What to write (JSON types only).
        path (str): The file.
    """
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(obj, f, indent=1)


def device_name(device) -> str:
    r"""The name of :obj:`device` as a results table gives it.

    Args:
        device (torch.device or str): A CUDA device or the CPU.

    Returns:
        The GPU's name, or ``'CPU (N threads)'`` with torch's threads.
    """
    device = torch.device(device)
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"CPU ({threads} thread{'s' if threads != 1 else ''})"


def provenance(device=None) -> dict:
    r"""What a result file should record besides its arguments: the command
    that ran, the versions of Python and the libraries, and the machine.

    Args:
        device (torch.device or str, optional): The device the results were
            measured on, named under ``'machine'``. (default: :obj:`None`)

    Returns:
        ``{'command': str, 'commit': str or None, 'versions': {...},
        'machine': {...}}``, JSON types only; ``'commit'`` is the git commit
        of the running script's checkout, with ``'+changes'`` when its
        tracked files were edited.
    """
    import numpy
    import torch_geometric

    import hsa_geo
    versions = {'python': platform.python_version(), 'torch': torch.__version__,
                'torch_geometric': torch_geometric.__version__,
                'hsa_geo': hsa_geo.__version__, 'numpy': numpy.__version__,
                'cuda': torch.version.cuda}
    machine = {'platform': platform.platform(),
               'processor': platform.processor() or platform.machine(),
               'cpus': os.cpu_count(), 'torch_threads': torch.get_num_threads()}
    if torch.cuda.is_available():
        machine['gpus'] = [torch.cuda.get_device_name(i)
                           for i in range(torch.cuda.device_count())]
    if device is not None:
        machine['device'] = device_name(device)
    command = ' '.join(shlex.quote(a) for a in [osp.basename(sys.executable)] + sys.argv)
    return {'command': command, 'commit': _git_commit(), 'versions': versions,
            'machine': machine}


def _git_commit():
    r"""The commit of the checkout the running script lives in (with
    ``'+changes'`` when its tracked files differ from it), or :obj:`None`
    outside a git checkout."""
    import subprocess
    folder = osp.dirname(osp.abspath(sys.argv[0])) if sys.argv and sys.argv[0] else os.getcwd()
    try:
        head = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=folder, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'],
                               cwd=folder, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ('+changes' if dirty.stdout.strip() else '')
