# Held-out case (evalguard issue 27): shape of LAION-AI/CLIP_benchmark PR #74 ("Put model in eval
# mode before evaluation", issue #73): the model comes from open_clip and is handed to an evaluation
# module in another file. Written anew.
import argparse

import open_clip
import torch

from clip_benchmark.datasets import build_dataset
from clip_benchmark.metrics import zeroshot_classification


def run(args):
    model, _, transform = open_clip.create_model_and_transforms(args.model, pretrained=args.pretrained)
    model = model.to(args.device)
    model.eval()
    tokenizer = open_clip.get_tokenizer(args.model)
    dataset = build_dataset(args.dataset, transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size)
    metrics = zeroshot_classification.evaluate(model, loader, tokenizer, dataset.classes,
                                               dataset.templates, args.device)
    print(metrics)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="laion2b_s34b_b79k")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
