"""Write a tiny COCO instance dataset laid out like ``data_prep/luna16_to_coco.py``'s.

Used by the tests that drive ``tools/train.py`` and ``tools/test.py``: a few grey
slices with bright discs (the "nodules") and their RLE masks, in
``ROOT/images/{train,val,test}/`` and ``ROOT/annotations/instances_{split}.json``.
"""
import json
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

SPLITS = ('train', 'val', 'test')


def _disc(size: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return ((yy - cy)**2 + (xx - cx)**2 <= r * r).astype(np.uint8)


def write_tiny_coco(root: Path, num_images: int = 2, size: int = 128, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / 'annotations').mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        img_dir = root / 'images' / split
        img_dir.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in range(num_images):
            img = rng.normal(60, 10, (size, size)).clip(0, 255).astype(np.uint8)
            file_name = f'{split}_{i:03d}.png'
            image_id = i + 1
            for j in range(2):
                cy, cx = rng.uniform(0.25 * size, 0.75 * size, 2)
                r = rng.uniform(6, 14)
                m = _disc(size, cy, cx, r)
                img[m > 0] = 200
                rle = mask_utils.encode(np.asfortranarray(m))
                rle['counts'] = rle['counts'].decode('ascii')
                annotations.append(
                    dict(
                        id=len(annotations) + 1,
                        image_id=image_id,
                        category_id=1,
                        segmentation=rle,
                        area=float(mask_utils.area(rle)),
                        bbox=[float(v) for v in mask_utils.toBbox(rle)],
                        iscrowd=0,
                        nodule_id=f'{split}-{i}-{j}',
                        diameter_mm=float(2 * r * 0.7)))
            cv2.imwrite(str(img_dir / file_name), img)
            images.append(
                dict(id=image_id, file_name=file_name, height=size, width=size,
                     seriesuid=f'tiny.{split}.{i}', z_index=0,
                     spacing_xyz=[0.7, 0.7, 1.25], origin_xyz=[0.0, 0.0, 0.0],
                     direction=[1, 0, 0, 0, 1, 0, 0, 0, 1]))
        coco = dict(images=images, annotations=annotations,
                    categories=[dict(id=1, name='nodule')])
        (root / 'annotations' / f'instances_{split}.json').write_text(json.dumps(coco))
    return root
