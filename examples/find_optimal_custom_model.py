"""find_optimal on a model that is not a language model: a tiny Vision Transformer classifying
synthetic 8x8 images (flops-fit v1.0 said "works with any PyTorch model"; this shows it).

Each image is cut into 16 patches of 2x2 binary pixels; a patch's 4 bits are its id (0..15),
so a dataset item is ``(patch_ids (16,) LongTensor, class label)``, the shape find_optimal
reads. **D counts patches** (16 per image; images = D / 16) and the FLOPs convention is C = 6·N·D
(Kaplan et al. 2020's forward + backward estimate): every patch token passes through every
weight matrix of the encoder, as a text token does through a decoder; the class head runs
once per image, not per patch, so 6·N·D slightly overcounts it. The loss is cross-entropy
over the 4 classes (a loss_fn, not next-token prediction), on a held-out tail of the data::

    python examples/find_optimal_custom_model.py --smoke-test     # a minute on a laptop
    python examples/find_optimal_custom_model.py --budgets 1e9 3e9 1e10 --storage-path runs
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch import nn

PATCHES, CLASSES = 16, 4


class TinyViT(nn.Module):
    """Patch-id embedding + learned positions, one Transformer encoder layer, mean pool, head."""

    def __init__(self, width: int, depth: int = 1):
        super().__init__()
        self.embed = nn.Embedding(16, width)
        self.pos = nn.Parameter(torch.zeros(PATCHES, width))
        layer = nn.TransformerEncoderLayer(width, nhead=1, dim_feedforward=2 * width, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.head = nn.Linear(width, CLASSES)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, patch_ids: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.embed(patch_ids) + self.pos)
        return self.head(h.mean(dim=1))


class BarImages(torch.utils.data.Dataset):
    """8x8 binary images: class k is a bright bar on rows 2k..2k+1, plus 10% flipped pixels."""

    def __init__(self, n: int = 4096, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, CLASSES, (n,), generator=g)
        img = (torch.rand(n, 8, 8, generator=g) < 0.1).long()
        for k in range(CLASSES):
            img[self.labels == k, 2 * k: 2 * k + 2, :] ^= 1
        bits = img.view(n, 4, 2, 4, 2).permute(0, 1, 3, 2, 4).reshape(n, PATCHES, 4)
        self.patches = (bits * torch.tensor([8, 4, 2, 1])).sum(-1)  # (n, 16) patch ids

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.patches[i], self.labels[i]


def classify_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits, labels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke-test", action="store_true", help="three small budgets, 3 sizes each")
    parser.add_argument("--budgets", type=float, nargs="+", default=[1e9, 3e9, 1e10])
    parser.add_argument("--storage-path", default="runs")
    parser.add_argument("--name", default="vit")
    parser.add_argument("--cache-dir", default=None, help="unused: the images are generated, nothing is cached")
    args = parser.parse_args(argv)
    budgets, name, points = args.budgets, args.name, 5
    if args.smoke_test:
        budgets, name, points = [2e8, 4e8, 8e8], "smoke", 3

    import flops_fit

    result = flops_fit.find_optimal(
        TinyViT, "width", dataset=BarImages(), loss_fn=classify_loss, compute_budgets=budgets,
        points_per_budget=points, size_values=[8, 12, 16, 24, 32, 48, 64, 96, 128],
        storage_path=args.storage_path, name=name, min_steps=8, max_batch_size=32, max_epochs=1000.0,
        n_boot=20 if args.smoke_test else 200,
    )
    ok = result.results["status"] == "ok"
    print(result.chinchilla_table())
    print(f"{int(ok.sum())}/{len(ok)} trials ok; D counts patches (16 per image); outputs in {args.storage_path}/{name}")
    return 0 if ok.any() else 1


if __name__ == "__main__":
    sys.exit(main())
