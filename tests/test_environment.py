"""The environment that tools/setup_env.sh builds has the compiled ops we rely on."""
import torch


def test_mmcv_ops_run_on_cpu():
    from mmcv.ops import RoIAlign, nms

    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [50., 50., 60., 60.]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]

    feats = torch.arange(16.).reshape(1, 1, 4, 4)
    rois = torch.tensor([[0., 0., 0., 4., 4.]])
    out = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=2, aligned=False)(feats, rois)
    assert out.shape == (1, 1, 2, 2)
    assert torch.allclose(out, torch.tensor([[[[3.75, 5.75], [11.75, 13.75]]]]))


def test_torchvision_nms_and_mmpretrain_import():
    from torchvision.ops import nms

    import mmpretrain  # imports torchvision itself
    keep = nms(torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 9.]]), torch.tensor([0.5, 0.9]),
               0.5)
    assert keep.tolist() == [1]
    assert mmpretrain.__version__ == '1.2.0'
