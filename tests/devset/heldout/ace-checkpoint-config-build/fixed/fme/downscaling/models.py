# Held-out case (evalguard issue 27): shape of ai2cm/ace PR #1019 ("CheckpointModelConfig.build
# returns module in eval mode": "the models loaded for generation entrypoints didn't have eval mode
# set. By default the unet blocks have dropout=0.1"): a config dataclass rebuilds the network from a
# checkpoint and returns it; the generation entrypoint in another file samples with it. Written anew.
import dataclasses

import torch

from fme.downscaling.modules.unets import SongUNet


@dataclasses.dataclass
class CheckpointModelConfig:
    checkpoint_path: str
    rename: dict = dataclasses.field(default_factory=dict)

    def build(self, device="cpu"):
        checkpoint = torch.load(self.checkpoint_path, map_location=device, weights_only=True)
        hyper = checkpoint["config"]
        module = SongUNet(hyper["in_channels"], hyper["out_channels"], dropout=hyper.get("dropout", 0.1))
        module.load_state_dict(checkpoint["module"])
        return module.to(device).eval()
