"""Scan-level splits (data_prep.common.assign_splits, --patient-map)."""
from collections import Counter

import pytest

from data_prep.common import assign_splits, read_patient_map, read_splits_csv, write_splits_csv

UIDS = [f'1.2.{i}' for i in range(20)]
POSITIVE = UIDS[:12]


def test_deterministic_covering_and_proportional():
    a = assign_splits(UIDS, (0.6, 0.2, 0.2), seed=3, positive=POSITIVE)
    assert a == assign_splits(list(reversed(UIDS)), (0.6, 0.2, 0.2), seed=3, positive=POSITIVE)
    assert set(a) == set(UIDS)
    assert Counter(a.values()) == {'train': 12, 'val': 4, 'test': 4}
    # stratified: nodule scans in every split
    assert Counter(a[u] for u in POSITIVE) == {'train': 7, 'val': 3, 'test': 2}
    assert a != assign_splits(UIDS, (0.6, 0.2, 0.2), seed=4, positive=POSITIVE)


def test_small_sets_still_fill_every_split():
    five = UIDS[:5]
    splits = assign_splits(five, (0.6, 0.2, 0.2), seed=0, positive=five[:3])
    assert Counter(splits.values()) == {'train': 3, 'val': 1, 'test': 1}


def test_patient_map_keeps_a_patient_together(tmp_path):
    path = tmp_path / 'patients.csv'
    path.write_text('seriesuid,patient_id\n' + ''.join(f'{u},p{i // 4}\n' for i, u in enumerate(UIDS)))
    patients = read_patient_map(path)
    for seed in range(5):
        splits = assign_splits(UIDS, (0.6, 0.2, 0.2), seed, POSITIVE, patients)
        for patient in set(patients.values()):
            assert len({splits[u] for u, p in patients.items() if p == patient}) == 1
    path.write_text('uid,patient\n1,2\n')
    with pytest.raises(ValueError, match='seriesuid,patient_id'):
        read_patient_map(path)


def test_bad_fractions_and_splits_csv_round_trip(tmp_path):
    with pytest.raises(ValueError, match='summing to 1'):
        assign_splits(UIDS, (0.5, 0.2, 0.2), 0)
    splits = assign_splits(UIDS, (1.0, 0.0, 0.0), 0)
    assert set(splits.values()) == {'train'}
    write_splits_csv(tmp_path / 'splits.csv', splits)
    assert read_splits_csv(tmp_path / 'splits.csv') == splits
    (tmp_path / 'bad.csv').write_text('seriesuid,split\n1.2.3,holdout\n')
    with pytest.raises(ValueError, match="line 2: split must be one of"):
        read_splits_csv(tmp_path / 'bad.csv')
