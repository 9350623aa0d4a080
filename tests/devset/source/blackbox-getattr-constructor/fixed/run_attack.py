# Shape of the bug in https://github.com/cg563/simple-blackbox-attack/issues/4 (evalguard's own
# words): the network is looked up by name in torchvision and handed to a helper in another
# file; nobody calls eval(), so BatchNorm uses batch statistics and the predictions change.
import argparse

import torch
import torchvision.models as models

from utils import get_preds

parser = argparse.ArgumentParser()
parser.add_argument("--model", default="resnet50")
args = parser.parse_args()

model = getattr(models, args.model)(pretrained=True)
model.eval()
images = torch.load("batch.pth", weights_only=True)
print(get_preds(model, images))
