"""close_distributed (projects.lung_nodule.engine): the tools' process group is destroyed
before exit, so a gloo rank does not abort in the interpreter's teardown."""
import torch.distributed as dist

from projects.lung_nodule.engine import close_distributed


def test_the_process_group_is_destroyed(tmp_path):
    dist.init_process_group('gloo', init_method=f'file://{tmp_path / "store"}', rank=0,
                            world_size=1)
    assert dist.is_initialized()
    close_distributed()
    assert not dist.is_initialized()


def test_without_a_process_group_nothing_happens():
    assert not dist.is_initialized()
    close_distributed()
    assert not dist.is_initialized()
