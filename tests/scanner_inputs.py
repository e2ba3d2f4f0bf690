"""Builders of scan files as real scanners and conversion tools write them, for tests.

The point is to test the reader and the processing on what users will hand in, not on
what our own converters write: a DICOM series written slice by slice with the tags a
scanner sets (stored values plus RescaleSlope/RescaleIntercept, files in no particular
order, InstanceNumber running head to feet), a study folder holding several series,
NIfTI stored in RAS order (as nibabel's ``as_closest_canonical`` and many pipelines
leave it), NRRD, 3 mm in-plane voxels, 5-8 mm slices, and the padding outside the
scanner's circular field of view (-2048, -2000, -3024 HU); plus broken inputs
(truncated files, non-CT, a PNG with a scan's name, an empty folder).

The anatomy is deliberately simple (:func:`make_chest_phantom`: a body ellipse of soft
tissue, two ellipsoid lungs, air, padding outside a circle) and small, so tests are fast
and know the truth exactly. Volumes are ``(z, y, x)`` int16 HU with an axial LPS
geometry (identity direction), as a scanner's DICOM describes them.
"""
from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

__all__ = [
    'AIR_HU', 'BODY_HU', 'LUNG_HU', 'SECONDARY_CAPTURE', 'ChestPhantom', 'DicomSeriesWritten',
    'make_chest_phantom', 'nifti_sform', 'ras_voxel', 'truncate_file', 'write_dicom_series',
    'write_dicom_study', 'write_nifti_ras', 'write_png', 'write_sitk_volume',
]

BODY_HU = 40
LUNG_HU = -850
AIR_HU = -1000

CT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.2'
MR_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.4'
SECONDARY_CAPTURE = '1.2.840.10008.5.1.4.1.1.7'


@dataclass(frozen=True)
class ChestPhantom:
    """A small synthetic chest and the truth about it.

    Attributes:
        volume: int16 HU ``(z, y, x)``.
        lungs: bool ``(z, y, x)``, the two lungs as drawn.
        body: bool ``(z, y, x)``, inside the body outline (lungs included).
        fov: bool ``(z, y, x)``, inside the scanner's circular field of view; outside
            it the volume holds ``padding_hu``.
        spacing_xyz: Voxel size (mm), x, y, z.
        origin_xyz: World (LPS, mm) position of voxel (0, 0, 0).
        padding_hu: Value outside the field of view.
    """

    volume: np.ndarray
    lungs: np.ndarray
    body: np.ndarray
    fov: np.ndarray
    spacing_xyz: tuple[float, float, float]
    origin_xyz: tuple[float, float, float]
    padding_hu: int


def make_chest_phantom(shape_zyx: Sequence[int] = (24, 64, 64),
                       spacing_xyz: Sequence[float] = (3.0, 3.0, 6.0),
                       padding_hu: int = -2048,
                       origin_xyz: Sequence[float] | None = None,
                       noise_hu: float = 0.0, seed: int = 0) -> ChestPhantom:
    """A body ellipse (soft tissue) holding two ellipsoid lungs, air around it, and
    ``padding_hu`` outside a circle that touches the image's sides (the corners).

    Sizes are fractions of the image, so any shape/spacing gives a complete chest
    (3 mm voxels on 64 pixels: a 19 cm field of view). The lungs span the middle 80% of
    the slices; the first and last slices show body only.

    Args:
        shape_zyx: Volume shape.
        spacing_xyz: Voxel size (mm).
        padding_hu: Value outside the field-of-view circle.
        origin_xyz: World position of voxel 0; default centres x and y on the table
            axis and puts z at -350 mm (a negative table position, as scanners write).
        noise_hu: Standard deviation of Gaussian noise inside the field of view (a
            sharp reconstruction kernel); 0 for none.
        seed: Noise seed.
    """
    nz, ny, nx = (int(v) for v in shape_zyx)
    sx, sy, sz = (float(v) for v in spacing_xyz)
    if origin_xyz is None:
        origin_xyz = (-(nx - 1) * sx / 2, -(ny - 1) * sy / 2 + 20.0, -350.0)
    z = ((np.arange(nz) + 0.5) / nz - 0.5)[:, None, None]  # -0.5..0.5
    y = ((np.arange(ny) + 0.5) / ny - 0.5)[None, :, None]
    x = ((np.arange(nx) + 0.5) / nx - 0.5)[None, None, :]
    fov = np.broadcast_to(x ** 2 + y ** 2 <= 0.5 ** 2, (nz, ny, nx))
    body = np.broadcast_to((x / 0.44) ** 2 + (y / 0.32) ** 2 <= 1.0, (nz, ny, nx))
    lungs = np.zeros((nz, ny, nx), dtype=bool)
    for side in (-1, 1):
        lungs |= (((x - side * 0.2) / 0.14) ** 2 + ((y + 0.02) / 0.2) ** 2
                  + (z / 0.4) ** 2) <= 1.0
    volume = np.full((nz, ny, nx), AIR_HU, dtype=np.float32)
    volume[body] = BODY_HU
    volume[lungs] = LUNG_HU
    if noise_hu > 0:
        volume += np.random.default_rng(seed).normal(0.0, noise_hu, volume.shape).astype(np.float32)
    volume[~fov] = padding_hu
    return ChestPhantom(volume=np.rint(volume).astype(np.int16), lungs=lungs,
                        body=np.ascontiguousarray(body), fov=np.ascontiguousarray(fov),
                        spacing_xyz=(sx, sy, sz),
                        origin_xyz=tuple(float(v) for v in origin_xyz), padding_hu=padding_hu)


def _image(volume: np.ndarray, spacing_xyz: Sequence[float], origin_xyz: Sequence[float],
           direction: Sequence[float] = (1, 0, 0, 0, 1, 0, 0, 0, 1)) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume))
    image.SetSpacing(tuple(float(v) for v in spacing_xyz))
    image.SetOrigin(tuple(float(v) for v in origin_xyz))
    image.SetDirection(tuple(float(v) for v in direction))
    return image


def write_sitk_volume(volume: np.ndarray, spacing_xyz: Sequence[float],
                      origin_xyz: Sequence[float], path: Path) -> Path:
    """``.mhd`` (+ ``.raw``), ``.nii``/``.nii.gz`` or ``.nrrd`` with an identity
    direction, written by SimpleITK (the LUNA16 files' writer)."""
    sitk.WriteImage(_image(volume, spacing_xyz, origin_xyz), str(path))
    return Path(path)


def write_nifti_ras(volume: np.ndarray, spacing_xyz: Sequence[float],
                    origin_xyz: Sequence[float], path: Path,
                    stored_offset: int | None = None) -> Path:
    """The same anatomy as ``volume`` (LPS-ordered, identity direction) stored as a
    NIfTI in RAS order: the first index axis runs to the patient's right, the second
    to anterior (its sform is a positive diagonal), as after nibabel's
    ``as_closest_canonical`` or MONAI's ``Orientation('RAS')``.

    SimpleITK reads such a file with direction ``diag(-1, -1, 1)`` and the array
    flipped in x and y relative to ``volume``; :func:`ras_voxel` maps indices.

    Args:
        volume: int16 HU ``(z, y, x)``, index axes along L, P, S.
        spacing_xyz: Voxel size (mm).
        origin_xyz: LPS world position of ``volume``'s voxel (0, 0, 0).
        path: ``.nii`` or ``.nii.gz``.
        stored_offset: Store ``HU + stored_offset`` as uint16 with ``scl_inter =
            -stored_offset`` (how converters keep unsigned scanner data), instead of
            int16 HU.
    """
    nx, ny = volume.shape[2], volume.shape[1]
    sx, sy, _ = (float(v) for v in spacing_xyz)
    flipped = volume[:, ::-1, ::-1]
    # LPS world of the flipped array's voxel 0 = the original's voxel (nx-1, ny-1, 0).
    origin = (origin_xyz[0] + (nx - 1) * sx, origin_xyz[1] + (ny - 1) * sy, origin_xyz[2])
    path = Path(path)
    if stored_offset is not None:
        flipped = (flipped.astype(np.int32) + stored_offset).astype(np.uint16)
    plain = path.with_name(path.name[:-3]) if path.name.endswith('.gz') else path
    sitk.WriteImage(_image(flipped, spacing_xyz, origin, (-1, 0, 0, 0, -1, 0, 0, 0, 1)),
                    str(plain), False)
    if stored_offset is not None:
        data = bytearray(plain.read_bytes())
        data[112:120] = struct.pack('<ff', 1.0, float(-stored_offset))  # scl_slope, scl_inter
        plain.write_bytes(bytes(data))
    if plain != path:
        path.write_bytes(gzip.compress(plain.read_bytes()))
        plain.unlink()
    return path


def nifti_sform(path: Path) -> np.ndarray:
    """The 4x4 sform (RAS world, mm) of a NIfTI-1 file, read from its header bytes."""
    raw = Path(path).read_bytes()
    header = gzip.decompress(raw)[:348] if raw[:2] == b'\x1f\x8b' else raw[:348]
    rows = struct.unpack('<12f', header[280:328])
    return np.vstack([np.array(rows).reshape(3, 4), [0.0, 0.0, 0.0, 1.0]])


def ras_voxel(index_xyz: Sequence[int], shape_zyx: Sequence[int]) -> tuple[int, int, int]:
    """Index in the RAS-stored array (:func:`write_nifti_ras`) of an LPS-ordered voxel."""
    i, j, k = index_xyz
    return shape_zyx[2] - 1 - i, shape_zyx[1] - 1 - j, k


@dataclass(frozen=True)
class DicomSeriesWritten:
    """What :func:`write_dicom_series` wrote.

    Attributes:
        series_uid: SeriesInstanceUID.
        study_uid: StudyInstanceUID.
        files: One file per slice, in the volume's z order (``files[k]`` = ``volume[k]``).
    """

    series_uid: str
    study_uid: str
    files: tuple[Path, ...]


def _uid() -> str:
    from pydicom.uid import generate_uid
    return str(generate_uid())


def write_dicom_series(volume: np.ndarray, spacing_xyz: Sequence[float],
                       origin_xyz: Sequence[float], folder: Path, *,
                       rescale_intercept: float = -1024.0, rescale_slope: float = 1.0,
                       modality: str = 'CT', description: str = 'Thorax 1.0 B30f',
                       kernel: str = 'B30f', series_number: int = 2,
                       study_uid: str | None = None, frame_of_reference_uid: str | None = None,
                       series_uid: str | None = None, slice_thickness: float | None = None,
                       padding_hu: int | None = None, patient_id: str = 'PHANTOM-001',
                       file_prefix: str = 'IM', shuffle_seed: int = 0,
                       direction: Sequence[float] = (1, 0, 0, 0, 1, 0, 0, 0, 1),
                       image_type: Sequence[str] = ('ORIGINAL', 'PRIMARY', 'AXIAL'),
                       sop_class_uid: str | None = None) -> DicomSeriesWritten:
    """Write ``volume`` as a DICOM series, one file per slice, as a scanner does.

    Stored values are ``(HU - intercept) / slope``, unsigned (PixelRepresentation 0)
    when they are all >= 0, signed otherwise, with BitsStored 12 when they fit in 12
    bits. ImagePositionPatient/ImageOrientationPatient describe ``direction`` (identity:
    axial, head first supine); InstanceNumber counts from the head down (the reverse of z);
    file names (``<prefix>00001``, no extension, as many scanners write) are assigned
    in a shuffled order, so that neither name nor instance number gives the z order.

    Args:
        volume: HU ``(z, y, x)``.
        spacing_xyz: Voxel size (mm): PixelSpacing is ``[sy, sx]`` (row spacing first),
            the positions are ``sz`` apart.
        origin_xyz: LPS position of voxel (0, 0, 0).
        folder: Created if needed.
        rescale_intercept: RescaleIntercept (-1024 with unsigned storage is the most
            common; 0 with signed storage, as some vendors write).
        rescale_slope: RescaleSlope.
        modality: 'CT', or e.g. 'MR' (MR Image Storage, no rescale) for a non-CT series.
        description: SeriesDescription.
        kernel: ConvolutionKernel.
        series_number: SeriesNumber.
        study_uid: StudyInstanceUID (new when None); share it between series of a study.
        frame_of_reference_uid: FrameOfReferenceUID (new when None).
        series_uid: SeriesInstanceUID (new when None).
        slice_thickness: SliceThickness (default ``sz``).
        padding_hu: Also write PixelPaddingValue (stored value of this HU).
        patient_id: PatientID.
        file_prefix: File name prefix (two series in one folder need different ones).
        shuffle_seed: Seed of the file name order.
        direction: Direction matrix (row-major, ITK's ``GetDirection()``) of the volume;
            its third column must be the cross product of the first two (DICOM stacks
            slices along the slice normal), e.g. ``diag(-1, -1, 1)`` for a prone patient.
        image_type: ImageType (('ORIGINAL', 'PRIMARY', 'LOCALIZER') for a scout view).
        sop_class_uid: SOPClassUID; default CT (or MR) Image Storage, e.g.
            :data:`SECONDARY_CAPTURE` for a dose-report screenshot.

    Returns:
        The UIDs and the files in z order.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    nz, ny, nx = volume.shape
    sx, sy, sz = (float(v) for v in spacing_xyz)
    is_ct = modality == 'CT'
    if is_ct:
        stored = np.rint((volume.astype(np.float64) - rescale_intercept) / rescale_slope)
    else:
        stored = volume.astype(np.float64) - float(volume.min())
    signed = bool(stored.min() < 0)
    low, high = (-2048, 2047) if signed else (0, 4095)
    fits_12 = low <= stored.min() and stored.max() <= high
    bits_stored = 12 if fits_12 else 16
    stored = stored.astype(np.int16 if signed else np.uint16)
    study_uid = study_uid or _uid()
    series_uid = series_uid or _uid()
    frame_uid = frame_of_reference_uid or _uid()
    sop_class = sop_class_uid or (CT_IMAGE_STORAGE if is_ct else MR_IMAGE_STORAGE)
    matrix = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    if not np.allclose(np.cross(matrix[:, 0], matrix[:, 1]), matrix[:, 2]):
        raise ValueError(f'direction {tuple(direction)}: slices must stack along row x column')
    names = np.random.default_rng(shuffle_seed).permutation(nz)
    files = []
    for k in range(nz):
        sop_uid = _uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = 'ISO_IR 100'
        ds.ImageType = list(image_type)
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_uid
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = '20240115'
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = '101500'
        ds.AccessionNumber = 'ACC0001'
        ds.Modality = modality
        ds.Manufacturer = 'PHANTOM MEDICAL'
        ds.ManufacturerModelName = 'TestScan 64'
        ds.StudyDescription = 'CT THORAX'
        ds.SeriesDescription = description
        ds.PatientName = 'Phantom^Chest'
        ds.PatientID = patient_id
        ds.PatientBirthDate = '19600101'
        ds.PatientSex = 'O'
        ds.PatientPosition = 'HFS'
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = '1'
        ds.SeriesNumber = series_number
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = nz - k  # head (largest z) first
        position = np.asarray(origin_xyz, dtype=np.float64) + matrix[:, 2] * (k * sz)
        ds.ImagePositionPatient = [f'{v:.4f}' for v in position]
        ds.ImageOrientationPatient = [f'{v:g}' for v in (*matrix[:, 0], *matrix[:, 1])]
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ''
        ds.SliceLocation = f'{position[2]:.4f}'
        ds.SliceThickness = f'{slice_thickness if slice_thickness is not None else sz:g}'
        ds.PixelSpacing = [f'{sy:g}', f'{sx:g}']
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = 'MONOCHROME2'
        ds.Rows, ds.Columns = ny, nx
        ds.BitsAllocated = 16
        ds.BitsStored = bits_stored
        ds.HighBit = bits_stored - 1
        ds.PixelRepresentation = 1 if signed else 0
        if is_ct:
            ds.KVP = '120'
            ds.ConvolutionKernel = kernel
            ds.RescaleIntercept = f'{rescale_intercept:g}'
            ds.RescaleSlope = f'{rescale_slope:g}'
            ds.RescaleType = 'HU'
            ds.WindowCenter, ds.WindowWidth = '-600', '1500'
            if padding_hu is not None:
                ds.PixelPaddingValue = int(round((padding_hu - rescale_intercept) / rescale_slope))
        ds.PixelData = stored[k].astype('<i2' if signed else '<u2').tobytes()
        path = folder / f'{file_prefix}{names[k] + 1:05d}'
        ds.save_as(str(path), enforce_file_format=True)
        files.append(path)
    return DicomSeriesWritten(series_uid=series_uid, study_uid=study_uid, files=tuple(files))


def write_dicom_study(folder: Path, volumes: Sequence[np.ndarray], spacing_xyz: Sequence[float],
                      origin_xyz: Sequence[float], kernels: Sequence[str] = ('B30f', 'B70f'),
                      subfolders: bool = False) -> list[DicomSeriesWritten]:
    """Several series of one study (e.g. a soft and a sharp reconstruction kernel of the
    same acquisition): one StudyInstanceUID and FrameOfReferenceUID, one series each.

    Args:
        folder: The study folder.
        volumes: One HU volume per series (same shape).
        spacing_xyz, origin_xyz: Shared geometry.
        kernels: ConvolutionKernel per series; descriptions are 'Thorax 1.0 <kernel>'.
        subfolders: Each series in its own sub-folder (``SE<n>/``), as PACS exports do;
            otherwise all files side by side in ``folder``.
    """
    study_uid, frame_uid = _uid(), _uid()
    written = []
    for number, (volume, kernel) in enumerate(zip(volumes, kernels), start=2):
        target = Path(folder) / f'SE{number}' if subfolders else Path(folder)
        written.append(write_dicom_series(
            volume, spacing_xyz, origin_xyz, target, description=f'Thorax 1.0 {kernel}',
            kernel=kernel, series_number=number, study_uid=study_uid,
            frame_of_reference_uid=frame_uid, file_prefix=f'S{number}IM',
            shuffle_seed=number))
    return written


def write_png(path: Path, size: int = 16) -> Path:
    """A real PNG picture (a gradient) at ``path``, whatever its name says."""
    image = sitk.GetImageFromArray(np.tile(np.arange(size, dtype=np.uint8) * 8, (size, 1)))
    png = Path(path).with_name(Path(path).name + '.png')
    sitk.WriteImage(image, str(png))
    png.replace(path)
    return Path(path)


def truncate_file(path: Path, keep_bytes: int) -> Path:
    """Cut a file to its first ``keep_bytes`` bytes (an interrupted copy)."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:keep_bytes])
    return Path(path)
