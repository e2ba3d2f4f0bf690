# ResNet-18 patch classifier sized for the demo on a 2-core CPU (tools/run_demo.py).
#
# The paper picks the Mask R-CNN backbone by training classifiers on 50x50
# nodule/normal patches; this is that step at CPU size. Everything is
# resnet18_1xb64_lung-patch.py (ImageNet-layout ResNet-18, mmdet's module names,
# Adam 1e-3, 3 grey channels, ImageNet mean/std, BGR->RGB like mmdet) except:
_base_ = './resnet18_1xb64_lung-patch.py'

# ResNet-18, not the paper's ResNet-101: 1.8 vs 7.8 GFLOPs at 224 px, so a few
# thousand patches per minute train on 2 cores; the Mask R-CNN that inherits
# this backbone (configs/lung/demo/) is also 4x cheaper per step.

# 8 epochs instead of 30 (about 3 minutes on 2 cores for the demo's 3,000
# training patches, 47 steps of 64 per epoch); the cosine decay spans them. The
# detector that starts from this backbone is the better for each epoch up to 8
# (650 detector steps, training seeds 0 and 2: test segm AP50 0.409 / 0.385 from a
# 2-epoch classifier, 0.471 / 0.446 from 5 epochs, 0.494 / 0.502 from 8; with
# CopyPaste, benchmarks/RESULTS.md), although the classifier's own validation
# accuracy is ~95.5 % from epoch 2 on: the detector gains from features trained
# longer, not from a better patch score.
# run_demo.py --patch-epochs changes both (train_cfg.max_epochs, param_scheduler.T_max).
# No validation while training (val_interval past the end): the demo measures
# the classifier once, on the test split, with tools/test.py.
train_cfg = dict(by_epoch=True, max_epochs=8, val_interval=1000)
param_scheduler = dict(type='CosineAnnealingLR', T_max=8, by_epoch=True, eta_min=1e-5)

# Keep only the last checkpoint (no "best" without validation): it is the
# backbone the detector starts from. Log every 10 of the 47 steps of an epoch.
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1, save_best=None))

# One loader worker each: the 2 cores are busy with the network itself, and
# persistent workers of three loaders would hold 6 processes.
train_dataloader = dict(num_workers=1, persistent_workers=True)
val_dataloader = dict(num_workers=1, persistent_workers=False)
test_dataloader = dict(num_workers=1, persistent_workers=False)
