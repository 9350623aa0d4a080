import argparse

import torch
import yaml

from fme.downscaling.models import CheckpointModelConfig


def generate(config_path, num_samples=4, num_steps=18):
    with open(config_path) as f:
        config = yaml.safe_load(f)
    model = CheckpointModelConfig(**config["model"]).build()
    coarse = torch.load(config["coarse_path"], weights_only=True)
    samples = []
    with torch.no_grad():
        for _ in range(num_samples):
            x = torch.randn_like(coarse)
            for step in range(num_steps, 0, -1):
                sigma = torch.full((x.shape[0],), step / num_steps)
                denoised = model(torch.cat([x, coarse], dim=1), sigma)
                x = x + (denoised - x) / step
            samples.append(x)
    return torch.stack(samples)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    print(generate(parser.parse_args().config).shape)
