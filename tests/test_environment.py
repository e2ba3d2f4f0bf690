"""The environment that tools/setup_env.sh builds has the compiled ops we rely on."""
import torch


def test_mmcv_ops_run_on_cpu():
    from mmcv.ops import RoIAlign, nms

    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [50., 50., 60., 60.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]

    # mmcv's compiled RoIAlign agrees with torchvision's independent implementation
    from torchvision.ops import roi_align
    feats = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    rois = torch.tensor([[0., 1.5, 2., 9., 12.5], [0., 0., 0., 15., 15.]])
    out = RoIAlign((4, 4), spatial_scale=1.0, sampling_ratio=2, aligned=True)(feats, rois)
    ref = roi_align(feats, rois, (4, 4), spatial_scale=1.0, sampling_ratio=2, aligned=True)
    assert out.shape == (2, 3, 4, 4)
    assert torch.allclose(out, ref, atol=1e-5)


def test_torchvision_nms_and_mmpretrain_import():
    from torchvision.ops import nms

    import mmpretrain  # imports torchvision itself
    keep = nms(torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 9.]]), torch.tensor([0.5, 0.9]),
               0.5)
    assert keep.tolist() == [1]
    assert mmpretrain.__version__ == '1.2.0'
