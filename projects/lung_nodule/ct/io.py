"""Reading CT scans (MetaImage ``.mhd``/``.raw`` as LUNA16 ships them, or anything
SimpleITK reads) into an int16 HU array plus its geometry.

Why a wrapper around ``sitk.ReadImage``: LUNA16 downloads are often partial or
damaged (interrupted ``subset*.zip`` extractions leave truncated ``.raw`` files), and
MetaIO's messages do not always name the file. :func:`read_scan` checks the header and
the size of the data file first, and raises :class:`ScanReadError` naming the file, so a
converter can skip that scan and go on with the others.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .geometry import ScanGeometry

__all__ = ['CTScan', 'ScanReadError', 'read_scan', 'read_scan_geometry']

# MetaImage element types -> bytes per voxel (the ones a CT can come in).
_MET_BYTES = {'MET_CHAR': 1, 'MET_UCHAR': 1, 'MET_SHORT': 2, 'MET_USHORT': 2, 'MET_INT': 4,
              'MET_UINT': 4, 'MET_LONG': 8, 'MET_ULONG': 8, 'MET_FLOAT': 4, 'MET_DOUBLE': 8}


class ScanReadError(OSError):
    """A scan file cannot be read; the message names the file and the reason."""


@dataclass(frozen=True)
class CTScan:
    """A CT volume in Hounsfield units with its geometry.

    Attributes:
        array: int16 HU, shape ``(z, y, x)``, **read-only** (a view of ``image``'s
            buffer): derived arrays must be new arrays, never edits of the raw data.
        geometry: Size, spacing, origin and direction (all in x, y, z order).
        path: The file it was read from.
        image: The SimpleITK image that owns ``array``'s memory.
    """

    array: np.ndarray
    geometry: ScanGeometry
    path: Path
    image: sitk.Image


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


def read_scan_geometry(path: str | os.PathLike) -> ScanGeometry:
    """Read only the header of a scan: its geometry, without the pixel data.

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


def read_scan(path: str | os.PathLike) -> CTScan:
    """Read a 3D CT scan as int16 HU with its geometry.

    LUNA16 ``.mhd`` files store ``MET_SHORT`` HU directly (no rescale slope/intercept).
    Other integer or float types are cast to int16 (values are HU already), so that the
    rest of the pipeline never holds a float64 copy of a full volume.

    Args:
        path: A ``.mhd`` file (checked for a complete ``.raw`` first) or any 3D image
            SimpleITK can read.

    Returns:
        The scan; ``array`` is read-only, shape ``(z, y, x)``.

    Raises:
        ScanReadError: Missing/truncated data file, unreadable header, not 3D.
    """
    path = Path(path)
    if not path.is_file():
        raise ScanReadError(f'{path}: no such file')
    if path.suffix.lower() == '.mhd':
        _check_metaimage(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise ScanReadError(f'{path}: SimpleITK cannot read it ({_first_line(exc)})') from exc
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ScanReadError(f'{path}: expected a 3D single-channel volume, got '
                            f'{image.GetDimension()}D with {image.GetNumberOfComponentsPerPixel()} '
                            'channels')
    if image.GetPixelID() != sitk.sitkInt16:
        image = sitk.Cast(image, sitk.sitkInt16)
    try:
        geometry = ScanGeometry.from_image(image)
    except ValueError as exc:
        raise ScanReadError(f'{path}: bad geometry ({exc})') from exc
    array = sitk.GetArrayViewFromImage(image)
    array.flags.writeable = False
    return CTScan(array=array, geometry=geometry, path=path, image=image)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # ITK messages start with a file:line location; the last line is the useful one.
    return lines[-1] if lines else type(exc).__name__
