"""Namespace for OpenMMLab-style projects; see ``projects/lung_nodule``."""
