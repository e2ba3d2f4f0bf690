# Runtime of the patch classifiers (mmpretrain's default runtime, plus our
# package and a fixed seed so that every network of Table I sees the same
# initial shuffling and augmentation stream).

# use the registries of mmpretrain (models, datasets, transforms, metrics)
default_scope = 'mmpretrain'

# register our modules (ResNet20, PatchFolderDataset, BinaryAUC, ...)
custom_imports = dict(
    imports=['projects.lung_nodule.registry'], allow_failed_imports=False)

# configure default hooks
default_hooks = dict(
    # record the time of every iteration.
    timer=dict(type='IterTimerHook'),

    # print log every 20 iterations (an epoch of 4,800 patches is 75).
    logger=dict(type='LoggerHook', interval=20),

    # enable the parameter scheduler.
    param_scheduler=dict(type='ParamSchedulerHook'),

    # save a checkpoint per epoch, keep the latest one and the best on val.
    checkpoint=dict(
        type='CheckpointHook',
        interval=1,
        max_keep_ckpts=1,
        save_best='accuracy/top1',
        rule='greater'),

    # set sampler seed in distributed environment.
    sampler_seed=dict(type='DistSamplerSeedHook'),

    # validation results visualization, set True to enable it.
    visualization=dict(type='VisualizationHook', enable=False),
)

# configure environment
env_cfg = dict(
    # whether to enable cudnn benchmark
    cudnn_benchmark=False,

    # set multi process parameters
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),

    # set distributed parameters
    dist_cfg=dict(backend='nccl'),
)

# set visualizer
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)

# set log level
log_level = 'INFO'

# load from which checkpoint
load_from = None

# whether to resume training from the loaded checkpoint
resume = False

# a fixed seed: the comparison trains every network on the same stream
randomness = dict(seed=0, deterministic=False)
