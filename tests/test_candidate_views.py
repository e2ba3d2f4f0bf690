"""Three orthogonal views through a candidate (ct.views): a nodule is round in all three,
a vessel along z a line in the coronal and sagittal ones, whatever the scan's axes."""
import numpy as np
import pytest

from projects.lung_nodule.ct import read_scan
from projects.lung_nodule.ct.views import orthogonal_views

from tests.scanner_inputs import _image

SPACING = (0.7, 0.7, 2.0)
ORIGIN = (-40.0, -30.0, -100.0)
SHAPE = (40, 96, 96)  # z, y, x: 80 x 67 x 67 mm
NODULE = np.array([-15.0, 5.0, -60.0])  # world mm, 8 mm across
VESSEL_XY = np.array([15.0, -5.0])  # a 3 mm tube along z


def _world_grid():
    z, y, x = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing='ij')
    return (ORIGIN[0] + x * SPACING[0], ORIGIN[1] + y * SPACING[1], ORIGIN[2] + z * SPACING[2])


def _phantom() -> np.ndarray:
    wx, wy, wz = _world_grid()
    volume = np.full(SHAPE, -850, dtype=np.int16)
    nodule = (wx - NODULE[0]) ** 2 + (wy - NODULE[1]) ** 2 + (wz - NODULE[2]) ** 2 <= 4.0 ** 2
    vessel = (wx - VESSEL_XY[0]) ** 2 + (wy - VESSEL_XY[1]) ** 2 <= 1.5 ** 2
    volume[nodule | vessel] = 40
    return volume


def _write(tmp_path, volume, origin, direction, name):
    import SimpleITK as sitk
    path = tmp_path / f'{name}.mhd'
    sitk.WriteImage(_image(volume, SPACING, origin, direction), str(path))
    return read_scan(path)


@pytest.fixture(scope='module')
def scan(tmp_path_factory):
    return _write(tmp_path_factory.mktemp('views'), _phantom(), ORIGIN, (1, 0, 0, 0, 1, 0, 0, 0, 1),
                  'plain')


def _bright(channel: np.ndarray) -> np.ndarray:
    return channel > 128  # soft tissue (40 HU) is ~151, lung (-850 HU) ~24


def test_nodule_is_round_in_all_three_views(scan):
    views = orthogonal_views(scan, [NODULE], size=32, mm_per_pixel=0.6)
    assert views.shape == (1, 32, 32, 3) and views.dtype == np.uint8
    for c in range(3):
        bright = _bright(views[0, ..., c])
        rows, cols = np.nonzero(bright)
        height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
        # 8 mm at 0.6 mm per pixel: ~13 px across; in z the 2 mm slices through the
        # sphere (centres at -62, -60, -58 mm on this column) show ~5 mm: 8-9 px
        assert 10 <= width <= 16, (c, width)
        assert (10 <= height <= 16) if c == 0 else (7 <= height <= 12), (c, height)
        assert bright[15:17, 15:17].all()  # centred


def test_vessel_is_a_disc_axially_and_a_line_in_the_other_views(scan):
    centre = [VESSEL_XY[0], VESSEL_XY[1], -60.0]
    views = orthogonal_views(scan, [centre], size=32, mm_per_pixel=0.6)[0]
    axial = _bright(views[..., 0])
    assert np.ptp(np.nonzero(axial)[0]) + 1 <= 7  # a 3 mm spot
    for c in (1, 2):  # coronal, sagittal: the tube crosses every row
        column = _bright(views[..., c])[:, 14:18]
        assert column.any(axis=1).all(), c
        assert _bright(views[..., c]).sum(axis=1).max() <= 7  # and is thin


def test_views_do_not_depend_on_the_scan_axes(tmp_path, scan):
    """The same anatomy stored with x flipped (direction -1, origin at the other end)
    gives the same views: they are sampled in world axes."""
    flipped = _phantom()[:, :, ::-1]
    origin = (ORIGIN[0] + (SHAPE[2] - 1) * SPACING[0], ORIGIN[1], ORIGIN[2])
    other = _write(tmp_path, flipped, origin, (-1, 0, 0, 0, 1, 0, 0, 0, 1), 'flipped')
    points = [NODULE, [VESSEL_XY[0], VESSEL_XY[1], -70.0], [0.0, 0.0, -80.0]]
    a = orthogonal_views(scan, points).astype(int)
    b = orthogonal_views(other, points).astype(int)
    assert np.abs(a - b).max() <= 1


def test_outside_the_volume_is_air(scan):
    corner = [ORIGIN[0], ORIGIN[1], ORIGIN[2]]  # the first voxel: 3/4 of each view is outside
    view = orthogonal_views(scan, [corner], size=32, mm_per_pixel=0.6)[0]
    assert (view[:10, :10, 0] == 0).all()  # -1024 HU and below -> 0


def test_bad_arguments_are_refused(scan):
    with pytest.raises(ValueError, match='not finite'):
        orthogonal_views(scan, [[0.0, np.nan, 0.0]])
    with pytest.raises(ValueError, match='size'):
        orthogonal_views(scan, [NODULE], size=0)


def test_views_of_a_ras_nifti_and_a_dicom_series_match_the_mhd(tmp_path, scan):
    """What hospitals and archives hand over: the same anatomy as a NIfTI stored in RAS
    order (direction diag(-1, -1, 1)) and as a scanner's DICOM series (rescaled stored
    values, shuffled file names) gives the views of the .mhd."""
    from tests.scanner_inputs import write_dicom_series, write_nifti_ras
    volume = _phantom()
    nifti = read_scan(write_nifti_ras(volume, SPACING, ORIGIN, tmp_path / 'ct.nii.gz'))
    assert np.diag(nifti.geometry.direction_matrix).tolist() == [-1.0, -1.0, 1.0]
    written = write_dicom_series(volume, SPACING, ORIGIN, tmp_path / 'dicom')
    dicom = read_scan(tmp_path / 'dicom')
    assert len(dicom.source_files) == len(written.files) == SHAPE[0]
    points = [NODULE, [VESSEL_XY[0], VESSEL_XY[1], -70.0], [5.0, 3.0, -85.0]]
    reference = orthogonal_views(scan, points).astype(int)
    for other in (nifti, dicom):
        # NIfTI keeps float32 geometry: sampling points move by < 1e-4 voxel
        assert np.abs(orthogonal_views(other, points).astype(int) - reference).max() <= 1
