r"""Result files, and the facts of the machine and versions that made
them."""
from __future__ import annotations

import json
import os
import os.path as osp
import platform
import shlex
import sys
import time

import torch

__all__ = ['save_json', 'device_name', 'provenance', 'load_result', 'provenance_note']


def save_json(obj, path: str) -> None:
    r"""Writes :obj:`obj` to :obj:`path` as indented JSON, creating the
    folders on the way; scripts call it after every run, so an interrupted
    experiment keeps the runs it finished.

    Args:
        obj (dict or list): What to write (JSON types only).
        path (str): The file.
    """
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    # written beside and renamed over: a process killed while writing leaves
    # the previous file whole
    temporary = f'{path}.{os.getpid()}.tmp'
    with open(temporary, 'w') as f:
        json.dump(obj, f, indent=1)
    os.replace(temporary, path)


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
        ``{'command': str, 'commit': str or None, 'date': 'YYYY-MM-DD',
        'versions': {...}, 'machine': {...}}``, JSON types only; ``'commit'`` is the git commit
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
               'cpus': os.cpu_count(), 'torch_threads': torch.get_num_threads(),
               # how busy the machine was (1, 5 and 15 minutes): other
               # processes beside a timed run
               'load_average': [round(x, 2) for x in os.getloadavg()]
               if hasattr(os, 'getloadavg') else None}
    if torch.cuda.is_available():
        machine['gpus'] = [torch.cuda.get_device_name(i)
                           for i in range(torch.cuda.device_count())]
    if device is not None:
        machine['device'] = device_name(device)
    command = ' '.join(shlex.quote(a) for a in ['python'] + sys.argv)
    date = time.strftime('%Y-%m-%d', time.gmtime())
    return {'command': command, 'commit': _git_commit(), 'date': date, 'versions': versions,
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


def load_result(path: str) -> dict:
    r"""Reads a result file written by :func:`save_json`.

    Args:
        path (str): The file.

    Raises:
        ValueError: If :obj:`path` does not exist or does not hold a JSON
            object.
    """
    if not osp.isfile(path):
        raise ValueError(f"'path' must be a result file, found nothing at {path!r}")
    with open(path) as f:
        try:
            out = json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"'path' must hold JSON, {path!r} does not: {error}") from None
    if not isinstance(out, dict):
        raise ValueError(f"'path' must hold a JSON object, {path!r} holds a "
                         f"{type(out).__name__}")
    return out


def provenance_note(result: dict, path: str) -> str:
    r"""The line a generated results table carries under it: the result file
    it comes from and, from the file's ``'provenance'`` (:func:`provenance`),
    the command that made it, the commit, the device and the date.

    Args:
        result (dict): The result file's content.
        path (str): The file, as the reader should find it (relative to the
            repository root).

    Returns:
        A markdown line in italics.
    """
    facts = result.get('provenance')
    if not facts:
        return f'*From `{path}` (the file records no provenance).*'
    parts = [f"`{facts['command']}`"]
    machine = facts.get('machine', {})
    if machine.get('device'):
        parts.append(machine['device'])
    if facts.get('commit'):
        commit = facts['commit']
        parts.append(f"commit {commit[:10]}{'+changes' if commit.endswith('+changes') else ''}")
    if facts.get('date'):
        parts.append(facts['date'])
    load = machine.get('load_average')
    if load:
        parts.append(f'load average {load[0]:.1f} when written')
    return f"*From `{path}`: {', '.join(parts)}.*"
