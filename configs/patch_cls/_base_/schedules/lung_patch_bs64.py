# schedule of the patch classifiers: the same for every network of Table I,
# trained from scratch (no pretrained weights) on one device, batch 64.

# optimizer: Adam copes with the mix of networks without per-network tuning
# (LeNet5's tanh, AlexNet and VGG16 without residuals, ResNets with BN).
optim_wrapper = dict(
    optimizer=dict(type='Adam', lr=1e-3, weight_decay=1e-4))

# learning policy: cosine decay over the whole run, stepped per epoch
param_scheduler = dict(
    type='CosineAnnealingLR', T_max=30, by_epoch=True, eta_min=1e-5)

# train, val, test setting: 30 epochs, validate after each one
train_cfg = dict(by_epoch=True, max_epochs=30, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# NOTE: `auto_scale_lr` is for automatically scaling LR,
# based on the actual training batch size.
auto_scale_lr = dict(base_batch_size=64)
