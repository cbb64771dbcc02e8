"""Image-to-image datasets: standard folder layouts, eager validation, offline built-in sets."""
from gan.data.base import DatasetError, to_tensor, to_uint8
from gan.data.builtin import BUILTIN, default_root, list_builtin, prepare, resolve_dataset
from gan.data.datasets import (DATASETS, AlignedDataset, ClassFolderDataset, LabelsDataset, UnalignedDataset,
                               detect_layout, make_loader, open_dataset, read_classes)

__all__ = ["DatasetError", "AlignedDataset", "UnalignedDataset", "ClassFolderDataset", "LabelsDataset",
           "DATASETS", "BUILTIN", "open_dataset", "detect_layout", "read_classes", "make_loader",
           "list_builtin", "prepare", "resolve_dataset", "default_root", "to_tensor", "to_uint8"]
