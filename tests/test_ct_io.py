"""Reading scans, and the clear errors for damaged LUNA16 files (projects.lung_nodule.ct.io)."""
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from projects.lung_nodule.ct import ScanReadError, read_scan, read_scan_geometry


def _write(tmp_path: Path, name: str = 'scan', dtype=np.int16) -> Path:
    array = (np.arange(4 * 5 * 6).reshape(4, 5, 6) - 60).astype(dtype)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.8, 2.5))
    image.SetOrigin((-10.0, 20.0, -300.0))
    image.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
    path = tmp_path / f'{name}.mhd'
    sitk.WriteImage(image, str(path))
    return path


def test_read_scan_array_order_geometry_and_read_only(tmp_path):
    path = _write(tmp_path)
    scan = read_scan(path)
    assert scan.array.shape == (4, 5, 6) and scan.array.dtype == np.int16
    assert scan.array[1, 2, 3] == 1 * 30 + 2 * 6 + 3 - 60  # (z, y, x)
    assert scan.geometry.size_xyz == (6, 5, 4)
    assert scan.geometry.spacing_xyz == pytest.approx((0.7, 0.8, 2.5))
    assert scan.geometry.direction[0] == -1.0
    with pytest.raises(ValueError):
        scan.array[0, 0, 0] = 5  # raw data is never edited in place
    assert read_scan_geometry(path) == scan.geometry


def test_other_pixel_types_become_int16(tmp_path):
    scan = read_scan(_write(tmp_path, dtype=np.float32))
    assert scan.array.dtype == np.int16 and scan.array[0, 0, 1] == -59


def test_missing_raw_names_the_file(tmp_path):
    path = _write(tmp_path)
    path.with_suffix('.raw').unlink()
    with pytest.raises(ScanReadError, match=r'scan\.raw is missing'):
        read_scan(path)


def test_truncated_raw_names_the_file_and_sizes(tmp_path):
    path = _write(tmp_path)
    raw = path.with_suffix('.raw')
    raw.write_bytes(raw.read_bytes()[:100])
    with pytest.raises(ScanReadError, match=r'scan\.raw: truncated, 100 bytes .* needs 240'):
        read_scan(path)


@pytest.mark.parametrize('content, message', [
    (b'\x00\xff\x10garbage', 'not ASCII'),
    (b'this is not a header\n', 'not "Key = Value"'),
    (b'ObjectType = Image\nNDims = 3\nElementType = MET_SHORT\nElementDataFile = scan.raw\n',
     'no DimSize'),
    (b'NDims = 2\nDimSize = 5 6\nElementType = MET_SHORT\nElementDataFile = scan.raw\n',
     'expected a 3D volume'),
])
def test_unreadable_header_names_the_file(tmp_path, content, message):
    path = _write(tmp_path)
    path.write_bytes(content)
    with pytest.raises(ScanReadError, match=message) as info:
        read_scan(path)
    assert str(path) in str(info.value)


def test_no_such_file(tmp_path):
    with pytest.raises(ScanReadError, match='no such file'):
        read_scan(tmp_path / 'absent.mhd')
    with pytest.raises(ScanReadError, match='unreadable header'):
        read_scan_geometry(tmp_path / 'absent.mhd')
