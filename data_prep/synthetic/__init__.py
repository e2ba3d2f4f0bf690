"""The synthetic LUNA16 generator's parts (the command line is
``data_prep/make_synthetic_luna16.py``).

* :mod:`.common`: truth records, canvas, distance helpers, atomic writers;
* :mod:`.basic`: the ``basic`` preset (the first version's scans, bit for bit);
* :mod:`.shapes`: lesion shapes, partial-volume occupancy, the measured long axis;
* :mod:`.anatomy`: the ``hard`` preset's chest, airways and vessels;
* :mod:`.hard`: the ``hard`` preset's scans (lesions, masses, scanner effects).
"""
