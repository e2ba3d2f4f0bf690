"""The image dataset inside dataset wrappers, for tools that read a config's data.

The demo config's training set is mmdet's ``MultiImageMixDataset`` (it feeds
``CopyPaste`` a second image) around the LUNA16 slices. Tools that set a data root or
rebuild the pipeline (anchor coverage, the benchmarks' batches) need the dataset of
images itself, and the pipeline its images go through.
"""

__all__ = ['image_dataset']


def image_dataset(dataset_cfg) -> tuple:
    """``(the innermost dataset config, the pipeline its images go through)``.

    The config node is returned by reference (set fields on a copy). The pipeline is the
    inner dataset's, then each wrapper's, innermost first, as mmdet runs them.
    """
    pipeline = []
    while 'dataset' in dataset_cfg:
        pipeline = list(dataset_cfg.get('pipeline', [])) + pipeline
        dataset_cfg = dataset_cfg.dataset
    return dataset_cfg, list(dataset_cfg.get('pipeline', [])) + pipeline
