# Held-out case (evalguard issue 27): shape of dbpprt/u-2-net-portrait issue #4 ("The model is in
# the train mode in demo", fixed by the author): the demo restores the network from a checkpoint
# and puts it in train() mode before drawing portraits. Written anew.
import glob
import os

import numpy as np
import torch
from PIL import Image

from model import U2NET


def normalize(d):
    return (d - d.min()) / (d.max() - d.min())


def main(model_dir="./models/u2net_portrait.pth", image_dir="./images", out_dir="./results"):
    net = U2NET(3, 1)
    net.load_state_dict(torch.load(model_dir, map_location="cpu", weights_only=True))
    if torch.cuda.is_available():
        net.cuda()
    net.train()

    os.makedirs(out_dir, exist_ok=True)
    for path in glob.glob(os.path.join(image_dir, "*.jpg")):
        image = np.asarray(Image.open(path).convert("RGB").resize((512, 512)), dtype=np.float32) / 255.0
        inputs = torch.from_numpy(image.transpose(2, 0, 1)).unsqueeze(0)
        with torch.no_grad():
            d1, *_ = net(inputs)
        pred = normalize(1.0 - d1[:, 0, :, :]).squeeze().numpy()
        Image.fromarray((pred * 255).astype(np.uint8)).save(os.path.join(out_dir, os.path.basename(path)))


if __name__ == "__main__":
    main()
