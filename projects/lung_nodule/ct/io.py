"""Reading CT scans into an int16 HU array plus its geometry: MetaImage ``.mhd``/``.raw``
as LUNA16 ships them, NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``), a
folder holding a DICOM series, or any other 3D image SimpleITK reads.

Why a wrapper around SimpleITK: its readers do the decoding (MetaIO, NIfTI with its
``scl_slope``/``scl_inter``, GDCM with DICOM's RescaleSlope/RescaleIntercept, so pixel
values come out in HU; NIfTI's RAS is converted to ITK's LPS), but what goes wrong
with real files is reported badly or not at all:

* LUNA16 downloads are often partial (interrupted ``subset*.zip`` extractions leave
  truncated ``.raw`` files), and MetaIO's messages do not always name the file;
* a DICOM folder can hold several series (reconstruction kernels, phases, a scout),
  files that are not DICOM, truncated files, another modality, or missing slices; GDCM
  then silently reads one series, or stacks slices with a wrong z spacing.

So the header (``.mhd``) or every DICOM header (through pydicom, without the pixel data)
is checked first, and each problem raises :class:`ScanReadError` naming the file (and,
for a folder with several series, listing them), so a caller can skip that scan and go
on with the others. Pixel values are never clipped: padding outside the scanner's field
of view (-2048, -2000 or -3024 HU) comes through as it is, for the lung mask to handle.
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from .geometry import ScanGeometry

__all__ = ['CTScan', 'DicomSeries', 'ScanReadError', 'find_dicom_series', 'read_scan',
           'read_scan_geometry', 'scan_id_for', 'scan_id_from_path', 'select_dicom_series']

# MetaImage element types -> bytes per voxel (the ones a CT can come in).
_MET_BYTES = {'MET_CHAR': 1, 'MET_UCHAR': 1, 'MET_SHORT': 2, 'MET_USHORT': 2, 'MET_INT': 4,
              'MET_UINT': 4, 'MET_LONG': 8, 'MET_ULONG': 8, 'MET_FLOAT': 4, 'MET_DOUBLE': 8}

# File name endings whose removal gives the scan id (longest first: '.nii.gz' before '.gz').
_ID_SUFFIXES = ('.nii.gz', '.nii', '.nrrd', '.nhdr', '.mhd', '.mha')

_INT16_MIN, _INT16_MAX = int(np.iinfo(np.int16).min), int(np.iinfo(np.int16).max)

# Geometry tolerances of a DICOM series: orientation cosines, and slice gaps relative to
# the median gap (ITK's own warning threshold for non-uniform sampling is of this order).
_ORIENTATION_TOL = 1e-4
_SLICE_GAP_REL_TOL = 0.05

# SOP classes of CT slices (CT Image Storage, Enhanced CT Image Storage).
_CT_SOP_CLASSES = ('1.2.840.10008.5.1.4.1.1.2', '1.2.840.10008.5.1.4.1.1.2.1')


class ScanReadError(OSError):
    """A scan cannot be read; the message names the file (or folder) and the reason."""


@dataclass(frozen=True)
class CTScan:
    """A CT volume in Hounsfield units with its geometry.

    Attributes:
        array: int16 HU, shape ``(z, y, x)``, **read-only** (a view of ``image``'s
            buffer): derived arrays must be new arrays, never edits of the raw data.
        geometry: Size, spacing, origin and direction (all in x, y, z order).
        path: The file (or DICOM folder) it was read from.
        image: The SimpleITK image that owns ``array``'s memory.
        scan_id: The scan's name in outputs: the LUNA16 seriesuid (file stem) of an
            ``.mhd``, the SeriesInstanceUID of a DICOM series, the file name without
            ``.nii.gz``/``.nii``/``.nrrd`` otherwise. Left empty, it is derived from
            ``path`` by :func:`scan_id_from_path`.
        source_files: The files the voxels came from: for DICOM, one file per slice in
            the array's z order (``source_files[k]`` is slice ``array[k]``); otherwise
            ``(path,)``, which is also the default.
    """

    array: np.ndarray
    geometry: ScanGeometry
    path: Path
    image: sitk.Image
    scan_id: str = ''
    source_files: tuple[Path, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.scan_id:
            object.__setattr__(self, 'scan_id', scan_id_from_path(self.path))
        if not self.source_files:
            object.__setattr__(self, 'source_files', (Path(self.path),))


@dataclass(frozen=True)
class DicomSeries:
    """One DICOM image series found in a folder.

    Attributes:
        uid: SeriesInstanceUID.
        description: SeriesDescription ('' when absent).
        modality: Modality ('CT', 'MR', ...; '' when absent).
        series_number: SeriesNumber as written ('' when absent).
        files: One file per slice, sorted along the slice normal (the order of the
            array's z axis once read).
        problem: Why the series cannot be read as a volume (a truncated file, missing
            or duplicated slices, ...), naming the file; '' when it can.
        sop_class_uid: SOPClassUID of its first file.
        image_type: ImageType of its first file (e.g. ORIGINAL, PRIMARY, AXIAL).
    """

    uid: str
    description: str
    modality: str
    series_number: str
    files: tuple[Path, ...]
    problem: str = ''
    sop_class_uid: str = ''
    image_type: tuple[str, ...] = ()

    @property
    def is_ct_volume(self) -> bool:
        """CT slices that are not a localizer: what a CT scan is, as opposed to the
        scout views and dose-report screenshots a study export also holds."""
        return (self.modality == 'CT' and self.sop_class_uid in _CT_SOP_CLASSES
                and 'LOCALIZER' not in self.image_type)

    def summary(self) -> str:
        """One line for listings: uid, number, description, modality, file count."""
        number = f'#{self.series_number} ' if self.series_number else ''
        description = f'"{self.description}" ' if self.description else ''
        kind = self.modality or 'no modality'
        if self.modality == 'CT' and not self.is_ct_volume:
            kind += ' localizer' if 'LOCALIZER' in self.image_type else ' non-image object'
        damaged = ', unreadable' if self.problem else ''
        return f'{self.uid} ({number}{description}{kind}, {len(self.files)} files{damaged})'


@dataclass(frozen=True)
class _SliceHeader:
    """What a DICOM file's header says about its place in a series."""

    path: Path
    series_uid: str
    description: str
    modality: str
    series_number: str
    sop_class_uid: str
    image_type: tuple[str, ...]
    position: np.ndarray | None  # ImagePositionPatient (x, y, z), mm
    orientation: np.ndarray | None  # ImageOrientationPatient, 6 cosines
    shape: tuple[int, int]  # Rows, Columns
    pixel_spacing: tuple[float, float] | None  # (row spacing, column spacing)
    frames: int
    problem: str  # '' or why the pixel data cannot be read (file too short)


def scan_id_from_path(path: str | os.PathLike) -> str:
    """A file scan's id: its name without ``.nii.gz``/``.nii``/``.nrrd``/``.nhdr``/
    ``.mhd``/``.mha`` (any other suffix: the stem); a folder: its name.

    For an ``.mhd`` of LUNA16 that is the seriesuid. DICOM series get their
    SeriesInstanceUID instead, from :func:`read_scan`.
    """
    name = Path(path).name
    for suffix in _ID_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)]
    return Path(name).stem if Path(path).suffix else name


# ---------------------------------------------------------------------- MetaImage checks
def _parse_mhd_header(path: Path) -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        with open(path, 'rb') as handle:
            raw = handle.read(64 * 1024)
    except OSError as exc:
        raise ScanReadError(f'{path}: cannot open header ({exc.strerror or exc})') from exc
    try:
        text = raw.decode('ascii')
    except UnicodeDecodeError as exc:
        raise ScanReadError(f'{path}: header is not ASCII text, not a MetaImage header') from exc
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if '=' not in line:
            raise ScanReadError(f'{path}: header line {number} is not "Key = Value": {line!r}')
        key, value = line.split('=', 1)
        fields[key.strip()] = value.strip()
        if key.strip() == 'ElementDataFile':
            break
    return fields


def _check_metaimage(path: Path) -> None:
    """Header sanity and data-file size, before MetaIO reads (and maybe misreads) it."""
    fields = _parse_mhd_header(path)
    for key in ('NDims', 'DimSize', 'ElementType', 'ElementDataFile'):
        if key not in fields:
            raise ScanReadError(f'{path}: header has no {key} field')
    try:
        dims = [int(v) for v in fields['DimSize'].split()]
    except ValueError as exc:
        raise ScanReadError(f'{path}: bad DimSize {fields["DimSize"]!r}') from exc
    if len(dims) != 3 or fields['NDims'].strip() != '3' or min(dims) < 1:
        raise ScanReadError(f'{path}: expected a 3D volume, header says NDims={fields["NDims"]}, '
                            f'DimSize={fields["DimSize"]!r}')
    data_name = fields['ElementDataFile']
    if data_name == 'LOCAL' or data_name.startswith('LIST'):
        return  # data inside the header file, or a slice list: let MetaIO check it
    if fields.get('CompressedData', 'False').lower() == 'true':
        data_path = path.parent / data_name
        if not data_path.is_file():
            raise ScanReadError(f'{path}: data file {data_path} is missing')
        return  # compressed size is unknown in advance
    element_bytes = _MET_BYTES.get(fields['ElementType'])
    if element_bytes is None:
        raise ScanReadError(f'{path}: unsupported ElementType {fields["ElementType"]!r}')
    channels = int(fields.get('ElementNumberOfChannels', '1') or 1)
    data_path = path.parent / data_name
    try:
        actual = os.stat(data_path).st_size
    except FileNotFoundError as exc:
        raise ScanReadError(f'{path}: data file {data_path} is missing') from exc
    expected = int(np.prod(dims)) * element_bytes * channels + int(fields.get('HeaderSize', '0') or 0)
    if actual < expected:
        raise ScanReadError(f'{data_path}: truncated, {actual} bytes but the header '
                            f'{path.name} needs {expected} (DimSize {dims}, {fields["ElementType"]})')


# ---------------------------------------------------------------------- DICOM headers
def _is_dicom_file(path: Path) -> bool:
    """Part 10 files carry 'DICM' after a 128-byte preamble."""
    try:
        with open(path, 'rb') as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b'DICM'


def _floats(value: Any, count: int) -> np.ndarray | None:
    if value is None:
        return None
    try:
        out = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return out if out.shape == (count,) and np.all(np.isfinite(out)) else None


def _pixel_bytes(ds: Any) -> int:
    """Bytes of native (uncompressed) pixel data a header promises."""
    return (int(ds.Rows) * int(ds.Columns) * int(ds.get('SamplesPerPixel', 1) or 1)
            * int(ds.get('NumberOfFrames', 1) or 1) * int(ds.BitsAllocated) // 8)


def _is_compressed(ds: Any) -> bool:
    syntax = getattr(getattr(ds, 'file_meta', None), 'TransferSyntaxUID', None)
    return bool(syntax is not None and syntax.is_compressed)


def _read_slice_header(path: Path) -> _SliceHeader | None:
    """The header of one DICOM file (pixel data not read).

    Returns:
        ``None`` when the file is a DICOM object without an image (DICOMDIR, dose
        report, presentation state) or without a SeriesInstanceUID: not a slice. A file
        too short to hold its pixel data is reported in ``problem`` (the header still
        says which series it belongs to).

    Raises:
        ScanReadError: Not a DICOM file, or a header too damaged to read.
    """
    import pydicom  # only DICOM input needs it
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import UID

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except InvalidDicomError as exc:
        raise ScanReadError(f'{path}: not a DICOM file ({exc})') from exc
    except Exception as exc:  # pydicom raises many types on damaged files
        raise ScanReadError(f'{path}: damaged DICOM header ({type(exc).__name__}: {exc})') from exc
    if 'Rows' not in ds or not ds.get('SeriesInstanceUID'):
        sop_class = ds.get('SOPClassUID') or getattr(ds.get('file_meta'), 'MediaStorageSOPClassUID',
                                                     None)
        if sop_class is not None and 'Image Storage' in UID(str(sop_class)).name:
            raise ScanReadError(f'{path}: damaged or truncated DICOM header ({UID(sop_class).name} '
                                'without Rows or SeriesInstanceUID)')
        return None
    try:
        rows, cols, needed = int(ds.Rows), int(ds.Columns), _pixel_bytes(ds)
        frames = int(ds.get('NumberOfFrames', 1) or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ScanReadError(f'{path}: image pixel module incomplete ({exc})') from exc
    size = os.path.getsize(path)
    problem = ''
    if not _is_compressed(ds) and size < needed:
        problem = f'{path}: truncated, {size} bytes cannot hold its {needed} bytes of pixel data'
    spacing = _floats(ds.get('PixelSpacing'), 2)
    return _SliceHeader(
        path=path, series_uid=str(ds.SeriesInstanceUID),
        description=str(ds.get('SeriesDescription', '') or ''),
        modality=str(ds.get('Modality', '') or ''),
        series_number=str(ds.get('SeriesNumber', '') or ''),
        sop_class_uid=str(ds.get('SOPClassUID', '') or ''),
        image_type=tuple(str(v).upper() for v in (ds.get('ImageType') or ())),
        position=_floats(ds.get('ImagePositionPatient'), 3),
        orientation=_floats(ds.get('ImageOrientationPatient'), 6),
        shape=(rows, cols),
        pixel_spacing=None if spacing is None else (float(spacing[0]), float(spacing[1])),
        frames=frames, problem=problem)


def _damaged_file(files: tuple[Path, ...]) -> str:
    """Which file of a series GDCM failed on (its messages do not say): the first whose
    pixel data is cut short or cannot be parsed; '' when none is found."""
    import pydicom

    for path in files:
        try:
            ds = pydicom.dcmread(str(path))
            pixels = ds.PixelData
        except Exception as exc:  # a damaged file: any pydicom error
            return f'{path}: damaged DICOM file ({type(exc).__name__}: {exc})'
        if not _is_compressed(ds) and len(pixels) < _pixel_bytes(ds):
            return (f'{path}: truncated, pixel data has {len(pixels)} of {_pixel_bytes(ds)} '
                    'bytes')
    return ''


def _scan_folder(folder: Path, recursive: bool) -> dict[str, list[_SliceHeader]]:
    """Headers of the DICOM slices under ``folder`` grouped by SeriesInstanceUID (other
    files, not DICOM or DICOM without image data, are left out)."""
    if recursive:
        paths = sorted(Path(root) / name for root, _, names in os.walk(folder)
                       for name in names if not name.startswith('.'))
    else:
        paths = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith('.'))
    groups: dict[str, list[_SliceHeader]] = defaultdict(list)
    for path in paths:
        header = _read_slice_header(path) if _is_dicom_file(path) else None
        if header is not None:
            groups[header.series_uid].append(header)
    return groups


def _slice_normal(header: _SliceHeader) -> np.ndarray:
    """Unit normal of the slice plane: row cosines x column cosines (ITK's third
    direction column, so sorting along it gives the z order ITK's geometry assumes)."""
    normal = np.cross(header.orientation[:3], header.orientation[3:])
    return normal / np.linalg.norm(normal)


def _sorted_slices(uid: str, headers: list[_SliceHeader]) -> list[_SliceHeader]:
    """The series' slices along the slice normal, after checking they form a volume.

    Raises:
        ScanReadError: Naming the first file that does not fit.
    """
    first = headers[0]
    for header in headers:
        if header.position is None or header.orientation is None:
            raise ScanReadError(f'{header.path}: no ImagePositionPatient/ImageOrientationPatient, '
                                f'cannot place the slice in series {uid}')
        if header.shape != first.shape:
            raise ScanReadError(f'{header.path}: {header.shape[0]}x{header.shape[1]} pixels but '
                                f'{first.path.name} of the same series {uid} has '
                                f'{first.shape[0]}x{first.shape[1]}')
        if not np.allclose(header.orientation, first.orientation, atol=_ORIENTATION_TOL):
            raise ScanReadError(f'{header.path}: ImageOrientationPatient '
                                f'{list(header.orientation)} differs from {first.path.name} '
                                f'of the same series {uid}')
        if header.pixel_spacing != first.pixel_spacing:
            raise ScanReadError(f'{header.path}: PixelSpacing {header.pixel_spacing} differs from '
                                f'{first.path.name} of the same series {uid}')
    normal = _slice_normal(first)
    headers = sorted(headers, key=lambda h: float(h.position @ normal))
    if len(headers) == 1:
        what = (f'{first.frames} frames in one file (enhanced multi-frame DICOM is not supported)'
                if first.frames > 1 else 'a single slice, not a volume')
        raise ScanReadError(f'{first.path}: series {uid} is {what}')
    positions = np.array([h.position for h in headers])
    steps = np.diff(positions, axis=0)
    along = steps @ normal
    for k in np.flatnonzero(along < 1e-3)[:1]:
        raise ScanReadError(f'{headers[k].path} and {headers[k + 1].path.name}: two slices of '
                            f'series {uid} at the same position {list(headers[k].position)} '
                            '(several acquisitions or a duplicated file?)')
    gap = float(np.median(along))
    for k in np.flatnonzero(np.abs(along - gap) > _SLICE_GAP_REL_TOL * gap)[:1]:
        raise ScanReadError(f'{headers[k].path} and {headers[k + 1].path.name}: slices of series '
                            f'{uid} are {along[k]:.3f} mm apart where the others are {gap:.3f} mm '
                            '(missing slices or uneven spacing)')
    sideways = np.linalg.norm(steps - np.outer(along, normal), axis=1)
    if sideways.max() > 0.01 * gap + 1e-3:
        k = int(np.argmax(sideways))
        raise ScanReadError(f'{headers[k + 1].path}: series {uid} is sheared (slice positions move '
                            f'{sideways[k]:.3f} mm sideways per slice: gantry tilt), which a '
                            'volume with an orthonormal direction cannot represent')
    return headers


def _series_number_key(item: DicomSeries) -> tuple[int, str]:
    number = item.series_number
    return (int(number) if number.lstrip('-').isdigit() else 0, item.uid)


def find_dicom_series(folder: str | os.PathLike, recursive: bool = True) -> list[DicomSeries]:
    """The DICOM image series in a folder (and its sub-folders), sorted by series number.

    Only headers are read (pydicom, stopping before the pixel data). Files that are not
    DICOM, or DICOM objects without pixels (DICOMDIR, dose reports), are ignored. A
    series with a truncated file or slices that do not form a volume is listed with its
    ``problem``, so that the other series of the folder stay readable.

    Args:
        folder: The folder to search.
        recursive: Also search sub-folders (exported studies nest series in them).

    Returns:
        One :class:`DicomSeries` per SeriesInstanceUID, files in slice order.

    Raises:
        ScanReadError: ``folder`` is not a folder, or a DICOM file's header is too
            damaged to tell which series it belongs to.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ScanReadError(f'{folder}: not a folder')
    groups = _scan_folder(folder, recursive)
    series = []
    for uid, headers in groups.items():
        problem = next((h.problem for h in headers if h.problem), '')
        try:
            ordered = _sorted_slices(uid, headers)
        except ScanReadError as exc:
            ordered = sorted(headers, key=lambda h: h.path)
            problem = problem or str(exc)
        first = ordered[0]
        series.append(DicomSeries(uid=uid, description=first.description, modality=first.modality,
                                  series_number=first.series_number,
                                  files=tuple(h.path for h in ordered), problem=problem,
                                  sop_class_uid=first.sop_class_uid,
                                  image_type=first.image_type))
    return sorted(series, key=_series_number_key)


def select_dicom_series(path: str | os.PathLike, series_uid: str | None = None) -> DicomSeries:
    """The DICOM series :func:`read_scan` reads from ``path``, from headers only.

    Without ``series_uid``, the one CT volume among the series is taken: scout views
    (ImageType LOCALIZER), dose-report screenshots (Secondary Capture) and other
    modalities, which study exports put beside the scan, do not count. A single series
    is taken whatever it is (reading it then says what is wrong with it).

    Args:
        path: A folder (searched with its sub-folders) or one DICOM file (its series,
            from the files of its folder).
        series_uid: The series to take when there are several.

    Raises:
        ScanReadError: No DICOM image series; several and no ``series_uid`` (the
            message lists them and says how to pick one); no series ``series_uid``.
    """
    path = Path(path)
    if path.is_dir():
        folder = path
        series = find_dicom_series(folder)
        if not series:
            others = sum(1 for p in folder.rglob('*') if p.is_file())
            raise ScanReadError(f'{folder}: no DICOM image series found ' + (
                '(the folder is empty)' if not others else
                f'among its {others} files (none is a DICOM image); a folder input must hold '
                'a DICOM series, other scans are given as files (.mhd, .nii.gz, .nrrd)'))
    else:
        if not _is_dicom_file(path):
            raise ScanReadError(f'{path}: not a DICOM file (no "DICM" marker after the '
                                '128-byte preamble)')
        header = _read_slice_header(path)
        if header is None:
            raise ScanReadError(f'{path}: a DICOM object without image data')
        folder, series_uid = path.parent, series_uid or header.series_uid
        series = find_dicom_series(folder, recursive=False)
    listing = '\n'.join(f'  {item.summary()}' for item in series)
    if series_uid is not None:
        matches = [item for item in series if item.uid == series_uid]
        if not matches:
            raise ScanReadError(f'{folder}: no series {series_uid}; the series found are:\n'
                                f'{listing}')
        return matches[0]
    volumes = [item for item in series if item.is_ct_volume]
    if len(series) == 1 or len(volumes) == 1:
        return series[0] if len(series) == 1 else volumes[0]
    what = f'{len(volumes)} CT volumes' if volumes else 'no CT volume'
    raise ScanReadError(f'{folder}: {len(series)} DICOM series ({what}), pick one with '
                        f'series_uid (--series UID on the command line):\n{listing}')


def _is_dicom_input(path: Path) -> bool:
    """A folder (a DICOM series is the only folder input) or a DICOM file."""
    return path.is_dir() or _is_dicom_file(path)


def scan_id_for(path: str | os.PathLike, series_uid: str | None = None) -> str:
    """The ``scan_id`` :func:`read_scan` gives ``path``, without reading pixel data
    (to name outputs before reading, or to find finished ones when resuming).

    Raises:
        ScanReadError: For DICOM input, as :func:`select_dicom_series`.
    """
    path = Path(path)
    if _is_dicom_input(path):
        return select_dicom_series(path, series_uid).uid
    return scan_id_from_path(path)


def _read_dicom(path: Path, series_uid: str | None) -> tuple[sitk.Image, str, tuple[Path, ...]]:
    """Read one CT series from a folder (or the series of one DICOM file)."""
    chosen = select_dicom_series(path, series_uid)
    if chosen.problem:
        raise ScanReadError(chosen.problem)
    if chosen.modality != 'CT':
        raise ScanReadError(f'{chosen.files[0]}: series {chosen.uid} has Modality '
                            f'{chosen.modality or "(none)"}, not CT: HU values are only '
                            'defined for CT')
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in chosen.files])
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise ScanReadError(_damaged_file(chosen.files) or (
            f'{path}: SimpleITK cannot read series {chosen.uid} ({_first_line(exc)})')) from exc
    return image, chosen.uid, chosen.files


# ---------------------------------------------------------------------- reading
def _to_int16(image: sitk.Image, path: Path) -> sitk.Image:
    """Cast to int16 HU, refusing values that do not fit (nothing is clipped)."""
    if image.GetPixelID() == sitk.sitkInt16:
        return image
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(image)
    low, high = stats.GetMinimum(), stats.GetMaximum()
    if low < _INT16_MIN or high > _INT16_MAX:
        raise ScanReadError(f'{path}: values {low:g}..{high:g} do not fit int16 HU; '
                            'not a CT in Hounsfield units?')
    if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        # Rescaled values (slope 0.5, NIfTI scl_*) are rounded, not truncated towards 0.
        values = np.rint(sitk.GetArrayViewFromImage(image)).astype(np.int16)
        rounded = sitk.GetImageFromArray(values)
        rounded.CopyInformation(image)
        return rounded
    return sitk.Cast(image, sitk.sitkInt16)


def read_scan_geometry(path: str | os.PathLike) -> ScanGeometry:
    """Read only the header of a scan file: its geometry, without the pixel data.

    Raises:
        ScanReadError: The header cannot be read.
    """
    path = Path(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
        return ScanGeometry.from_reader(reader)
    except (RuntimeError, ValueError) as exc:
        raise ScanReadError(f'{path}: unreadable header ({_first_line(exc)})') from exc


def read_scan(path: str | os.PathLike, series_uid: str | None = None) -> CTScan:
    """Read a 3D CT scan as int16 HU with its geometry.

    LUNA16 ``.mhd`` files store ``MET_SHORT`` HU directly. DICOM stored values go
    through RescaleSlope/RescaleIntercept (SimpleITK's GDCM reader applies them), NIfTI
    through ``scl_slope``/``scl_inter``. Results of another type are cast to int16
    (float ones rounded) after checking that they fit, so that the rest of the pipeline
    never holds a float64 copy of a full volume. Nothing is clipped.

    The array is in the file's own voxel order, never reoriented; ``geometry`` (LPS
    world, as ITK and LUNA16 use) says where each voxel is. A NIfTI stored in RAS order
    (index axes towards patient right and anterior, as after nibabel's
    ``as_closest_canonical``) thus reads with direction ``diag(-1, -1, 1)``.

    Args:
        path: A ``.mhd`` file (checked for a complete ``.raw`` first), ``.nii``,
            ``.nii.gz``, ``.nrrd``, a folder holding a DICOM series (searched with its
            sub-folders), one DICOM file (its series is read from its folder), or any
            other 3D image SimpleITK reads.
        series_uid: For DICOM: the SeriesInstanceUID to read when the folder holds
            several series.

    Returns:
        The scan; ``array`` is read-only, shape ``(z, y, x)``.

    Raises:
        ScanReadError: Missing/truncated data file, unreadable header, not 3D, not CT
            (DICOM Modality), several DICOM series and no ``series_uid`` (the message
            lists them), slices that do not form a volume.
    """
    path = Path(path)
    if not path.exists():
        raise ScanReadError(f'{path}: no such file or folder')
    if _is_dicom_input(path):
        image, scan_id, source_files = _read_dicom(path, series_uid)
    else:
        if path.suffix.lower() == '.dcm':
            raise ScanReadError(f'{path}: not a DICOM file (no "DICM" marker after the '
                                '128-byte preamble)')
        if path.suffix.lower() == '.mhd':
            _check_metaimage(path)
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as exc:
            raise ScanReadError(f'{path}: SimpleITK cannot read it ({_first_line(exc)})') from exc
        scan_id, source_files = scan_id_from_path(path), (path,)
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ScanReadError(f'{path}: expected a 3D single-channel volume, got '
                            f'{image.GetDimension()}D with {image.GetNumberOfComponentsPerPixel()} '
                            'channels')
    image = _to_int16(image, path)
    try:
        geometry = ScanGeometry.from_image(image)
    except ValueError as exc:
        raise ScanReadError(f'{path}: bad geometry ({exc})') from exc
    array = _array_view(image)
    return CTScan(array=array, geometry=geometry, path=path, image=image, scan_id=scan_id,
                  source_files=source_files)


class _ImageBuffer:
    """Exposes an image's pixel buffer to numpy while holding the image alive.

    ``sitk.GetArrayViewFromImage`` returns a view that does not keep the image alive:
    ``read_scan(path).array`` would read freed memory once the temporary ``CTScan`` is
    collected. An array made from this object has it as its ``base``, hence the image.
    """

    def __init__(self, image: sitk.Image) -> None:
        self.image = image
        self.__array_interface__ = sitk.GetArrayViewFromImage(image).__array_interface__


def _array_view(image: sitk.Image) -> np.ndarray:
    """Read-only ``(z, y, x)`` view of ``image``'s pixels that keeps ``image`` alive."""
    array = np.asarray(_ImageBuffer(image))
    array.flags.writeable = False
    return array


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # ITK messages start with a file:line location; the last line is the useful one.
    return lines[-1] if lines else type(exc).__name__
