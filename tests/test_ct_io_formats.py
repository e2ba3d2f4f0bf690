"""Reading every input format (projects.lung_nodule.ct.io): .mhd, NIfTI (LPS and RAS
storage), NRRD and DICOM series give the same HU and the same world positions; DICOM
folders with several series, non-CT, truncated and foreign files give clear errors.
"""
import gc
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from projects.lung_nodule.ct import (ScanReadError, find_dicom_series, read_scan, scan_id_for,
                                     scan_id_from_path, select_dicom_series)
from tests.scanner_inputs import (SECONDARY_CAPTURE, make_chest_phantom, nifti_sform, ras_voxel,
                                  truncate_file, write_dicom_series, write_dicom_study,
                                  write_nifti_ras, write_png, write_sitk_volume)

# In-plane spacings differ so that a swapped PixelSpacing (row spacing comes first) shows.
SPACING = (0.7, 0.8, 2.5)
ORIGIN = (-21.35, 7.9, -312.25)
VOXELS = [(0, 0, 0), (31, 0, 0), (0, 23, 0), (5, 7, 9), (31, 23, 9), (16, 12, 4)]


@pytest.fixture(scope='module')
def phantom():
    """A 10x24x32 chest with -3024 padding and the whole HU range a scan has."""
    ph = make_chest_phantom((10, 24, 32), SPACING, padding_hu=-3024, origin_xyz=ORIGIN,
                            noise_hu=30.0, seed=1)
    volume = ph.volume.copy()
    volume[5, 12, 16] = 2500  # cortical bone / contrast: the top of the stored range
    return volume


def _world(scan, index_xyz):
    return scan.geometry.index_to_world(index_xyz)


def test_same_volume_in_every_format_reads_alike(tmp_path, phantom):
    """.mhd, .nii.gz, .nrrd and a DICOM series: same int16 HU array, same geometry,
    same world position of each voxel (within 0.01 mm)."""
    paths = {
        'mhd': write_sitk_volume(phantom, SPACING, ORIGIN, tmp_path / 'case-1.mhd'),
        'nii.gz': write_sitk_volume(phantom, SPACING, ORIGIN, tmp_path / 'case-1.nii.gz'),
        'nrrd': write_sitk_volume(phantom, SPACING, ORIGIN, tmp_path / 'case-1.nrrd'),
    }
    written = write_dicom_series(phantom, SPACING, ORIGIN, tmp_path / 'dicom', padding_hu=-3024)
    paths['dicom'] = tmp_path / 'dicom'
    scans = {kind: read_scan(path) for kind, path in paths.items()}
    reference = scans['mhd']
    assert reference.array.min() == -3024 and reference.array.max() == 2500
    for kind, scan in scans.items():
        assert scan.array.dtype == np.int16, kind
        assert not scan.array.flags.writeable, kind
        np.testing.assert_array_equal(scan.array, phantom, err_msg=kind)
        assert scan.geometry.size_xyz == (32, 24, 10), kind
        np.testing.assert_allclose(scan.geometry.spacing_xyz, SPACING, atol=1e-4, err_msg=kind)
        np.testing.assert_allclose(scan.geometry.origin_xyz, ORIGIN, atol=1e-3, err_msg=kind)
        np.testing.assert_allclose(scan.geometry.direction, np.eye(3).ravel(), atol=1e-6)
        for voxel in VOXELS:
            np.testing.assert_allclose(_world(scan, voxel), _world(reference, voxel), atol=0.01,
                                       err_msg=f'{kind} voxel {voxel}')
    assert scans['mhd'].scan_id == scans['nii.gz'].scan_id == scans['nrrd'].scan_id == 'case-1'
    assert scans['dicom'].scan_id == written.series_uid
    assert scans['nrrd'].source_files == (paths['nrrd'],)
    # DICOM: the files in the array's z order, whatever their names and InstanceNumbers.
    assert scans['dicom'].source_files == written.files
    assert scans['dicom'].path == tmp_path / 'dicom'


def test_prone_dicom_series_matches_the_same_volume_as_mhd(tmp_path, phantom):
    """Patient prone (ImageOrientationPatient -1 0 0 0 -1 0): rows and columns run to
    the right and anterior; DICOM and .mhd agree on array, direction and world points."""
    prone = (-1, 0, 0, 0, -1, 0, 0, 0, 1)
    image = sitk.GetImageFromArray(phantom)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(prone)
    sitk.WriteImage(image, str(tmp_path / 'prone.mhd'))
    write_dicom_series(phantom, SPACING, ORIGIN, tmp_path / 'prone', direction=prone)
    mhd, dicom = read_scan(tmp_path / 'prone.mhd'), read_scan(tmp_path / 'prone')
    np.testing.assert_array_equal(dicom.array, mhd.array)
    np.testing.assert_allclose(dicom.geometry.direction, prone, atol=1e-6)
    for voxel in VOXELS:
        np.testing.assert_allclose(_world(dicom, voxel), _world(mhd, voxel), atol=0.01)


def test_array_outlives_the_scan_object(tmp_path, phantom):
    """``read_scan(path).array`` must not point into an image that was freed."""
    array = read_scan(write_sitk_volume(phantom, SPACING, ORIGIN, tmp_path / 'a.mhd')).array
    gc.collect()
    filler = [np.full(phantom.shape, 7, np.int16) for _ in range(8)]  # reuse freed memory
    np.testing.assert_array_equal(array, phantom)
    assert not array.flags.writeable and len(filler) == 8


def test_nifti_stored_in_ras_reads_flipped_with_the_same_world_points(tmp_path, phantom):
    path = write_nifti_ras(phantom, SPACING, ORIGIN, tmp_path / 'ras.nii.gz')
    sform = nifti_sform(path)
    # Stored in RAS order: index axes run to +R and +A (positive diagonal in RAS world).
    np.testing.assert_allclose(np.diag(sform)[:3], SPACING, atol=1e-5)
    mhd = read_scan(write_sitk_volume(phantom, SPACING, ORIGIN, tmp_path / 'lps.mhd'))
    scan = read_scan(path)
    assert scan.scan_id == 'ras'
    # ITK converts RAS to LPS: direction diag(-1, -1, 1); the array keeps the file's order.
    np.testing.assert_allclose(scan.geometry.direction, (-1, 0, 0, 0, -1, 0, 0, 0, 1), atol=1e-6)
    assert scan.geometry.flipped_axes == ('x', 'y')
    np.testing.assert_array_equal(scan.array, phantom[:, ::-1, ::-1])
    for voxel in VOXELS:
        np.testing.assert_allclose(_world(scan, ras_voxel(voxel, phantom.shape)),
                                   _world(mhd, voxel), atol=0.01, err_msg=str(voxel))
        i, j, k = ras_voxel(voxel, phantom.shape)
        assert scan.array[k, j, i] == mhd.array[voxel[2], voxel[1], voxel[0]]


def test_nifti_rescale_slope_intercept_gives_hu(tmp_path, phantom):
    """uint16 stored values with scl_inter = -1024 (unsigned scanner data kept as is)."""
    path = write_nifti_ras(phantom, SPACING, ORIGIN, tmp_path / 'stored.nii', stored_offset=3024)
    scan = read_scan(path)
    assert scan.array.dtype == np.int16
    np.testing.assert_array_equal(scan.array, phantom[:, ::-1, ::-1])


@pytest.mark.parametrize('intercept, padding, signed', [
    (-1024.0, -1024, False),  # unsigned 12-bit, padding = stored 0 (the most common)
    (-1024.0, -3024, True),   # signed, PixelPaddingValue -2000 (stored) = -3024 HU
    (0.0, -2048, True),       # signed HU stored directly, -2048 padding
    (-1000.0, -2000, True),   # another intercept, -2000 padding
])
def test_dicom_rescale_and_padding_values_come_through_unclipped(tmp_path, intercept, padding,
                                                                 signed):
    ph = make_chest_phantom((6, 20, 20), (1.5, 1.5, 5.0), padding_hu=padding)
    written = write_dicom_series(ph.volume, ph.spacing_xyz, ph.origin_xyz, tmp_path / 's',
                                 rescale_intercept=intercept, padding_hu=padding)
    import pydicom
    assert pydicom.dcmread(written.files[0]).PixelRepresentation == int(signed)
    scan = read_scan(tmp_path / 's')
    np.testing.assert_array_equal(scan.array, ph.volume)
    assert scan.array[0, 0, 0] == padding


def test_rescale_slope_gives_rounded_hu(tmp_path):
    ph = make_chest_phantom((4, 16, 16), (2.0, 2.0, 5.0), padding_hu=-2000)
    write_dicom_series(ph.volume, ph.spacing_xyz, ph.origin_xyz, tmp_path / 's',
                       rescale_intercept=-1024.0, rescale_slope=0.5)
    scan = read_scan(tmp_path / 's')
    assert scan.array.dtype == np.int16
    np.testing.assert_array_equal(scan.array, ph.volume)


def test_values_that_do_not_fit_int16_are_refused_not_wrapped(tmp_path):
    volume = np.zeros((3, 4, 5), dtype=np.float32)
    volume[1, 2, 3] = 40000.0
    path = write_sitk_volume(volume, (1, 1, 1), (0, 0, 0), tmp_path / 'huge.nii.gz')
    with pytest.raises(ScanReadError, match=r'huge\.nii\.gz: values 0\.\.40000 do not fit int16'):
        read_scan(path)


# ------------------------------------------------------------------ DICOM folders
@pytest.fixture()
def study(tmp_path):
    ph = make_chest_phantom((5, 16, 16), (2.0, 2.0, 5.0))
    sharp = make_chest_phantom((5, 16, 16), (2.0, 2.0, 5.0), noise_hu=40.0).volume
    folder = tmp_path / 'study'
    written = write_dicom_study(folder, [ph.volume, sharp], ph.spacing_xyz, ph.origin_xyz)
    (folder / 'README.txt').write_text('exported by a PACS\n')  # not DICOM: ignored
    return folder, written, (ph.volume, sharp)


def test_study_folder_lists_its_series_and_reads_the_one_asked_for(study):
    folder, written, volumes = study
    found = find_dicom_series(folder)
    assert [s.uid for s in found] == [w.series_uid for w in written]
    assert [s.description for s in found] == ['Thorax 1.0 B30f', 'Thorax 1.0 B70f']
    assert all(s.modality == 'CT' and not s.problem for s in found)
    assert [s.files for s in found] == [w.files for w in written]
    with pytest.raises(ScanReadError) as info:
        read_scan(folder)
    message = str(info.value)
    assert str(folder) in message and '2 DICOM series (2 CT volumes)' in message
    assert 'series_uid' in message
    for w in written:
        assert w.series_uid in message
    assert 'Thorax 1.0 B30f' in message and 'Thorax 1.0 B70f' in message and '5 files' in message
    for w, volume in zip(written, volumes):
        scan = read_scan(folder, series_uid=w.series_uid)
        assert scan.scan_id == w.series_uid and scan.source_files == w.files
        np.testing.assert_array_equal(scan.array, volume)
    with pytest.raises(ScanReadError, match=r'no series 1\.2\.3; the series found are'):
        read_scan(folder, series_uid='1.2.3')
    # Headers only: the id read_scan will give, and the files of the series it reads.
    assert scan_id_for(folder, written[1].series_uid) == written[1].series_uid
    assert select_dicom_series(folder, written[0].series_uid).files == written[0].files
    with pytest.raises(ScanReadError, match='2 DICOM series'):
        scan_id_for(folder)


def test_scout_and_dose_report_beside_the_scan_do_not_count(tmp_path):
    """A study export: the CT volume, a scout view (ImageType LOCALIZER) and a dose
    report screenshot (Secondary Capture, Modality CT). The folder reads as the volume."""
    ph = make_chest_phantom((5, 16, 16), (2.0, 2.0, 5.0))
    folder = tmp_path / 'export'
    scan_series = write_dicom_series(ph.volume, ph.spacing_xyz, ph.origin_xyz, folder,
                                     series_number=3, file_prefix='CT')
    write_dicom_series(ph.volume[:1], ph.spacing_xyz, ph.origin_xyz, folder, series_number=1,
                       description='Topogram 0.6 T80f', file_prefix='SCOUT',
                       image_type=('ORIGINAL', 'PRIMARY', 'LOCALIZER'))
    write_dicom_series(ph.volume[:1], ph.spacing_xyz, ph.origin_xyz, folder, series_number=501,
                       description='Dose Report', file_prefix='DOSE',
                       image_type=('DERIVED', 'SECONDARY', 'OTHER'),
                       sop_class_uid=SECONDARY_CAPTURE)
    found = find_dicom_series(folder)
    assert [s.is_ct_volume for s in found] == [False, True, False]
    assert 'CT localizer' in found[0].summary()
    scan = read_scan(folder)
    assert scan.scan_id == scan_series.series_uid
    np.testing.assert_array_equal(scan.array, ph.volume)
    # A second CT volume makes the choice ambiguous again.
    write_dicom_series(ph.volume, ph.spacing_xyz, ph.origin_xyz, folder, series_number=4,
                       file_prefix='SHARP')
    with pytest.raises(ScanReadError, match=r'4 DICOM series \(2 CT volumes\), pick one'):
        read_scan(folder)


def test_series_in_subfolders_and_one_file_of_a_series(tmp_path):
    ph = make_chest_phantom((5, 16, 16), (2.0, 2.0, 5.0))
    written = write_dicom_study(tmp_path / 'export', [ph.volume, ph.volume], ph.spacing_xyz,
                                ph.origin_xyz, subfolders=True)
    assert len(find_dicom_series(tmp_path / 'export')) == 2
    assert find_dicom_series(tmp_path / 'export', recursive=False) == []
    np.testing.assert_array_equal(read_scan(tmp_path / 'export' / 'SE3').array, ph.volume)
    scan = read_scan(written[1].files[2])  # one file: its series, from its folder
    assert scan.scan_id == written[1].series_uid and len(scan.source_files) == 5
    assert scan_id_for(written[1].files[2]) == scan.scan_id
    assert scan_id_for(tmp_path / 'export' / 'SE2') == written[0].series_uid


def test_non_ct_series_is_refused_naming_the_file(tmp_path):
    ph = make_chest_phantom((4, 16, 16), (2.0, 2.0, 5.0))
    written = write_dicom_series(ph.volume, ph.spacing_xyz, ph.origin_xyz, tmp_path / 'mr',
                                 modality='MR', description='T1 axial')
    with pytest.raises(ScanReadError, match=r'Modality MR, not CT') as info:
        read_scan(tmp_path / 'mr')
    assert str(written.files[0]) in str(info.value)


def test_truncated_dicom_file_is_named_and_other_series_stay_readable(study):
    folder, written, volumes = study
    victim = written[0].files[2]
    truncate_file(victim, victim.stat().st_size - 100)  # the end of the pixel data is lost
    with pytest.raises(ScanReadError, match='truncated, pixel data has 412 of 512 bytes') as info:
        read_scan(folder, series_uid=written[0].series_uid)
    assert str(victim) in str(info.value)
    np.testing.assert_array_equal(read_scan(folder, series_uid=written[1].series_uid).array,
                                  volumes[1])


def test_dicom_file_too_short_for_its_pixels_is_seen_from_the_header(tmp_path):
    ph = make_chest_phantom((4, 64, 64), (3.0, 3.0, 5.0))
    written = write_dicom_series(ph.volume, ph.spacing_xyz, ph.origin_xyz, tmp_path / 's')
    truncate_file(written.files[1], 3000)  # header intact, 8192 bytes of pixels promised
    (series,) = find_dicom_series(tmp_path / 's')
    assert series.problem.startswith(f'{written.files[1]}: truncated, 3000 bytes cannot hold')
    assert 'unreadable' in series.summary()
    with pytest.raises(ScanReadError, match='3000 bytes cannot hold its 8192 bytes of pixel data'):
        read_scan(tmp_path / 's')


def test_dicom_file_cut_inside_its_header_is_named(tmp_path):
    ph = make_chest_phantom((4, 16, 16), (2.0, 2.0, 5.0))
    written = write_dicom_series(ph.volume, ph.spacing_xyz, ph.origin_xyz, tmp_path / 's')
    truncate_file(written.files[1], 400)
    with pytest.raises(ScanReadError, match='damaged or truncated DICOM header') as info:
        read_scan(tmp_path / 's')
    assert str(info.value).startswith(str(written.files[1]))


def test_missing_and_duplicated_slices_are_named(tmp_path):
    ph = make_chest_phantom((6, 16, 16), (2.0, 2.0, 5.0))
    written = write_dicom_series(ph.volume, ph.spacing_xyz, ph.origin_xyz, tmp_path / 'gap')
    written.files[3].unlink()
    with pytest.raises(ScanReadError, match=r'10\.000 mm apart where the others are 5\.000 mm '
                                            r'\(missing slices') as info:
        read_scan(tmp_path / 'gap')
    assert str(written.files[2]) in str(info.value)
    written = write_dicom_series(ph.volume, ph.spacing_xyz, ph.origin_xyz, tmp_path / 'dup')
    (tmp_path / 'dup' / 'copy').write_bytes(written.files[4].read_bytes())
    with pytest.raises(ScanReadError, match='at the same position'):
        read_scan(tmp_path / 'dup')


@pytest.mark.parametrize('name', ['slice.dcm', 'scan.nii.gz', 'scan.mhd', 'scan.nrrd'])
def test_a_png_with_a_scan_name_is_refused_naming_it(tmp_path, name):
    path = write_png(tmp_path / name)
    with pytest.raises(ScanReadError) as info:
        read_scan(path)
    assert str(path) in str(info.value)


def test_folder_without_dicom_and_empty_folder(tmp_path):
    (tmp_path / 'pictures').mkdir()
    write_png(tmp_path / 'pictures' / 'IM0001')
    with pytest.raises(ScanReadError, match=r'no DICOM image series found among its 1 files'):
        read_scan(tmp_path / 'pictures')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ScanReadError, match=r'empty.*no DICOM image series found \(the folder '
                                            r'is empty\)'):
        read_scan(tmp_path / 'empty')
    with pytest.raises(ScanReadError, match='no such file or folder'):
        read_scan(tmp_path / 'absent')


def test_a_2d_image_is_refused(tmp_path):
    image = sitk.GetImageFromArray(np.zeros((8, 8), dtype=np.int16))
    sitk.WriteImage(image, str(tmp_path / 'flat.nrrd'))
    with pytest.raises(ScanReadError, match=r'flat\.nrrd: expected a 3D single-channel volume'):
        read_scan(tmp_path / 'flat.nrrd')


@pytest.mark.parametrize('path, expected', [
    ('subset0/1.3.6.1.4.1.14519.5.2.1.6279.6001.105756658031515062000744821260.mhd',
     '1.3.6.1.4.1.14519.5.2.1.6279.6001.105756658031515062000744821260'),
    ('data/patient_07.nii.gz', 'patient_07'),
    ('data/patient_07.NII', 'patient_07'),
    ('a/b/case.v2.nrrd', 'case.v2'),
    ('a/b/scan.mha', 'scan'),
    ('a/b/dicom_folder', 'dicom_folder'),
])
def test_scan_id_from_path(path, expected):
    assert scan_id_from_path(Path(path)) == expected
    if not path.endswith('folder'):
        assert scan_id_for(Path(path)) == expected  # files: no need to exist
