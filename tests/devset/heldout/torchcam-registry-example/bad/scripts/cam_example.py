# Held-out case (evalguard issue 27): shape of frgfm/torch-cam PR #15 ("Switched model to eval mode
# in example", issue #14): the network is picked by name from the torchvision registry and run on
# one image to draw its class activation maps. Written anew.
import argparse

import torch
from PIL import Image
from torchvision import models
from torchvision.transforms.functional import normalize, resize, to_tensor

from torchcam.methods import GradCAM, SmoothGradCAMpp


def main(args):
    model = models.__dict__[args.arch](pretrained=True).to(args.device)
    img = Image.open(args.img, mode="r").convert("RGB")
    tensor = normalize(to_tensor(resize(img, (224, 224))), [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    tensor = tensor.to(args.device)
    for extractor_cls in (GradCAM, SmoothGradCAMpp):
        extractor = extractor_cls(model)
        scores = model(tensor.unsqueeze(0))
        class_idx = scores.squeeze(0).argmax().item() if args.class_idx is None else args.class_idx
        activation_map = extractor(class_idx, scores)
        print(extractor_cls.__name__, activation_map[0].shape)
        extractor.remove_hooks()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--img", default="demo.jpg")
    parser.add_argument("--class-idx", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    main(parser.parse_args())
