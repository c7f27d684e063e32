r"""Reporting the results of experiments: what the example and benchmark
scripts share to turn runs into numbers, tables, plots and result files
(as :mod:`torch_geometric.profile` does for PyG's benchmarks).

* :mod:`~hsa_geo.experiments.summary`: mean and spread over seeds (standard
  deviation, Student-t 95% interval), runs grouped into summary rows;
* :mod:`~hsa_geo.experiments.paired`: two models compared seed by seed
  (paired t and Wilcoxon tests);
* :mod:`~hsa_geo.experiments.tables`: summary rows as markdown tables and
  what their time and memory columns mean;
* :mod:`~hsa_geo.experiments.plots`: learning curves, mean over seeds;
* :mod:`~hsa_geo.experiments.results`: result files and the facts of the
  machine and versions that made them.
"""
from hsa_geo.experiments.paired import paired_comparison, paired_table
from hsa_geo.experiments.plots import plot_curves
from hsa_geo.experiments.results import (
    device_name,
    load_result,
    provenance,
    provenance_note,
    save_json,
)
from hsa_geo.experiments.summary import SPREADS, mean_ci95, mean_std, summarise
from hsa_geo.experiments.tables import markdown_table, mean_std_text, measurement_note

__all__ = ['mean_std', 'mean_ci95', 'SPREADS', 'summarise', 'mean_std_text', 'markdown_table',
           'measurement_note', 'plot_curves', 'save_json', 'device_name', 'provenance',
           'paired_comparison', 'paired_table', 'load_result', 'provenance_note']
