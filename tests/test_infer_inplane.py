"""In-plane resampling of whole-scan inference: which scans are resampled, and masks
come back on the scan's own grid."""
import numpy as np
import pytest

from projects.lung_nodule.apis.inplane import RESAMPLE_RATIO_BAND, InPlaneResampling


@pytest.mark.parametrize('pixel_mm', [0.46, 0.7, 0.98])
def test_luna16_pixel_sizes_are_used_as_they_are(pixel_mm):
    assert InPlaneResampling.plan((pixel_mm, pixel_mm, 1.25), (512, 512), 0.7) is None


def test_far_pixel_sizes_are_resampled_per_axis():
    plan = InPlaneResampling.plan((3.0, 0.7, 5.0), (64, 128), 0.7)
    assert plan is not None and 3.0 / 0.7 > RESAMPLE_RATIO_BAND[1]
    assert plan.model_shape == (64, 549)  # rows keep 0.7 mm, columns 128 * 3 / 0.7
    assert InPlaneResampling.plan((3.0, 3.0, 5.0), (64, 64), None) is None
    with pytest.raises(ValueError, match='infer_pixel_spacing_mm'):
        InPlaneResampling.plan((3.0, 3.0, 5.0), (64, 64), -1.0)


def test_masks_come_back_on_the_scan_grid():
    plan = InPlaneResampling.plan((3.0, 3.0, 5.0), (64, 64), 0.7)
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 30) ** 2 + (xx - 20) ** 2 <= 6 ** 2
    image = (disc * 200).astype(np.uint8)[None]
    model_image = plan.to_model(image)
    assert model_image.shape == (1, *plan.model_shape)
    back = plan.to_scan(model_image > 100)
    assert back.shape == (1, 64, 64)
    assert (back[0] != disc).sum() <= 0.05 * disc.sum()
